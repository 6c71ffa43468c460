"""Token classification on the shared loop: CoNLL reader, windows, IOBES, outputs, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stepwise
from stepwise.cli import main
from stepwise.example import Example
from stepwise.model import load_tokenizer
from stepwise.tasks.tag.conll import read_conll, repair
from stepwise.tasks.tag.task import TagTask
from stepwise.tasks.tag.words import windows, word_shape
from tests.conftest import tiny_options, toy_ner, write_conll


def test_reader_skips_docstart_and_reads_tag_column(tmp_path: Path) -> None:
    path = write_conll(tmp_path / "a.conll", [(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
                                              (["Peter", "Blackburn"], ["B-PER", "I-PER"])])
    sentences = read_conll(path)
    assert [s.text for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert sentences[1].label == ["B-PER", "I-PER"] and sentences[0].line == 3
    chunks = read_conll(path, tag_column=2)
    assert chunks[0].label == ["B-NP", "B-NP", "B-NP"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("EU NNP B-ORG\nrejects VBZ\n", ":2: expected 3 columns, found 2"),
        ("EU NNP ORG\n", ":1: unknown tag scheme for tag 'ORG'"),
        ("\n\n", "the file is empty"),
        ("-DOCSTART- -X- O\n\n", "no sentences found"),
    ],
)
def test_reader_errors(tmp_path: Path, capsys: pytest.CaptureFixture, content: str, expected: str) -> None:
    path = tmp_path / "bad.conll"
    path.write_text(content)
    code = main(["train", "--task", "tag", "--train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "\n" not in err and err.startswith("stepwise: error: ")


def test_repair_bio_and_iobes() -> None:
    assert repair(["O", "I-PER", "I-PER", "I-LOC"]) == (["O", "B-PER", "I-PER", "B-LOC"], 2)
    assert repair(["B-PER", "I-PER", "O"]) == (["B-PER", "I-PER", "O"], 0)
    tags, fixes = repair(["B-PER", "O", "I-LOC", "I-LOC", "S-ORG"], "IOBES")
    assert tags == ["S-PER", "O", "B-LOC", "E-LOC", "S-ORG"] and fixes == 3


def test_word_shape() -> None:
    assert [word_shape(w) for w in ["the", "Paris", "EU", "iPhone", "1996", ",", "A"]] == [1, 2, 3, 4, 5, 6, 2]


def test_windows_cover_every_word_with_overlap() -> None:
    spans = windows([1] * 600, budget=126)
    assert spans[0][0] == 0 and spans[-1][1] == 600
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # consecutive windows overlap
    assert all(end - start <= 126 for start, end in spans)
    assert windows([3, 200, 2], budget=200) == [(0, 1), (1, 2), (2, 3)]


def test_long_sentence_every_word_gets_a_prediction(tiny_model: str) -> None:
    tokenizer = load_tokenizer(tiny_model)
    task = TagTask(["O", "B-PER", "I-PER"])
    words = [f"word{i}" for i in range(600)]
    example = Example(words, ["O"] * 600)
    features = task.encode(tokenizer, [example], max_length=64)
    assert len(features) > 1 and all(len(f["input_ids"]) <= 64 for f in features)
    # each window's word positions, merged back: every word covered at least once
    covered = set()
    for f in features:
        covered.update(range(f["_start"], f["_start"] + sum(f["word_mask"])))
    assert covered == set(range(600))
    from stepwise.model import TaskModel
    from stepwise.predictor import Predictor

    model = TaskModel.from_encoder(tiny_model, 3, "token", extra_inputs=task.extra_inputs)
    predictor = Predictor(model, tokenizer, task, max_length=64, precision="fp32")
    tags = predictor.predict([words])[0]
    assert len(tags) == 600


@pytest.fixture(scope="module")
def ner_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ner")
    files = {"train": write_conll(tmp / "train.conll", toy_ner(200, 1)),
             "dev": write_conll(tmp / "dev.conll", toy_ner(40, 2)),
             "test": write_conll(tmp / "test.conll", toy_ner(40, 3))}
    options = tiny_options(tiny_model, files, tmp / "run", task="tag", epochs=8, loss_weighting="token")
    return stepwise.train(**options).path


def test_tagging_learns_and_reports(ner_run: Path) -> None:
    results = json.loads((ner_run / "results.json").read_text())
    assert results["task"] == "tag" and results["test"]["f1"] >= 0.8, results["test"]
    assert set(results["test"]["per_type"]) == {"PER", "LOC", "ORG"}
    assert {"precision", "recall", "macro_f1", "token_accuracy"} <= set(results["test"])
    assert "entity-level micro F1" in (ner_run / "report.txt").read_text()
    assert (ner_run / "curves.png").exists()
    meta = json.loads((ner_run / "model" / "stepwise.json").read_text())
    assert meta["extra_inputs"] == {"shape_ids": 7} and meta["task_options"]["scheme"] == "BIO"


def test_conll_and_jsonl_output_round_trip(ner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_conll(tmp_path / "in.conll", toy_ner(15, 5))
    out = tmp_path / "pred.conll"
    assert main(["predict", str(ner_run), "--input", str(data), "--format", "conll", "--output", str(out)]) == 0
    predicted = read_conll(out, tag_column=1)
    gold = read_conll(out, tag_column=2)
    assert [s.text for s in predicted] == [s.text for s in read_conll(data)]
    assert [s.label for s in gold] == [s.label for s in read_conll(data)]
    assert main(["predict", str(ner_run), "--input", str(data), "--format", "jsonl"]) == 0
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["tags"] for r in records] == [s.label for s in predicted]
    for record in records:
        for entity in record["entities"]:
            words = record["tokens"][entity["start"]:entity["end"]]
            assert entity["text"] == " ".join(words)
            assert record["tags"][entity["start"]] == f"B-{entity['type']}"
    assert any(r["entities"] for r in records)


def test_plain_text_input_is_split_into_words(ner_run: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", type("S", (), {"buffer": io.BytesIO(b"John Smith visited Paris\n")})())
    assert main(["predict", str(ner_run), "--input", "-", "--input-format", "tsv"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tokens"] == ["John", "Smith", "visited", "Paris"] and len(record["tags"]) == 4


def test_iobes_input(tiny_model: str, tmp_path: Path) -> None:
    files = {"train": write_conll(tmp_path / "train.conll", toy_ner(200, 1, "IOBES")),
             "dev": write_conll(tmp_path / "dev.conll", toy_ner(40, 2, "IOBES")),
             "test": write_conll(tmp_path / "test.conll", toy_ner(40, 3, "IOBES"))}
    run = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "run", task="tag", epochs=8, strict=True))
    assert run.results["test"]["f1"] >= 0.8
    labels = json.loads((run.path / "labels.json").read_text())
    assert {"S-PER", "E-LOC", "B-ORG"} <= set(labels)
    predicted = stepwise.load(run.path).predict([["Maria", "met", "Ann", "Lee"]])[0]
    assert all(t[:2] in ("B-", "I-", "E-", "S-") or t == "O" for t in predicted)


def test_invalid_gold_is_repaired_and_counted(tiny_model: str, tmp_path: Path) -> None:
    sentences = toy_ner(60, 1)
    sentences[0] = (["Peter", "met", "Ann", "Lee"], ["I-PER", "O", "I-PER", "I-PER"])
    files = {"train": write_conll(tmp_path / "train.conll", sentences),
             "dev": write_conll(tmp_path / "dev.conll", toy_ner(10, 2))}
    run = stepwise.train(**tiny_options(tiny_model, {**files, "test": files["dev"]}, tmp_path / "run", task="tag",
                                        epochs=1))
    assert run.results["repaired_tags"]["train"] == 2
