"""Optimizer construction: no weight decay on biases and LayerNorm weights (as BERT was trained), and the
word-embedding matrix updated only where a batch used it (or frozen, or dense as in HF Trainer)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

BETAS, EPS = (0.9, 0.999), 1e-8


def param_groups(model: nn.Module, weight_decay: float, skip: Iterable[nn.Parameter] = ()) -> list[dict]:
    decay, no_decay = [], []
    skipped = {id(p) for p in skip}
    norm_params = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in skipped:
            continue
        (no_decay if name.endswith("bias") or id(p) in norm_params else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Optimizers:
    """Several torch optimizers stepped, zeroed, scheduled and checkpointed as one."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)


class RowAdamW(torch.optim.Optimizer):
    """AdamW for an embedding matrix whose gradient holds only the rows a batch used (sparse).

    Dense AdamW touches every row every step, although a row's gradient is zero in every step its token
    is absent: its moments then only decay, and it keeps moving on its momentum for a while. This
    optimizer steps only the rows used within the last `window` steps, exactly as AdamW would, and
    brings a returning row's moments up to date in one multiplication (β^gap: zero gradients are pure
    decay). What it leaves out is a row's drift once its momentum is below β1^window of its last update
    (0.9^64 ≈ 1e-3) and the weight decay of the steps it sat out.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] = BETAS,
                 eps: float = EPS, weight_decay: float = 0.0, window: int = 64) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "window": window})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            (beta1, beta2), window = group["betas"], group["window"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    never = torch.full((p.shape[0],), -(2**62), dtype=torch.long)
                    state["used"], state["stepped"] = never, never.clone()  # per row: last use, last step
                state["step"] += 1
                t = int(state["step"])
                grad = p.grad.coalesce() if p.grad.is_sparse else p.grad.to_sparse(1).coalesce()
                used = grad.indices()[0]
                state["used"][used] = t
                rows = torch.nonzero(state["used"] > t - window - 1).flatten()  # used now or recently
                g = torch.zeros(len(rows), p.shape[1], dtype=p.dtype)
                g[torch.searchsorted(rows, used)] = grad.values()
                gap = (t - 1 - state["stepped"][rows]).clamp(max=10_000).to(p.dtype).unsqueeze(1)
                m = state["exp_avg"][rows].mul_(beta1**gap).mul_(beta1).add_(g, alpha=1 - beta1)
                v = state["exp_avg_sq"][rows].mul_(beta2**gap).mul_(beta2).addcmul_(g, g, value=1 - beta2)
                weights = p[rows].mul_(1 - group["lr"] * group["weight_decay"])
                denom = (v / (1 - beta2**t)).sqrt_().add_(group["eps"])
                weights.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**t))
                p.index_copy_(0, rows, weights)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                state["stepped"][rows] = t


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    embeddings: str = "dense") -> torch.optim.Optimizer | Optimizers:
    """The optimizer for `model`; `embeddings` says how its word-embedding matrix trains.

    "sparse": only the rows a batch used, by lazy Adam (`torch.optim.SparseAdam` on the sparse gradient of
    `nn.Embedding(sparse=True)`): MiniLM's 30k-row matrix is half its parameters, a batch touches a few
    hundred rows, and the dense AdamW update of all of them every step was 10% of a step. Rows a batch
    did not use keep still (dense AdamW would move them on their momentum) and get no weight decay.
    "frozen": not trained at all (faster still, ~0.3 pt lower on SST-2 and CoNLL: docs/benchmarks.md).
    "dense": every row every step, as HF Trainer does. SGD always trains it densely.
    """
    word = model.encoder.get_input_embeddings()
    if embeddings == "frozen":
        word.weight.requires_grad_(False)
    rows = embeddings == "sparse" and name == "adamw" and word.weight.requires_grad
    groups = param_groups(model, weight_decay, skip=[word.weight] if rows else [])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=True)
    if name != "adamw":
        raise ValueError(f"unknown optimizer {name!r}")
    # foreach: one fused kernel per tensor list instead of a Python loop over 100+ tensors.
    dense = torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS, foreach=True)
    if not rows:
        return dense
    word.sparse = True  # backward now yields the used rows only; fit() sets it back when training ends
    return Optimizers(dense, RowAdamW([word.weight], lr=lr, weight_decay=weight_decay))


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """`clip_grad_norm_` that also takes sparse gradients (the embedding rows): one norm over all of them."""
    params = [p for p in parameters if p.grad is not None]
    sparse = [p for p in params if p.grad.is_sparse]
    dense = [p for p in params if not p.grad.is_sparse]
    for p in sparse:
        p.grad = p.grad.coalesce()  # a row used twice in a batch counts once, with its summed gradient
    norms = [torch.nn.utils.get_total_norm([p.grad for p in dense])] if dense else []
    norms += [torch.linalg.vector_norm(p.grad.values()) for p in sparse]
    if not norms:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack(norms))
    if dense:
        torch.nn.utils.clip_grads_with_norm_(dense, max_norm, total)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in sparse:
        p.grad.mul_(coef)
    return total
