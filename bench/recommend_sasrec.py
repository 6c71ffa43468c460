"""SASRec (Kang & McAuley, ICDM 2018), small and faithful, for bench/recommend.py only.

Why our own: RecBole 1.2.1 stops at its own start-up on numpy 2 (it assigns `np.float = np.float_`, an alias
numpy 2 removed); RecTools 0.19 needs numpy < 2 and pandas < 3, RePlay 0.22 downgrades pandas and
scikit-learn, so none installs beside stepwise's pins. This follows the paper's ML-1M settings: item and
learned position embeddings (scaled by sqrt(d)), 2 blocks of causal self-attention (1 head) and a point-wise
feed-forward, layer norm before each, dropout 0.2, hidden 50, max length 200, Adam (lr 1e-3, betas 0.9/0.98),
batch 128, binary cross-entropy on each position's next item against one sampled negative (an item the user
never had). The item vocabulary is the items seen in training: an item nobody has interacted with gets no
embedding and scores -inf (an ID model cannot rank it, by construction).
"""

from __future__ import annotations

import numpy as np


def _model(n_items: int, hidden: int, max_len: int, blocks: int, heads: int, dropout: float):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm_attention = nn.LayerNorm(hidden, eps=1e-8)
            self.attention = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
            self.norm_ffn = nn.LayerNorm(hidden, eps=1e-8)
            self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, hidden), nn.Dropout(dropout))

        def forward(self, x, blocked, keep):
            query = self.norm_attention(x)
            attended, _ = self.attention(query, x, x, attn_mask=blocked, need_weights=False)
            x = (query + attended) * keep
            return (x + self.ffn(self.norm_ffn(x))) * keep

    class SASRec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding(n_items + 1, hidden, padding_idx=0)
            self.positions = nn.Embedding(max_len, hidden)
            self.dropout = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(blocks))
            self.norm = nn.LayerNorm(hidden, eps=1e-8)
            self.register_buffer("causal", torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1))

        def forward(self, sequences):  # [batch, length <= max_len] item ids, 0 = padding (left) -> [..., hidden]
            length = sequences.shape[1]
            keep = (sequences > 0).unsqueeze(-1).float()
            x = self.items(sequences) * hidden ** 0.5 + self.positions.weight[max_len - length:].unsqueeze(0)
            x = self.dropout(x) * keep
            # a position sees itself and the items before it, never padding (the original's key masking); the
            # padding's own rows are zeroed by `keep`, so cutting leading padding changes nothing
            blocked = self.causal[-length:, -length:] | (sequences == 0).unsqueeze(1)
            blocked = blocked & ~torch.eye(length, dtype=torch.bool)
            blocked = blocked.repeat_interleave(heads, dim=0)
            for block in self.blocks:
                x = block(x, blocked, keep)
            return self.norm(x)

    model = SASRec()
    for name, weight in model.named_parameters():  # Xavier, as the reference PyTorch port does
        if weight.dim() > 1 and "positions" not in name:
            nn.init.xavier_normal_(weight)
    with torch.no_grad():
        model.items.weight[0].zero_()
    return model


def _left_padded(histories: list[list[int]], max_len: int) -> np.ndarray:
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, history in enumerate(histories):
        tail = history[-max_len:]
        if tail:
            out[row, max_len - len(tail):] = tail
    return out


def train_and_score(histories: list[list[int]], n_items: int, seed: int, *, epochs: int = 200, hidden: int = 50,
                    max_len: int = 200, blocks: int = 2, heads: int = 1, dropout: float = 0.2, lr: float = 1e-3,
                    batch_size: int = 128, dev: tuple[list[list[int]], list[int]] | None = None,
                    log_every: int = 0) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Train on the users' histories (catalogue indices, time order), then score every catalogue item for each.

    Returns [users, n_items] scores for the next item after each history and, when `dev` (inputs, targets)
    is given, (epoch, dev NDCG@10) every `log_every` epochs — for choosing the epoch count, not used by the bench.
    """
    import torch

    from stepwise.tasks.recommend.metrics import rank_metrics

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    known = sorted({j for h in histories for j in h})
    vocab = {j: v + 1 for v, j in enumerate(known)}          # catalogue index -> model id (0: padding)
    sequences = [[vocab[j] for j in h] for h in histories]
    model = _model(len(known), hidden, max_len, blocks, heads, dropout)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    trainable = [s for s in sequences if len(s) >= 2]
    inputs = torch.from_numpy(_left_padded([s[:-1] for s in trainable], max_len))
    targets = torch.from_numpy(_left_padded([s[1:] for s in trainable], max_len))
    had = [np.array(sorted(set(s))) for s in trainable]
    trace = []

    def scores_for(batch: list[list[int]]) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            seq = torch.from_numpy(_left_padded([[vocab[j] for j in h if j in vocab] or [0] for h in batch], max_len))
            last = model(seq)[:, -1]                                  # the state after the newest item
            logits = (last @ model.items.weight[1:].T).numpy()        # [users, known items]
        out = np.full((len(batch), n_items), -np.inf, dtype=np.float32)
        out[:, known] = logits
        model.train()
        return out

    lengths = np.array([min(len(s) - 1, max_len) for s in trainable])
    for epoch in range(1, epochs + 1):
        for rows in _batches(rng, lengths, batch_size):
            cut = int(lengths[rows].max())  # leading columns that are padding in every row of the batch go
            seq, pos = inputs[rows, -cut:], targets[rows, -cut:]
            neg = torch.from_numpy(_negatives(rng, [had[r] for r in rows], pos.numpy(), len(known)))
            state = model(seq)
            pos_logit = (state * model.items(pos)).sum(-1)
            neg_logit = (state * model.items(neg)).sum(-1)
            mask = pos > 0
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                torch.cat([pos_logit[mask], neg_logit[mask]]),
                torch.cat([torch.ones(int(mask.sum())), torch.zeros(int(mask.sum()))]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if epoch % 20 == 0 or epoch == epochs:
            print(f"  SASRec seed {seed}: epoch {epoch}/{epochs}, last batch loss {loss.item():.4f}", flush=True)
        if dev is not None and log_every and epoch % log_every == 0:
            dev_inputs, dev_targets = dev
            metrics = rank_metrics(scores_for(dev_inputs), dev_targets, dev_inputs)
            trace.append((epoch, metrics["ndcg@10"]))
    return scores_for(histories), trace


def _batches(rng: np.random.Generator, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Random batches of users of similar length (shuffled, sorted by length within windows of 4 batches,
    batch order shuffled): the same sampling in expectation, far less padding to attend over."""
    order = rng.permutation(len(lengths))
    window = 4 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _negatives(rng: np.random.Generator, had: list[np.ndarray], positives: np.ndarray, n_items: int) -> np.ndarray:
    """One item per position that the user never had (resampled until so), 0 where the position is padding."""
    neg = rng.integers(1, n_items + 1, size=positives.shape)
    for row, items in enumerate(had):
        bad = np.isin(neg[row], items)
        while bad.any():
            neg[row, bad] = rng.integers(1, n_items + 1, size=int(bad.sum()))
            bad = np.isin(neg[row], items)
    return np.where(positives > 0, neg, 0)
