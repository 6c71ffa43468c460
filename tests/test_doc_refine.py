"""Document-level NER refinement: doc ids from CoNLL files, the context vocabulary, the two-step policy, a
doc-context run end to end (out-of-fold folds, final model, no leftovers), predict/evaluate/export, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import stepwise
from stepwise.cli import main
from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.layout import FOLDS
from stepwise.rundir import RESUMABLE, RunDir
from stepwise.tasks import get_task
from stepwise.tasks.tag.conll import read_conll
from stepwise.tasks.tag.document import ALONE, ALWAYS_O, DOC, FIRST_TYPE, NONE, context_ids, document_folds
from tests.conftest import tiny_options, toy_documents, toy_ner, write_conll, write_documents


# --- the context vocabulary ------------------------------------------------------------------------------
def test_context_ids_for_a_hand_made_document() -> None:
    # classes: 0 = O, 1 = PER, 2 = LOC (entity types in the task's order)
    words = [["Jordan", "said", "Jordan", "Smith"],  # doc 0
             ["Jordan", "visited", "Paris", "."],  # doc 0
             ["Paris", "Jordan", "Kent", "Kent"],  # doc 0
             ["Jordan", "said"],  # doc 1: nothing else in it
             ["Jordan", "Paris"]]  # no document
    docs = [0, 0, 0, 1, None]
    classes = [[1, 0, 0, 1], [2, 0, 2, 0], [2, 1, 2, 1], [1, 0], [1, 2]]
    out = context_ids(words, docs, classes)
    per, loc = FIRST_TYPE, FIRST_TYPE + 1
    # "Jordan" occurs 4 times in doc 0 as PER, O, LOC, PER: each sees the other three (its own excluded)
    assert out[0] == [per, ALONE, per, ALONE]  # PER 1/LOC 1/O 1: a tie → PER; the O one sees PER 2, LOC 1
    assert out[1] == [per, ALONE, loc, ALONE]  # "visited" once; "." has no letter: no context
    # "Paris": LOC twice, each sees the other; "Jordan" (PER) sees PER, LOC, O → PER/LOC tie → PER (first type)
    assert out[2][0] == loc and out[2][1] == per
    assert out[2][2:] == [per, loc]  # "Kent" LOC sees PER, "Kent" PER sees LOC: only the other counts
    assert out[3] == [ALONE, ALONE] and out[4] == [ALONE, ALONE]
    assert context_ids([["Jordan", "Jordan"]], [0], [[0, 0]]) == [[ALWAYS_O, ALWAYS_O]]
    assert context_ids([["Jordan"]], [0], [None]) == [[ALONE]]  # no prediction: neither gives nor gets


def test_tie_between_types_goes_to_the_first() -> None:
    out = context_ids([["X", "X", "X"]], [0], [[2, 1, 0]])
    assert out == [[FIRST_TYPE, FIRST_TYPE + 1, FIRST_TYPE]]  # the O one sees LOC 1, PER 1 → PER


def test_folds_keep_documents_whole() -> None:
    examples = [Example(["a"], ["O"], doc=d) for d in (0, 0, 1, 1, 1, 2, 3, 3)] + [Example(["b"], ["O"])]
    folds = document_folds(examples, 2, seed=0)
    by_doc: dict = {}
    for ex, fold in zip(examples, folds):
        by_doc.setdefault(ex.doc, set()).add(fold)
    assert all(len(f) == 1 for d, f in by_doc.items() if d is not None) and set(folds) == {0, 1}
    assert folds == document_folds(examples, 2, seed=0)


# --- reading documents -----------------------------------------------------------------------------------
def test_read_conll_numbers_documents(tmp_path: Path) -> None:
    path = tmp_path / "docs.conll"
    path.write_text("-DOCSTART- -X- O O\n\nJohn B-PER\nsaid O\n\nhi O\n\n-DOCSTART- -X- O O\n\n"
                    "-DOCSTART- -X- O O\n\nParis B-LOC\n\n")
    assert [ex.doc for ex in read_conll(path)] == [0, 0, 1]  # an empty document takes no number
    plain = write_conll(tmp_path / "plain.conll", toy_ner(3, 0), docstart=False)
    assert [ex.doc for ex in read_conll(plain)] == [None] * 3


def test_doc_ids_on_every_sub_token(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    task = get_task("tag", ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], doc_context=True)
    assert task.entity_types == ["LOC", "PER"] and task.extra_inputs[DOC] == FIRST_TYPE + 2
    words, context = ["Washingtonians", "met", "Jordan"], [FIRST_TYPE, ALWAYS_O, FIRST_TYPE + 1]
    feature = task.encode(tokenizer, [Example(words)], 64, with_labels=False)[0]
    assert feature[DOC] == [NONE] * len(feature["input_ids"])  # step 1: no context yet
    pieces = [len(tokenizer.tokenize(w)) for w in words]
    assert pieces[0] > 1
    assert task.doc_ids(feature, context) == [0] + [c for c, n in zip(context, pieces) for _ in range(n)] + [0]
    assert get_task("tag", ["O", "B-PER"]).options == get_task("tag", ["O", "B-PER"], doc_context=False).options


class StubBackend:
    """Step 1 (doc_ids 0): "john" is B-PER. Step 2: a word is B-<type> when its context says so, else O."""

    name = "stub"
    input_names = ("input_ids", "attention_mask", DOC)

    def __init__(self, task, tokenizer) -> None:
        self.task, self.john = task, tokenizer.convert_tokens_to_ids("john")
        self.batches: list[dict] = []

    def run(self, batch: dict) -> np.ndarray:
        self.batches.append(batch)
        logits = np.zeros((*batch["input_ids"].shape, len(self.task.labels)), dtype=np.float32)
        logits[..., 0] = 1.0
        step1 = batch[DOC] == NONE
        logits[step1 & (batch["input_ids"] == self.john), self.task.label_to_id["B-PER"]] = 5.0
        for k, kind in enumerate(self.task.entity_types):
            logits[~step1 & (batch[DOC] == FIRST_TYPE + k), self.task.label_to_id["B-" + kind]] = 5.0
        return logits


def test_the_policy_gives_step_2_the_documents_step_1_tags(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    from stepwise.predictor import Predictor

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    task = get_task("tag", ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], doc_context=True)
    backend = StubBackend(task, tokenizer)
    predictor = Predictor(None, tokenizer, task, backend=backend, steps=2, batch_size=1)  # context crosses batches
    examples = [Example(["John", "spoke"], doc=0), Example(["then", "John", "left"], doc=0),
                Example(["John", "ran"], doc=1), Example(["John", "sat"])]
    assert predictor.is_refiner
    result = predictor.refine(examples)
    assert [task.ids_to_labels(p) for p in result.at_step(1)] == [["B-PER", "O"], ["O", "B-PER", "O"],
                                                                  ["B-PER", "O"], ["B-PER", "O"]]
    # step 2: John in doc 0 sees the other John (PER); alone in doc 1 or without a document it has no context
    assert [task.ids_to_labels(p) for p in result.predictions] == [["B-PER", "O"], ["O", "B-PER", "O"],
                                                                   ["O", "O"], ["O", "O"]]
    assert len(result.stats) == 2 and len(backend.batches) == 8


# --- a doc-context run end to end --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc_run(tiny_model: str, doc_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("doc_runs")
    return stepwise.train(**tiny_options(tiny_model, doc_files, runs / "run", task="tag", epochs=10,
                                         doc_context=True)).path


def test_doc_context_run_trains_folds_then_the_final_model(doc_run: Path) -> None:
    assert [p.name for p in doc_run.parent.iterdir()] == ["run"]  # one run directory, nothing beside it
    assert not (doc_run / FOLDS).exists() and not any(p.name.startswith(".") for p in doc_run.iterdir())
    results = json.loads((doc_run / "results.json").read_text())
    notes = results["doc_context"]
    assert notes["folds"] == 2 and len(notes["fold_steps"]) == 2 and notes["fold_train_seconds"] > 0
    assert notes["final_train_seconds"] == results["train"]["seconds"]
    assert notes["total_train_seconds"] == pytest.approx(notes["fold_train_seconds"] + notes["final_train_seconds"],
                                                         abs=0.02)
    assert {"alone", "always_O"} <= set(notes["context_share"]) and 0 < notes["out_of_fold_train_f1"] <= 1
    meta = json.loads((doc_run / "model" / "stepwise.json").read_text())
    assert meta["refine_steps"] == 2 and meta["extra_inputs"][DOC] == FIRST_TYPE + 3
    assert meta["task_options"]["doc_context"] is True


def test_evaluate_reports_both_steps_and_step_2_uses_the_document(doc_run: Path, doc_files: dict,
                                                                  capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(doc_run), "--data", str(doc_files["test"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    steps = result["steps"]
    assert [s["step"] for s in steps] == [1, 2] and steps[-1]["f1"] == pytest.approx(result["f1"])
    assert steps[1]["f1"] > steps[0]["f1"], steps  # the ambiguous names are resolved by their document


def test_predict_conll_documents_and_plain_sentences(doc_run: Path, doc_files: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.conll"
    assert main(["predict", str(doc_run), "--input", str(doc_files["test"]), "--format", "conll",
                 "--output", str(out)]) == 0
    assert [s.text for s in read_conll(out, tag_column=1)] == [s.text for s in read_conll(doc_files["test"])]
    plain = tmp_path / "plain.txt"
    plain.write_text("Mr Jordan said on monday\n\nJordan won again\n")
    assert main(["predict", str(doc_run), "--input", str(plain), "--input-format", "tsv"]) == 0
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(records) == 3 and records[0]["tokens"] == ["Mr", "Jordan", "said", "on", "monday"]
    assert len(records[2]["tags"]) == 3 and records[1]["note"] == "no text"
    assert len(stepwise.load(doc_run).predict(["Jordan won again", "Paris"])) == 2


def test_doc_context_tagger_exports_to_onnx(doc_run: Path, doc_files: dict, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "onnx"
    assert main(["export", str(doc_run), "--out", str(out), "--data", str(doc_files["dev"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert DOC in report["inputs"] and report["parity"]["example_agreement"] >= 0.995
    exported = stepwise.load(out)
    assert exported.is_refiner and exported.steps == 2
    examples = read_conll(doc_files["test"])
    torch_pred = stepwise.load(doc_run, precision="fp32").refine(examples).predictions
    onnx_pred = exported.refine(examples).predictions
    assert np.mean([np.array_equal(a, b) for a, b in zip(torch_pred, onnx_pred)]) >= 0.99


def test_an_interrupted_fold_phase_resumes(tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stepwise.training.loop as loop

    files = {"train": write_documents(tmp_path / "train.conll", toy_documents(12, 1)),
             "dev": write_documents(tmp_path / "dev.conll", toy_documents(3, 2)),
             "test": write_documents(tmp_path / "test.conll", toy_documents(3, 3))}
    options = tiny_options(tiny_model, files, tmp_path / "run", task="tag", epochs=1, doc_context=True)
    trained, real_fit = [], loop.fit

    def fit(model, task, features, evaluate, cfg, run_dir, **kw):
        trained.append(Path(run_dir).name)
        if Path(run_dir).name == "fold1" and trained.count("fold1") == 1:
            raise KeyboardInterrupt
        return real_fit(model, task, features, evaluate, cfg, run_dir, **kw)

    monkeypatch.setattr(loop, "fit", fit)
    with pytest.raises(KeyboardInterrupt):
        stepwise.train(**options)
    assert RunDir(tmp_path / "run").status() == RESUMABLE
    assert (tmp_path / "run" / FOLDS / "fold0" / "oof.json").is_file()
    with pytest.raises(StepwiseError, match="interrupted run"):
        stepwise.train(**options)
    run = stepwise.train(**options, resume=True)
    assert trained == ["fold0", "fold1", "fold1", "run"]  # fold 0 is not trained again
    assert run.results["doc_context"]["folds"] == 2 and not (run.path / FOLDS).exists()


@pytest.mark.parametrize("case", ["refine_steps", "augment", "no_documents", "classify"])
def test_doc_context_refusals(case: str, tiny_model: str, tmp_path: Path, toy_files: dict) -> None:
    docs = {k: write_documents(tmp_path / f"{k}.conll", toy_documents(4, i)) for i, k in enumerate(("train", "dev"))}
    plain = {k: write_conll(tmp_path / f"p{k}.conll", toy_ner(20, i), docstart=False)
             for i, k in enumerate(("train", "dev"))}
    options = {"refine_steps": (dict(docs, test=docs["dev"]), {"task": "tag", "refine_steps": 2}),
               "augment": (dict(docs, test=docs["dev"]), {"task": "tag", "augment": 1.0}),
               "no_documents": (dict(plain, test=plain["dev"]), {"task": "tag"}),
               "classify": (toy_files, {})}[case]
    expected = {"refine_steps": "refine-steps > 1 cannot be combined", "augment": "augment cannot be combined",
                "no_documents": "no -DOCSTART- lines",
                "classify": "not available for classifier runs"}[case]
    with pytest.raises(StepwiseError, match=expected) as err:
        stepwise.train(**tiny_options(tiny_model, options[0], tmp_path / "run", doc_context=True, **options[1]))
    assert "\n" not in str(err.value).strip()
    assert not (tmp_path / "run").exists()


def test_fold_epochs_set_the_fold_taggers_budget(tiny_model: str, tmp_path: Path) -> None:
    files = {"train": write_documents(tmp_path / "train.conll", toy_documents(12, 1)),
             "dev": write_documents(tmp_path / "dev.conll", toy_documents(3, 2)),
             "test": write_documents(tmp_path / "test.conll", toy_documents(3, 3))}
    steps = {}
    for fold_epochs in (None, 1.0):
        run = stepwise.train(**tiny_options(tiny_model, files, tmp_path / f"run{fold_epochs}", task="tag", epochs=2,
                                            doc_context=True, doc_fold_epochs=fold_epochs))
        steps[fold_epochs] = (run.results["doc_context"]["fold_steps"], run.results["train"]["steps"])
    assert steps[None][1] == steps[1.0][1]  # the final model's budget is --epochs either way
    assert [2 * s for s in steps[1.0][0]] == steps[None][0]
