"""Few-shot examples for each input: the k nearest by the encoder's sentence embeddings, or random / fixed.

Encoder selection embeds the pool once with the bundled MiniLM (mean pooling over tokens, L2-normalised)
and keeps a scikit-learn `NearestNeighbors` index (cosine); each query's shots come farthest first, so the
nearest example stands right before the input. Embeddings can be cached in a directory (keyed by a hash
of the pool's texts and the encoder path).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np

MODES = ("encoder", "random", "fixed")


def embed(texts: list[str], model_dir: str | None = None, *, batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (float32, one row per text)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from stepwise.modeldir import default_model_dir, quiet_transformers

    model_dir = model_dir or default_model_dir()
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModel.from_pretrained(model_dir).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches pad less
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


class ShotSelector:
    """`select(queries)` → for each query, indices into the pool (k of them, farthest first)."""

    def __init__(self, pool: list[str], k: int, mode: str = "encoder", *, seed: int = 0, model_dir: str | None = None,
                 cache_dir: str | Path | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.pool, self.k, self.mode, self.seed, self.model_dir = pool, min(k, len(pool)), mode, seed, model_dir
        self.index = None
        if self.k and mode == "encoder":
            from sklearn.neighbors import NearestNeighbors

            self.index = NearestNeighbors(n_neighbors=self.k, metric="cosine").fit(self._pool_vectors(cache_dir))
        self.fixed = random.Random(seed).sample(range(len(pool)), self.k)

    def _pool_vectors(self, cache_dir: str | Path | None) -> np.ndarray:
        if cache_dir is None:
            return embed(self.pool, self.model_dir)
        key = hashlib.sha256("\n".join([str(self.model_dir), *self.pool]).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"shots-{key}.npy"
        if path.is_file():
            return np.load(path)
        vectors = embed(self.pool, self.model_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors

    def select(self, queries: list[str], *, exclude: list[set[int]] | None = None) -> list[list[int]]:
        """`exclude[q]`: pool indices query q must not get (e.g. itself, when the pool holds the queries)."""
        if not self.k:
            return [[] for _ in queries]
        exclude = exclude or [set() for _ in queries]
        if self.mode == "fixed":
            return [[i for i in self.fixed if i not in ex] for ex in exclude]
        if self.mode == "random":
            out = []
            for q, (text, ex) in enumerate(zip(queries, exclude)):
                rng = random.Random(f"{self.seed}:{q}:{text}")
                out.append([i for i in rng.sample(range(len(self.pool)), min(len(self.pool), self.k + len(ex)))
                            if i not in ex][:self.k])
            return out
        extra = max((len(e) for e in exclude), default=0)
        n = min(len(self.pool), self.k + extra)
        _, idx = self.index.kneighbors(embed(queries, self.model_dir), n_neighbors=n)
        return [[int(i) for i in row if int(i) not in ex][:self.k][::-1] for row, ex in zip(idx, exclude)]
