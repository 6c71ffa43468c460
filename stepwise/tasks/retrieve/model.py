"""The bi-encoder: one shared encoder for both towers, mean-pooled and L2-normalised, with a temperature.

Both towers share the weights (queries and passages are the same language; the bundled MiniLM was
trained that way, as a sentence-transformers model), so a score is a cosine similarity. The logit
scale (1 / temperature) starts at 20, sentence-transformers' fixed value, and is learned unless fixed.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stepwise.files import current_umask
from stepwise.modeldir import (
    META_FILE,
    META_FORMAT,
    check_encoder_dir,
    default_model_dir,
    load_errors,
    quiet_transformers,
    read_meta,
)

KIND = "bi-encoder"
RETRIEVE = "retrieve"


class BiEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, scale: float = 20.0, learn_scale: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)), requires_grad=learn_scale)
        self.extra_inputs: dict[str, int] = {}  # the shared loop asks (no refiner inputs here)

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("input_ids", "attention_mask")

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0)  # CLIP's cap: a runaway scale makes the loss spiky

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        """Unit-length embeddings, one per sequence (the exported graph's output too)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(pooled.float(), dim=-1)

    @classmethod
    def from_encoder(cls, model_dir: str | None, dropout: float | None = None, scale: float = 20.0,
                     learn_scale: bool = True) -> BiEncoder:
        from transformers import AutoConfig, AutoModel

        path = model_dir or default_model_dir()
        check_encoder_dir(path)
        overrides = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        with quiet_transformers(), load_errors(path, "the pretrained encoder",
                                               "pass --model a complete local transformers encoder directory"):
            config = AutoConfig.from_pretrained(path, local_files_only=True, **overrides)
            encoder = AutoModel.from_pretrained(path, config=config, add_pooling_layer=False, local_files_only=True)
        return cls(encoder, scale, learn_scale)

    def save_pretrained(self, directory: str | Path, tokenizer: Any, meta: dict[str, Any]) -> None:
        """Encoder, tokenizer and metadata into a temp dir, then swapped in; the fingerprint names the weights."""
        from stepwise.model import replace_dir

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        tmp.chmod(0o777 & ~current_umask())
        try:
            with quiet_transformers():
                self.encoder.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            full = {**meta, "task": RETRIEVE, "labels": [], "kind": KIND, "pooling": "mean", "normalize": True,
                    "scale": float(self.scale.detach()), "learn_scale": self.log_scale.requires_grad,
                    "fingerprint": weights_fingerprint(tmp), "format": META_FORMAT}
            (tmp / META_FILE).write_text(json.dumps(full, indent=2))
            for file in tmp.iterdir():
                file.chmod(0o666 & ~current_umask())
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> tuple[BiEncoder, Any, dict[str, Any]]:
        from transformers import AutoModel, AutoTokenizer

        meta = read_meta(directory)
        if meta.get("kind") != KIND:
            from stepwise.errors import StepwiseError

            raise StepwiseError(f"a {meta.get('task')} run, not a retriever", path=directory,
                                fix="pass a run trained with --task retrieve")
        fix = "the run's model files are missing or damaged: retrain it, or restore the run directory from a copy"
        with quiet_transformers(), load_errors(directory, "the run's model", fix):
            encoder = AutoModel.from_pretrained(directory, add_pooling_layer=False, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = cls(encoder, meta.get("scale", 20.0), meta.get("learn_scale", True))
        model.eval()
        return model, tokenizer, meta


def weights_fingerprint(directory: Path) -> str:
    """A digest of the saved weight files: an index remembers which model made its vectors."""
    digest = hashlib.sha1()
    for file in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
