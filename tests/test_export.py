"""Export: ONNX round trip through the parity gate, int8, refiners on ONNX Runtime, HF format, bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import stepwise
from stepwise.cli import main
from stepwise.data.batching import pad
from tests.conftest import tiny_options, toy_ner, toy_sentences, toy_splits, write_conll, write_tsv


@pytest.fixture(scope="module")
def cls_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export_cls")
    files = toy_splits(tmp)
    return stepwise.train(**tiny_options(tiny_model, files, tmp / "run", epochs=6)).path


@pytest.fixture(scope="module")
def tag_refiner(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export_tag")
    files = {"train": write_conll(tmp / "train.conll", toy_ner(200, 1)),
             "dev": write_conll(tmp / "dev.conll", toy_ner(40, 2)),
             "test": write_conll(tmp / "test.conll", toy_ner(40, 3))}
    return stepwise.train(**tiny_options(tiny_model, files, tmp / "run", task="tag", epochs=6, refine_steps=3)).path


def run_cli(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_onnx_export_round_trip(cls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "onnx"
    code, stdout, err = run_cli(capsys, ["export", str(cls_run), "--out", str(out), "--json"])
    assert code == 0, err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["parity"]["label_agreement"] == 1.0 and report["parity"]["max_abs_logit_delta"] < 1e-4
    meta = json.loads((out / "stepwise.json").read_text())
    assert meta["labels"] == ["neg", "pos"] and meta["export"]["parity"] == report["parity"]
    assert {"model.onnx", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    texts = [t for t, _ in toy_sentences(30, 7)]
    onnx_predictor, torch_predictor = stepwise.load(out), stepwise.load(cls_run, precision="fp32")
    assert onnx_predictor.backend.name == "onnx" and onnx_predictor.model is None
    np.testing.assert_allclose(onnx_predictor.predict_proba(texts), torch_predictor.predict_proba(texts), atol=1e-4)
    data = write_tsv(tmp_path / "eval.tsv", toy_sentences(20, 9))
    code, stdout, _ = run_cli(capsys, ["evaluate", str(out), "--data", str(data), "--json", "--threads", "1"])
    on_onnx = json.loads(stdout.strip().splitlines()[-1])
    code, stdout, _ = run_cli(capsys, ["evaluate", str(cls_run), "--data", str(data), "--json"])
    assert on_onnx["accuracy"] == json.loads(stdout.strip().splitlines()[-1])["accuracy"]
    code, stdout, _ = run_cli(capsys, ["predict", str(out), "--input", str(data), "--backend", "onnx",
                                       "--output-format", "tsv"])
    assert code == 0 and len(stdout.splitlines()) == 20


def test_onnx_batches_side_by_side_keep_order_and_values(cls_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """`run_many` runs several batches at once on one-thread sessions; a lone batch keeps the main session."""
    out = tmp_path / "onnx"
    assert run_cli(capsys, ["export", str(cls_run), "--out", str(out)])[0] == 0
    texts = [t for t, _ in toy_sentences(70, 11)]
    side_by_side = stepwise.load(out, batch_size=4, threads=2)
    assert side_by_side.backend.streams == 2
    one = side_by_side.predict_proba(texts[:3])
    assert side_by_side.backend._single is None  # one batch: all threads on it, no second session
    many = side_by_side.predict_proba(texts)  # 18 batches of mixed lengths, two at a time
    assert side_by_side.backend._single is not None
    sequential = stepwise.load(out, batch_size=4, threads=2)
    sequential.backend.streams = 1
    np.testing.assert_allclose(many, sequential.predict_proba(texts), atol=1e-5)
    np.testing.assert_allclose(one, many[:3], atol=1e-5)


def test_parity_gate_refuses_a_broken_export(cls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from stepwise.backends.onnx import OnnxBackend

    original = OnnxBackend.run
    monkeypatch.setattr(OnnxBackend, "run", lambda self, batch: original(self, batch)[..., ::-1].copy())
    out = tmp_path / "broken"
    code, _, err = run_cli(capsys, ["export", str(cls_run), "--out", str(out)])
    assert code == 2 and "agrees with the run on only" in err and "nothing written" in err and "\n" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".broken")]


def test_int8_export(cls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(capsys, ["export", str(cls_run), "--int8", "--out", str(tmp_path / "int8")])
    assert code == 0, err
    meta = json.loads((tmp_path / "int8" / "stepwise.json").read_text())
    parity = meta["export"]["parity"]
    assert meta["export"]["int8"] is True and parity["metric_torch"] - parity["metric_onnx"] <= 0.005
    import onnx

    ops = [node.op_type for node in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node]
    # every projection is quantized: attention stops at MultiHeadAttention, whose Q/K/V MatMuls are int8
    # (ORT's fused Attention op would keep them fp32 inside it); 6 per layer, 2 layers, plus the head
    assert "Attention" not in ops and ops.count("MultiHeadAttention") == 2, ops
    assert ops.count("MatMulInteger") == 13 and "MatMul" not in ops, ops
    # GELU stays apart from its bias, which ORT moves into the quantized MatMul before it, and the residual
    # Add apart from LayerNormalization (ORT's SkipLayerNormalization is the slower kernel)
    assert "BiasGelu" not in ops and ops.count("Gelu") == 2, ops
    assert "SkipLayerNormalization" not in ops and ops.count("LayerNormalization") == 5, ops
    assert meta["export"]["fusions"].get("attention") is None
    import onnxruntime as ort

    from stepwise.backends import onnx as onnx_backend

    class Saving(ort.SessionOptions):  # what the backend's session runs, after ORT's own fusions
        def __init__(self) -> None:
            super().__init__()
            self.optimized_model_filepath = str(tmp_path / "optimized.onnx")

    monkeypatch.setattr(ort, "SessionOptions", Saving)
    onnx_backend._session(tmp_path / "int8" / "model.onnx", 1)
    monkeypatch.undo()
    ran = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert "SkipLayerNormalization" not in ran and "LayerNormalization" in ran and "Gelu" in ran, ran
    assert stepwise.load(tmp_path / "int8").predict(["the film was excellent"]) == ["pos"]


def test_default_out_is_inside_the_run_and_replaced_on_reexport(cls_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(capsys, ["export", str(cls_run)])[0] == 0
    assert (cls_run / "onnx" / "model.onnx").is_file()
    assert run_cli(capsys, ["export", str(cls_run)])[0] == 0  # an earlier export is replaced


def test_refiner_refines_on_onnx_runtime(tag_refiner: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "refiner"
    code, stdout, err = run_cli(capsys, ["export", str(tag_refiner), "--out", str(out), "--json"])
    assert code == 0, err
    parity = json.loads(stdout.strip().splitlines()[-1])["parity"]
    assert parity["example_agreement"] >= 0.995 and "prev_ids" in json.loads(
        (out / "stepwise.json").read_text())["export"]["inputs"]
    data = write_conll(tmp_path / "eval.conll", toy_ner(25, 6))
    results = []
    for path in (tag_refiner, out):
        code, stdout, _ = run_cli(capsys, ["evaluate", str(path), "--data", str(data), "--steps", "3", "--json"])
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert results[0]["f1"] == results[1]["f1"] and len(results[1]["steps"]) >= 1


def test_hf_format_for_a_plain_tagger(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch
    from transformers import AutoModelForTokenClassification

    files = {"train": write_conll(tmp_path / "train.conll", toy_ner(60, 1)),
             "dev": write_conll(tmp_path / "dev.conll", toy_ner(10, 2))}
    run = stepwise.train(**tiny_options(tiny_model, {**files, "test": files["dev"]}, tmp_path / "run", task="tag",
                                        epochs=2, casing=False))
    assert run_cli(capsys, ["export", str(run.path), "--format", "hf", "--out", str(tmp_path / "hf")])[0] == 0
    hf = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.id2label[0] == "O"
    predictor = stepwise.load(run.path, precision="fp32")
    features = predictor.encode([stepwise.Example(["John", "met", "Ann"], None)])
    batch = {k: torch.from_numpy(v) for k, v in pad(features, 0).items()}
    with torch.no_grad():
        ours = predictor.model(**batch)
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_hf_format_for_a_mean_pooled_classifier_ships_a_working_loader(cls_run: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "hf"
    assert run_cli(capsys, ["export", str(cls_run), "--format", "hf", "--out", str(out)])[0] == 0
    readme = (out / "README.md").read_text()
    assert "mean pooling" in readme
    code = re.search(r"```python\n# stepwise-loader\n(.*?)```", readme, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    texts = ["the film was excellent and wonderful", "the plot was awful"]
    labels, probs = scope["predict"](texts)
    predictor = stepwise.load(cls_run, precision="fp32")
    assert labels == predictor.predict(texts)
    np.testing.assert_allclose(probs.numpy(), predictor.predict_proba(texts), atol=1e-4)


@pytest.mark.parametrize("case", ["not a run", "export as --init-from", "out under a file", "out not an export",
                                  "onnx backend on a run", "torch backend on an export", "int8 with hf"])
def test_bad_export_inputs(case: str, cls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("keep")
    exported = tmp_path / "exported"
    if case in ("export as --init-from", "torch backend on an export"):
        assert run_cli(capsys, ["export", str(cls_run), "--out", str(exported)])[0] == 0
    data = write_tsv(tmp_path / "d.tsv", toy_sentences(10, 4))
    argv, expect = {
        "not a run": (["export", str(tmp_path / "mine")], "not a trained stepwise run"),
        "export as --init-from": (["rl", str(exported), "--train", str(data), "--out", str(tmp_path / "r")],
                                  "exported model (ONNX), not a run directory"),
        "out under a file": (["export", str(cls_run), "--out", str(tmp_path / "file.txt" / "x")], "is a file"),
        "out not an export": (["export", str(cls_run), "--out", str(tmp_path / "mine")], "not an earlier export"),
        "onnx backend on a run": (["predict", str(cls_run), "--input", str(data), "--backend", "onnx"],
                                  "--backend onnx needs an exported directory"),
        "torch backend on an export": (["predict", str(exported), "--input", str(data), "--backend", "torch"],
                                       "runs on ONNX Runtime"),
        "int8 with hf": (["export", str(cls_run), "--int8", "--format", "hf", "--out", str(tmp_path / "h")],
                         "--int8 applies to ONNX exports"),
    }[case]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and expect in err and "\n" not in err, err
    assert (tmp_path / "mine" / "notes.md").read_text() == "keep" and not (tmp_path / "r").exists()


def test_distilled_and_pruned_runs_export(cls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = {"train": write_tsv(tmp_path / "train.tsv", toy_sentences(80, 1)),
            "dev": write_tsv(tmp_path / "dev.tsv", toy_sentences(20, 2))}
    common = ["--train", str(data["train"]), "--dev", str(data["dev"]), "--epochs", "1", "--batch-size", "16",
              "--precision", "fp32", "--threads", "1", "--quiet"]
    assert run_cli(capsys, ["distill", str(cls_run), "--layers", "1", "--out", str(tmp_path / "d"), *common])[0] == 0
    assert run_cli(capsys, ["prune", str(cls_run), "--ffn", "0.5", "--out", str(tmp_path / "p"), *common])[0] == 0
    texts = [text for text, _ in toy_sentences(8, 3)]
    for name in ("d", "p"):
        code, _, err = run_cli(capsys, ["export", str(tmp_path / name)])
        assert code == 0, err
        torch_run = stepwise.load(tmp_path / name, backend="torch", precision="fp32")
        exported = stepwise.load(tmp_path / name / "onnx")
        assert exported.predict(texts) == torch_run.predict(texts)  # the student's own labels, not just any label
        assert exported.predict_proba(texts) == pytest.approx(torch_run.predict_proba(texts), abs=1e-3)


def test_int8_falls_back_to_the_more_accurate_setting(cls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import stepwise.deploy.parity as parity
    from stepwise.deploy.onnx_export import INT8_VARIANTS

    real_gate, calls = parity.gate, []

    def first_refused(report, int8, where):
        calls.append(report)
        if len(calls) == 1:
            raise stepwise.StepwiseError("refused on purpose")
        real_gate(report, int8, where)

    monkeypatch.setattr(parity, "gate", first_refused)
    code, _, err = run_cli(capsys, ["export", str(cls_run), "--int8", "--out", str(tmp_path / "int8")])
    assert code == 0, err
    export = json.loads((tmp_path / "int8" / "stepwise.json").read_text())["export"]
    assert export["int8_variant"] == INT8_VARIANTS[1] and len(export["int8_refused"]) == 1 and len(calls) == 2
    assert not (tmp_path / "int8" / "model.fp32.onnx").exists()


def test_default_parity_data_is_found_from_another_directory(tiny_model: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """--train/--dev given relative to where the run trained; export runs from elsewhere and still finds dev."""
    data = tmp_path / "data"
    data.mkdir()
    write_tsv(data / "train.tsv", toy_sentences(80, 1))
    write_tsv(data / "dev.tsv", toy_sentences(20, 2))
    monkeypatch.chdir(data)
    run = stepwise.train(**tiny_options(tiny_model, {"train": "train.tsv", "dev": "dev.tsv", "test": "dev.tsv"},
                                        tmp_path / "run", epochs=1))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, ["export", str(run.path), "--out", str(tmp_path / "elsewhere")])
    assert code == 0, err
