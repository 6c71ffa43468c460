"""A damaged-directory fuzzer (issue 34, deliverable 3b): every file of a finished run, an ONNX-free export-like
model directory and a monitor database is deleted, emptied, cut in half or replaced by a foreign value in
turn, and every verb that reads it must answer with success or one line and exit 2 — never a traceback or
exit 1 — and `stepwise runs` must go on listing the other runs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import make_tiny_model, toy_sentences, write_tsv
from tests.hardening import Outcome, run_cli

RUN_FILES = ["config.yaml", "labels.json", "results.json", "model/stepwise.json", "model/config.json",
             "model/model.safetensors", "model/head.safetensors", "model/tokenizer.json",
             "model/tokenizer_config.json"]


def _delete(p: Path) -> None:
    p.unlink()


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])


def _foreign(p: Path) -> None:
    p.write_bytes(b'["not", "what stepwise wrote"]\n' if p.suffix in (".json", ".yaml") else b"\x00garbage" * 16)


DAMAGES: dict[str, Callable[[Path], None]] = {"deleted": _delete, "empty": _empty, "truncated": _truncate,
                                              "foreign": _foreign}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stepwise.recipes.finetune import train

    root = tmp_path_factory.mktemp("damaged")
    model = make_tiny_model(root / "tiny-bert")
    data = write_tsv(root / "train.tsv", toy_sentences(40, 1))
    train(task="classify", train=str(data), out=str(root / "run"), model=model, max_steps=2, batch_size=8, quiet=True,
          precision="fp32", threads=1)
    return root / "run"


def contract(o: Outcome, what: str, codes: tuple[int, ...] = (0, 2)) -> None:
    assert o.code in codes, (what, o.code, o.err)
    assert "Traceback" not in o.err and "internal error" not in o.err, (what, o.err)
    if o.code == 2:
        err = o.err.strip()
        assert err and "\n" not in err, (what, err)


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("name", RUN_FILES)
def test_every_verb_reading_a_damaged_run(finished: Path, tmp_path: Path, name: str, damage: str) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs / "good")
    shutil.copytree(finished, runs / "bad")
    DAMAGES[damage](runs / "bad" / name)
    what = f"{name} {damage}"
    contract(run_cli(["predict", str(runs / "bad"), "--input", "-", "--threads", "1"], b"a good film\n"), what)
    contract(run_cli(["show", str(runs / "bad")]), what)
    listing = run_cli(["runs", str(runs)])
    contract(listing, what, codes=(0,))
    assert str(runs / "good") in listing.out, (what, listing.out)  # one damaged run never hides the others


@pytest.mark.parametrize("damage", DAMAGES)
def test_monitor_report_on_a_damaged_database(tmp_path: Path, damage: str) -> None:
    from stepwise.monitor.store import Store

    db = tmp_path / "m.sqlite"
    store = Store(db)
    store.set_meta("window", 3600.0)
    store.close()
    for side in tmp_path.glob("m.sqlite-*"):  # the WAL checkpointed into the file: it is all there
        side.unlink()
    DAMAGES[damage](db)
    out = tmp_path / "report.html"
    o = run_cli(["monitor", "report", "--db", str(db), "--out", str(out)])
    contract(o, f"monitor db {damage}", codes=(2,))
    assert not out.exists()
