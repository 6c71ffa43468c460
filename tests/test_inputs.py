"""Every bad input: one line naming file, line and problem; exit status 2; no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepwise.cli import main
from stepwise.data.readers import read_examples
from tests.conftest import toy_sentences, write_tsv


def run_cli(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def train_args(train: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(train), "--out", str(out), "--quiet", *extra]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"good movie\tpos\nbad movie\tneg\textra\n", ":2: expected 2 columns, found 3"),
        (b"good movie\tpos\n\t neg\n", ":2: empty text"),
        (b"good movie\tpos\nbad movie\t\n", ":2: missing label"),
        (b"good movie\tpos\nbad \xff movie\tneg\n", ":2: bytes that are not UTF-8"),
        (b"good movie\tpos\nnice movie\tpos\n", "need at least 2 classes, found 1"),
        (b"just text without a label\n", "no label column"),
    ],
)
def test_bad_training_file(tmp_path: Path, capsys: pytest.CaptureFixture, content: bytes, expected: str) -> None:
    path = tmp_path / "train.tsv"
    path.write_bytes(content)
    code, err = run_cli(capsys, train_args(path, tmp_path / "run"))
    assert code == 2
    assert expected in err
    assert err.startswith("stepwise: error: ")
    assert "\n" not in err and "Traceback" not in err
    assert "—" in err or "need at least" in err  # every message says how to fix it


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = run_cli(capsys, train_args(tmp_path / "nope.tsv", tmp_path / "run"))
    assert code == 2 and "nope.tsv: file not found" in err


def test_dev_label_never_seen_in_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train = write_tsv(tmp_path / "train.tsv", toy_sentences(20, 0))
    dev = tmp_path / "dev.tsv"
    dev.write_text("good film\tpos\nodd film\tmaybe\n")
    code, err = run_cli(capsys, train_args(train, tmp_path / "run", "--dev", str(dev)))
    assert code == 2
    assert f"{dev}:2: label 'maybe' never appears in the training data" in err


def test_bad_option_value(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train = write_tsv(tmp_path / "train.tsv", toy_sentences(20, 0))
    config = tmp_path / "cfg.yaml"
    config.write_text("lr: -1\n")
    code, err = run_cli(capsys, train_args(train, tmp_path / "run", "--config", str(config)))
    assert code == 2 and "--lr must be greater than 0 (got -1)" in err and "\n" not in err.strip()


def test_unknown_yaml_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train = write_tsv(tmp_path / "train.tsv", toy_sentences(20, 0))
    config = tmp_path / "cfg.yaml"
    config.write_text("learning_rate: 0.1\n")
    code, err = run_cli(capsys, train_args(train, tmp_path / "run", "--config", str(config)))
    assert code == 2 and "learning_rate" in err


def test_bad_jsonl_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    code, err = run_cli(capsys, train_args(path, tmp_path / "run"))
    assert code == 2 and "train.jsonl:2: invalid JSON" in err


def test_readers_columns_and_headers(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text('id,sentence,y\n1,"hello, world",pos\n2,bye,neg\n')
    rows = read_examples(csv, text_column="sentence", label_column="y")
    assert [(r.text, r.label, r.line) for r in rows] == [("hello, world", "pos", 2), ("bye", "neg", 3)]
    tsv = write_tsv(tmp_path / "h.tsv", [("a b", "x"), ("c", "y")], header=True)
    assert [r.label for r in read_examples(tsv)] == ["x", "y"]
    swapped = tmp_path / "s.tsv"
    swapped.write_text("x\ta b\ny\tc\n")
    assert [r.text for r in read_examples(swapped, text_column=1, label_column=0)] == ["a b", "c"]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"body": "t", "cls": 1}) + "\n")
    assert read_examples(jsonl, text_column="body", label_column="cls")[0].label == "1"


def test_unknown_column_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("sentence,y\nhello,pos\nbye,neg\n")
    code, err = run_cli(capsys, train_args(csv, tmp_path / "run"))
    assert code == 2 and "d.csv:1: no text column named 'text' (found: sentence, y)" in err


def test_existing_run_needs_resume_or_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"state")
    train = write_tsv(tmp_path / "train.tsv", toy_sentences(20, 0))
    code, err = run_cli(capsys, train_args(train, run))
    assert code == 2 and "holds an interrupted run" in err and "--resume" in err and "--overwrite" in err
    (run / "results.json").write_text("{}")
    (run / "model").mkdir()
    code, err = run_cli(capsys, train_args(train, run))
    assert code == 2 and "already holds a finished run" in err and "--overwrite" in err


@pytest.mark.parametrize("verb", ["train", "rl", "distill", "prune", "evaluate", "predict", "export", "noise",
                                  "serve", "search", "monitor", "runs", "show", "demo"])
def test_every_verb_prints_its_help(verb: str, capsys: pytest.CaptureFixture) -> None:
    """A help text with a bare % (e.g. "10-20% faster", from a config description) made argparse crash."""
    code = main([verb, "--help"])
    assert code == 0 and f"usage: stepwise {verb}" in capsys.readouterr().out
