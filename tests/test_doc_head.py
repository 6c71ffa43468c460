"""`--doc-context head`: the document features, the fitted head (round trip, C by cross-validation, a tag
missing from dev), the two-step policy on any backend, a run end to end (fitted on dev, kept or not,
evaluate/predict/export, continued training drops it), refusals and the old true/false configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import stepwise
from stepwise.cli import main
from stepwise.config import build_config
from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.tasks import get_task
from stepwise.tasks.tag import doc_head
from stepwise.tasks.tag.conll import read_conll
from stepwise.tasks.tag.doc_head import DocHead, _max_of_others, features, width
from tests.conftest import tiny_options, toy_ner, write_conll

L = 3


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


# --- features ------------------------------------------------------------------------------------------
def test_features_for_a_hand_made_document() -> None:
    words = [["Jordan", "said", "."], ["then", "jordan"], ["JORDAN"], ["Jordan"], ["Jordan", "Jordan"]]
    docs = [0, 0, 0, 1, None]
    a, b, c = [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]
    own = [_probs([a, b, c]), _probs([b, c]), _probs([c]), _probs([a]), _probs([a, b])]
    x = features(words, docs, own)
    assert x.shape == (9, width(L))
    mean, top, count, has = x[:, 2 * L:3 * L], x[:, 3 * L:4 * L], x[:, 4 * L], x[:, 4 * L + 1]
    # "Jordan", "jordan", "JORDAN" in doc 0 are one lower-cased form: rows 0, 4, 5
    assert np.allclose(mean[0], np.mean([c, c], axis=0)) and np.allclose(top[0], c)
    assert np.allclose(mean[4], np.mean([a, c], axis=0)) and np.allclose(top[4], np.max([a, c], axis=0))
    assert np.allclose(count[[0, 4, 5]], np.log1p(2)) and has[[0, 4, 5]].all()
    # "said" once, "." no letter, doc 1 alone, no document: no context at all
    for row in (1, 2, 3, 6, 7, 8):
        assert not mean[row].any() and not top[row].any() and count[row] == 0 and has[row] == 0
    assert np.allclose(x[0, :L], np.log(np.asarray(a) + 1e-6)) and np.allclose(x[0, L:2 * L], a)
    prev, nxt = x[:, 4 * L + 2:5 * L + 2], x[:, 5 * L + 2:]
    assert not prev[0].any() and np.allclose(nxt[0], b) and np.allclose(prev[1], a) and not nxt[2].any()
    # the context may come from other (latest) probabilities while the own columns stay step 1's
    later = features(words, docs, own, [p * 0 + 1 / L for p in own])
    assert np.allclose(later[:, :2 * L], x[:, :2 * L]) and np.allclose(later[0, 2 * L:3 * L], 1 / L)


def test_max_of_others_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 7):
        block = rng.integers(0, 3, size=(n, 4)).astype(np.float32)  # small integers: ties on purpose
        expected = np.stack([np.delete(block, r, axis=0).max(axis=0) for r in range(n)])
        assert np.array_equal(_max_of_others(block), expected)


# --- the head --------------------------------------------------------------------------------------------
def _context_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose gold tag is the context's argmax when there is context, else the own argmax (noisy)."""
    rng = np.random.default_rng(seed)
    own = rng.dirichlet(np.ones(L), size=n).astype(np.float32)
    ctx = rng.dirichlet(np.ones(L) * 0.3, size=n).astype(np.float32)
    has = rng.random(n) < 0.6
    ctx[~has] = 0
    y = np.where(has, ctx.argmax(1), own.argmax(1))
    x = np.hstack([np.log(own + 1e-6), own, ctx, ctx, has[:, None], has[:, None], own * 0, own * 0])
    return x.astype(np.float32), y, np.arange(n) // 10  # "documents" of ten rows


def test_head_learns_the_context_and_round_trips() -> None:
    x, y, groups = _context_rows(600, 0)
    accuracy = lambda p: float(np.mean(p.argmax(1) == y))  # noqa: E731
    head, held, scores = doc_head.fit(x, y, groups, L, accuracy)
    assert set(scores) == set(doc_head.GRID) and head.C in doc_head.GRID
    assert scores[head.C] == max(scores.values()) and accuracy(held) == pytest.approx(scores[head.C])
    own_only = float(np.mean(x[:, L:2 * L].argmax(1) == y))
    assert scores[head.C] > own_only + 0.2  # the context decides 60% of the rows
    again = DocHead.from_dict(json.loads(json.dumps(head.to_dict())))
    assert np.allclose(again.probabilities(x), head.probabilities(x), atol=1e-4)


@pytest.mark.parametrize("present", [(0, 2), (0, 1, 2)])
def test_fit_one_maps_sklearn_classes_to_the_tag_ids(present: tuple) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y, _ = _context_rows(300, 1)
    keep = np.isin(y, present)
    x, y = x[keep], y[keep]
    head = doc_head._fit_one(x, y, L, 0.3, 0)
    mean, scale = x.mean(0), np.where(x.std(0) < 1e-6, 1.0, x.std(0))
    reference = LogisticRegression(C=0.3, max_iter=1000, random_state=0).fit((x - mean) / scale, y)
    probs = head.probabilities(x)
    assert np.allclose(probs[:, list(present)], reference.predict_proba((x - mean) / scale), atol=1e-4)
    assert np.all(probs[:, [c for c in range(L) if c not in present]] < 1e-6)  # never seen: never predicted


# --- the two-step policy --------------------------------------------------------------------------------------
class CueBackend:
    """A model with no document input: "john" is B-PER only in a sentence that also has "mr"."""

    name = "stub"
    input_names = ("input_ids", "attention_mask")

    def __init__(self, task, tokenizer) -> None:
        self.task = task
        self.john, self.mr = tokenizer.convert_tokens_to_ids(["john", "mr"])
        self.calls = 0

    def run(self, batch: dict) -> np.ndarray:
        self.calls += 1
        ids = batch["input_ids"]
        logits = np.zeros((*ids.shape, len(self.task.labels)), dtype=np.float32)
        logits[..., 0] = 2.0
        cue = (ids == self.mr).any(axis=1, keepdims=True)
        logits[(ids == self.john) & cue, self.task.label_to_id["B-PER"]] = 6.0
        return logits


def _copy_context_head(labels: list[str]) -> dict:
    """Logits = 4 x own probabilities + 3 x the max over the other occurrences'."""
    n = len(labels)
    weights = np.zeros((n, width(n)), dtype=np.float32)
    weights[:, n:2 * n] = 4 * np.eye(n)
    weights[:, 3 * n:4 * n] = 3 * np.eye(n)
    return DocHead(weights, np.zeros(n, np.float32), 1.0).to_dict()


def test_step_2_reads_the_documents_step_1_probabilities(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    from stepwise.predictor import Predictor

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    task = get_task("tag", labels, doc_head=_copy_context_head(labels))
    backend = CueBackend(task, tokenizer)
    predictor = Predictor(None, tokenizer, task, backend=backend, steps=2, batch_size=1)  # context crosses batches
    examples = [Example(["Mr", "John", "spoke"], doc=0), Example(["then", "John", "left"], doc=0),
                Example(["John", "ran"], doc=1), Example(["John", "sat"])]
    assert predictor.is_refiner and not get_task("tag", labels).multi_step(backend.input_names)
    result = predictor.refine(examples)
    assert [task.ids_to_labels(p) for p in result.at_step(1)] == [["O", "B-PER", "O"], ["O", "O", "O"],
                                                                  ["O", "O"], ["O", "O"]]
    # step 2: the second John sees the first one's B-PER; alone in doc 1 or without a document: no context
    assert [task.ids_to_labels(p) for p in result.predictions] == [["O", "B-PER", "O"], ["O", "B-PER", "O"],
                                                                   ["O", "O"], ["O", "O"]]
    assert backend.calls == 4  # step 2 runs no model: the head works on step 1's probabilities
    assert result.steps_used == [2, 2, 2, 2] and result.stats[1].changed == pytest.approx(0.25)


# --- a run end to end --------------------------------------------------------------------------------------
def test_head_run_is_fitted_on_dev_and_saved_with_the_model(head_run: Path) -> None:
    results = json.loads((head_run / "results.json").read_text())
    notes = results["doc_context"]
    assert notes["method"] == "head" and notes["kept"] and notes["dev_documents"] == 10
    cross_validated = notes["cross_validated_dev_f1"][str(notes["C"])]
    assert cross_validated > notes["step1_dev_f1"]
    assert results["dev"]["f1"] == pytest.approx(cross_validated)  # dev is reported cross-validated, not in-sample
    meta = json.loads((head_run / "model" / "stepwise.json").read_text())
    assert meta["refine_steps"] == 2 and "doc_ids" not in meta["extra_inputs"]
    assert DocHead.from_dict(meta["task_options"]["doc_head"]).C == notes["C"]


def test_head_run_evaluates_in_two_steps_and_step_2_helps(head_run: Path, doc_files: dict,
                                                          capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(head_run), "--data", str(doc_files["test"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    steps = result["steps"]
    assert [s["step"] for s in steps] == [1, 2] and steps[-1]["f1"] == pytest.approx(result["f1"])
    assert steps[1]["f1"] > steps[0]["f1"], steps  # the ambiguous names are resolved by their document
    assert main(["evaluate", str(head_run), "--data", str(doc_files["test"]), "--steps", "1", "--json"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["f1"] == pytest.approx(steps[0]["f1"])


def test_head_run_predicts_and_exports_to_onnx(head_run: Path, doc_files: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("Mr Jordan said on monday\nJordan won again\n")
    assert main(["predict", str(head_run), "--input", str(plain), "--input-format", "tsv"]) == 0
    assert len([json.loads(x) for x in capsys.readouterr().out.splitlines()]) == 2  # no documents: still tags
    out = tmp_path / "onnx"
    assert main(["export", str(head_run), "--out", str(out), "--data", str(doc_files["dev"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["parity"]["example_agreement"] >= 0.995
    exported = stepwise.load(out)
    assert exported.is_refiner and exported.steps == 2 and exported.task.doc_head
    examples = read_conll(doc_files["test"])
    torch_result = stepwise.load(head_run, precision="fp32").refine(examples)
    onnx_result = exported.refine(examples)
    assert [len(h) for h in onnx_result.history] == [len(h) for h in torch_result.history]
    assert np.mean([np.array_equal(a, b) for a, b in zip(torch_result.predictions, onnx_result.predictions)]) >= 0.99


def test_training_on_from_a_head_run_drops_the_head(head_run: Path, doc_files: dict, tmp_path: Path) -> None:
    run = stepwise.train(train=str(doc_files["train"]), dev=str(doc_files["dev"]), out=str(tmp_path / "more"),
                         init_from=str(head_run), epochs=1, quiet=True, precision="fp32", threads=1)
    meta = json.loads((run.path / "model" / "stepwise.json").read_text())
    assert "doc_head" not in meta["task_options"] and meta["refine_steps"] == 1  # fitted for the other weights
    assert not stepwise.load(run.path).is_refiner


def test_a_head_that_does_not_beat_step_1_is_not_kept(tiny_model: str, doc_files: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real_fit = doc_head.fit

    def losing(*args, **kwargs):
        head, held, scores = real_fit(*args, **kwargs)
        return head, held, {c: -1.0 for c in scores}

    monkeypatch.setattr(doc_head, "fit", losing)
    run = stepwise.train(**tiny_options(tiny_model, doc_files, tmp_path / "run", task="tag", epochs=2,
                                        doc_context="head"))
    notes = run.results["doc_context"]
    assert notes["kept"] is False and run.results["dev"]["f1"] == pytest.approx(notes["step1_dev_f1"])
    meta = json.loads((run.path / "model" / "stepwise.json").read_text())
    assert "doc_head" not in meta["task_options"] and meta["refine_steps"] == 1
    assert not stepwise.load(run.path).is_refiner


# --- refusals and configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["dev_without_documents", "dev_one_document", "refine_steps", "classify"])
def test_head_refusals(case: str, tiny_model: str, tmp_path: Path, toy_files: dict, doc_files: dict) -> None:
    plain = write_conll(tmp_path / "plain.conll", toy_ner(20, 0), docstart=False)
    one = write_conll(tmp_path / "one.conll", toy_ner(20, 0), docstart=True)
    files, extra = {"dev_without_documents": ({**doc_files, "dev": plain}, {"task": "tag"}),
                    "dev_one_document": ({**doc_files, "dev": one}, {"task": "tag"}),
                    "refine_steps": (doc_files, {"task": "tag", "refine_steps": 2}),
                    "classify": (toy_files, {})}[case]
    expected = {"dev_without_documents": "dev has no -DOCSTART- lines", "dev_one_document": "dev has a single document",
                "refine_steps": "refine-steps > 1 cannot be combined",
                "classify": "not available for classifier runs"}[case]
    with pytest.raises(StepwiseError, match=expected) as err:
        stepwise.train(**tiny_options(tiny_model, files, tmp_path / "run", doc_context="head", **extra))
    assert "\n" not in str(err.value).strip()
    assert not (tmp_path / "run").exists()
    if case == "dev_without_documents":
        assert main(["train", "--task", "tag", "--train", str(doc_files["train"]), "--dev", str(plain),
                     "--out", str(tmp_path / "cli"), "--doc-context", "head", "--quiet"]) == 2
        assert not (tmp_path / "cli").exists()


def test_configs_written_before_the_head_still_mean_the_document_model(tmp_path: Path) -> None:
    assert build_config({"train": "t.conll", "out": "r", "doc_context": True}).doc_context == "model"
    assert build_config({"train": "t.conll", "out": "r", "doc_context": False}).doc_context is None
    assert build_config({"train": "t.conll", "out": "r", "doc_context": "head"}).doc_context == "head"
    with pytest.raises(StepwiseError, match="doc-context"):
        build_config({"train": "t.conll", "out": "r", "doc_context": "both"})


def test_hf_export_of_a_head_run_says_it_is_step_1_only(tiny_model: str, doc_files: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from stepwise.modeldir import read_meta, update_meta

    run = stepwise.train(**tiny_options(tiny_model, doc_files, tmp_path / "run", task="tag", epochs=1,
                                        casing=False))
    meta = read_meta(run.path / "model")
    head_options = {**meta["task_options"], "doc_head": _copy_context_head(meta["labels"])}
    update_meta(run.path / "model", task_options=head_options, refine_steps=2)
    for name, head in (("with", True), ("without", False)):
        if not head:
            update_meta(run.path / "model", task_options=meta["task_options"], refine_steps=1)
        assert main(["export", str(run.path), "--format", "hf", "--out", str(tmp_path / name)]) == 0
        assert ("This is step 1 only" in (tmp_path / name / "README.md").read_text()) == head
    capsys.readouterr()


def test_a_run_interrupted_while_fitting_the_head_resumes(tiny_model: str, doc_files: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from stepwise.rundir import RESUMABLE, RunDir

    real_fit, calls = doc_head.fit, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(doc_head, "fit", interrupted)
    options = tiny_options(tiny_model, doc_files, tmp_path / "run", task="tag", epochs=10, doc_context="head")
    with pytest.raises(KeyboardInterrupt):
        stepwise.train(**options)
    assert RunDir(tmp_path / "run").status() == RESUMABLE and not (tmp_path / "run" / "results.json").exists()
    run = stepwise.train(**options, resume=True)
    notes = run.results["doc_context"]
    assert len(calls) == 2 and notes["kept"] and run.results["train"]["steps"] > 0
    assert stepwise.load(run.path).is_refiner
