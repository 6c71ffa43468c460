"""Training only the used embedding rows gives the weights a dense AdamW update gives, and resumes either layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import stepwise
from stepwise.training.loop import LoopState
from stepwise.training.used_rows import UsedRowsEmbedding
from tests.conftest import tiny_options, toy_splits

WORD = "embeddings.word_embeddings.weight"


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def test_embedding_reads_used_rows_and_decayed_others() -> None:
    torch.manual_seed(0)
    full = torch.nn.Embedding(10, 4, padding_idx=0)
    module = UsedRowsEmbedding(full, torch.tensor([0, 2, 5]))
    with torch.no_grad():
        module.rows.add_(1.0)
    module.pending = 0.5
    ids = torch.tensor([[2, 3, 5, 0], [9, 2, 0, 0]])
    expected = full.weight.detach().clone() * 0.5
    expected[[0, 2, 5]] = module.rows.detach()
    assert torch.allclose(module(ids), expected[ids])
    module.fold()
    assert module.pending == 1.0 and torch.allclose(full.weight, expected)
    module(torch.tensor([2, 5, 0])).sum().backward()  # the padding row gets no gradient, the used ones do
    assert module.rows.grad[0].abs().sum() == 0 and module.rows.grad[1:].abs().sum() > 0


def test_used_rows_train_like_dense_adamw(tiny_model: str, tmp_path: Path) -> None:
    """Same weights after a run (best checkpoint and last), including the weight decay of rows never used."""
    files = toy_splits(tmp_path)
    common = {"epochs": 2, "weight_decay": 0.1}
    used = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "used", **common))
    dense = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "dense", embedding_update="dense", **common))
    a, b = weights(tmp_path / "used"), weights(tmp_path / "dense")
    start = load_file(str(Path(tiny_model) / "model.safetensors"))[WORD]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name
    nonzero = start.abs().sum(dim=1) > 0  # (the padding row starts at zero and stays there)
    assert (a[WORD] != start).all(dim=1)[nonzero].all()  # used rows moved by their gradient, the rest by decay
    assert used.results["dev"] == dense.results["dev"] and used.results["test"] == dense.results["test"]


def test_a_dense_checkpoint_resumes_dense(tiny_model: str, tmp_path: Path) -> None:
    """A run interrupted with the dense layout (e.g. before an upgrade) resumes in it, optimizer state intact."""
    files = toy_splits(tmp_path)

    def interrupt(state: LoopState) -> None:
        if state.step == 14:  # after the first epoch's checkpoint
            raise KeyboardInterrupt

    dense = tiny_options(tiny_model, files, tmp_path / "run", epochs=2, embedding_update="dense")
    with pytest.raises(KeyboardInterrupt):
        stepwise.train(**dense, callbacks=(interrupt,))
    resumed = stepwise.train(**{**dense, "embedding_update": "used_rows", "resume": True})
    reference = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "ref", epochs=2, embedding_update="dense"))
    assert resumed.results["dev"] == reference.results["dev"]
    a, b = weights(tmp_path / "run"), weights(tmp_path / "ref")
    assert all(torch.equal(a[name], b[name]) for name in a)
