"""Shipping smaller models (issue 13): distillation into fewer layers, FFN pruning by importance."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import stepwise
from stepwise.cli import main
from stepwise.data.batching import collate
from stepwise.deploy.prune import prune_ffn, taylor_importance
from stepwise.deploy.surgery import ffn_modules, keep_layers, spread_layers
from stepwise.errors import StepwiseError
from stepwise.example import IGNORE_INDEX, UNLABELED
from stepwise.model import TaskModel, load_tokenizer
from stepwise.recipes.distill import distill
from stepwise.recipes.prune import prune
from stepwise.tasks import get_task
from stepwise.training.objectives import ObjectiveContext, Teacher, build_objective
from tests.conftest import tiny_options, toy_ner, toy_sentences, toy_splits, write_conll


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return toy_splits(tmp_path_factory.mktemp("distill-prune-data"))


@pytest.fixture(scope="module")
def teacher(tiny_model: str, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained 2-layer classifier (the tiny BERT), shared by the tests that start from a run."""
    return stepwise.train(**tiny_options(tiny_model, data, tmp_path_factory.mktemp("teacher") / "run", epochs=6)).path


def options(data: dict[str, Path], out: Path, **overrides: object) -> dict[str, object]:
    """Training options for a recipe that starts from a run (task and model come from the run)."""
    return {"train": str(data["train"]), "dev": str(data["dev"]), "test": str(data["test"]), "out": str(out),
            "batch_size": 16, "lr": 1e-2, "precision": "fp32", "quiet": True, "threads": 1, "patience": None,
            **overrides}


def parameters(run: Path) -> int:
    return sum(p.numel() for p in stepwise.load(run).model.parameters())


# --- the distill objective ---------------------------------------------------------------------------


class Fixed(nn.Module):
    """A 'model' whose logits are its parameter: the objective's arithmetic without an encoder."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.logits


class Options:
    label_smoothing, loss_weighting, batch_size = 0.0, "batch", 2


def distill_loss(task_name: str, student: nn.Module, teacher: nn.Module, batch: dict, *, temperature: float = 2.0,
                 alpha: float = 0.5, labels: tuple[str, ...] = ("neg", "pos", "mid")) -> tuple[torch.Tensor, dict]:
    task = get_task(task_name, list(labels))
    ctx = ObjectiveContext(task, student, Options(), "fp32", [], teacher=Teacher(teacher, temperature, alpha))
    return build_objective("distill", ctx)(student, batch)


def fake_batch(labels: torch.Tensor, length: int = 4) -> dict[str, torch.Tensor]:
    n = labels.shape[0]
    return {"input_ids": torch.zeros(n, length, dtype=torch.long),
            "attention_mask": torch.ones(n, length, dtype=torch.long), "labels": labels}


def test_distill_loss_is_the_formula_and_cross_entropy_at_alpha_zero() -> None:
    torch.manual_seed(0)
    student_logits, teacher_logits = torch.randn(3, 3), torch.randn(3, 3)
    batch = fake_batch(torch.tensor([0, 2, 1]))
    ce = nn.functional.cross_entropy(student_logits, batch["labels"])
    loss, logs = distill_loss("classify", Fixed(student_logits), Fixed(teacher_logits), batch, alpha=0.0)
    assert loss.item() == pytest.approx(ce.item(), abs=1e-7) and logs["ce"] == pytest.approx(ce.item(), abs=1e-7)

    t = 3.0
    p_teacher = torch.softmax(teacher_logits / t, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student_logits / t, -1))).sum(-1).mean()
    loss, logs = distill_loss("classify", Fixed(student_logits), Fixed(teacher_logits), batch, temperature=t,
                              alpha=0.25)
    assert logs["kd"] == pytest.approx(t * t * kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx(0.25 * t * t * kl.item() + 0.75 * ce.item(), rel=1e-5)


def test_distill_loss_counts_only_labeled_tokens() -> None:
    """A tagger's KD term ignores padding and non-first sub-tokens, like its cross-entropy."""
    torch.manual_seed(0)
    labels = torch.tensor([[0, IGNORE_INDEX, 1, IGNORE_INDEX], [2, 2, IGNORE_INDEX, IGNORE_INDEX]])
    student = torch.randn(2, 4, 3)
    teacher = student.clone()
    teacher[labels == IGNORE_INDEX] = torch.randn(int((labels == IGNORE_INDEX).sum()), 3) * 5
    loss, logs = distill_loss("tag", Fixed(student), Fixed(teacher), fake_batch(labels), alpha=1.0,
                              labels=("O", "B-PER", "I-PER"))
    assert logs["kd"] == pytest.approx(0.0, abs=1e-6) and loss.item() == pytest.approx(0.0, abs=1e-6)
    teacher[0, 0] += torch.tensor([3.0, -3.0, 0.0])  # one labeled token disagrees: 1 of 4 labeled positions
    _, logs = distill_loss("tag", Fixed(student), Fixed(teacher), fake_batch(labels), alpha=1.0,
                           labels=("O", "B-PER", "I-PER"))
    one = nn.functional.kl_div(torch.log_softmax(student[0, 0] / 2, -1), torch.log_softmax(teacher[0, 0] / 2, -1),
                               reduction="sum", log_target=True)
    assert logs["kd"] == pytest.approx(2 ** 2 * one.item() / 4, rel=1e-5)  # T^2 * KL, mean over labeled tokens


def test_unlabeled_positions_get_the_soft_target_only() -> None:
    """UNLABELED texts count in the KD mean but not in the gold cross-entropy; a batch of them alone still
    trains the student (ce 0, finite loss, a gradient)."""
    torch.manual_seed(0)
    student_logits, teacher_logits = torch.randn(3, 3), torch.randn(3, 3)
    labels = torch.tensor([2, UNLABELED, UNLABELED])
    loss, logs = distill_loss("classify", Fixed(student_logits), Fixed(teacher_logits), fake_batch(labels),
                              alpha=0.5)
    ce = nn.functional.cross_entropy(student_logits[:1], labels[:1])
    kl = nn.functional.kl_div(torch.log_softmax(student_logits / 2, -1), torch.log_softmax(teacher_logits / 2, -1),
                              reduction="none", log_target=True).sum(-1)
    assert logs["ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert logs["kd"] == pytest.approx(4 * kl.mean().item(), rel=1e-5)  # all three texts
    student = Fixed(student_logits)
    loss, logs = distill_loss("classify", student, Fixed(teacher_logits),
                              fake_batch(torch.tensor([UNLABELED] * 3)), alpha=0.5)
    loss.backward()
    assert logs["ce"] == 0.0 and torch.isfinite(loss) and student.logits.grad.abs().sum() > 0
    tags = torch.tensor([[UNLABELED, IGNORE_INDEX, UNLABELED], [1, UNLABELED, IGNORE_INDEX]])
    tag_student, tag_teacher = torch.randn(2, 3, 3), torch.randn(2, 3, 3)
    _, logs = distill_loss("tag", Fixed(tag_student), Fixed(tag_teacher), fake_batch(tags, 3), alpha=1.0,
                           labels=("O", "B-PER", "I-PER"))
    kl = nn.functional.kl_div(torch.log_softmax(tag_student / 2, -1), torch.log_softmax(tag_teacher / 2, -1),
                              reduction="none", log_target=True).sum(-1)
    assert logs["kd"] == pytest.approx(4 * kl[tags != IGNORE_INDEX].mean().item(), rel=1e-5)
    assert logs["ce"] == pytest.approx(nn.functional.cross_entropy(tag_student[1, 0:1], tags[1, 0:1]).item(),
                                       rel=1e-5)


def test_student_equal_to_teacher_has_no_kd_loss_and_the_teacher_gets_no_gradient(tiny_model: str) -> None:
    torch.manual_seed(0)
    task = get_task("classify", ["neg", "pos"])
    tokenizer = load_tokenizer(tiny_model)
    batch = collate(task.encode(tokenizer, [stepwise.Example(t, y) for t, y in toy_sentences(8, 5)], 64),
                    tokenizer.pad_token_id)
    model = TaskModel.from_encoder(tiny_model, 2, "mean").eval()
    same = copy.deepcopy(model).train()  # the objective must switch its dropout off
    loss, logs = distill_loss("classify", model, same, batch, alpha=1.0, labels=("neg", "pos"))
    assert logs["kd"] == pytest.approx(0.0, abs=1e-6) and logs["ce"] > 0.1

    with torch.no_grad():
        model.head.weight.add_(torch.randn_like(model.head.weight))
    loss, logs = distill_loss("classify", model, same, batch, alpha=1.0, labels=("neg", "pos"))
    loss.backward()
    assert logs["kd"] > 1e-4
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in same.parameters())
    assert not same.training


# --- layer surgery and the distill recipe ------------------------------------------------------------


def test_spread_layers_keeps_the_top_layer_and_spreads_the_rest() -> None:
    assert spread_layers(3, 6) == [1, 3, 5]
    assert spread_layers(4, 12) == [2, 5, 8, 11]
    assert spread_layers(1, 2) == [1]
    assert spread_layers(6, 6) == list(range(6))


def test_keep_layers_is_a_standard_encoder_with_the_chosen_weights(tiny_model: str, tmp_path: Path) -> None:
    from transformers import AutoModel

    model = TaskModel.from_encoder(tiny_model, 2, "mean").eval()
    ids = torch.tensor([[101, 2204, 3185, 102], [101, 2919, 102, 0]])
    mask = (ids != 0).long()
    full = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    same = keep_layers(model.encoder, [0, 1])
    assert torch.allclose(same(input_ids=ids, attention_mask=mask).last_hidden_state, full, atol=1e-6)

    top = keep_layers(model.encoder, [1])
    assert top.config.num_hidden_layers == 1 and len(top.encoder.layer) == 1
    for key, value in model.encoder.encoder.layer[1].state_dict().items():
        assert torch.equal(top.encoder.layer[0].state_dict()[key], value), key
    top.save_pretrained(tmp_path / "top")
    again = AutoModel.from_pretrained(tmp_path / "top", add_pooling_layer=False).eval()
    assert torch.allclose(again(input_ids=ids, attention_mask=mask).last_hidden_state,
                          top.eval()(input_ids=ids, attention_mask=mask).last_hidden_state, atol=1e-6)


def test_distill_two_layers_into_one(teacher: Path, data: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    run = distill(str(teacher), layers=1, temperature=2.0, alpha=0.5, **options(data, tmp_path / "student", epochs=2))
    assert json.loads((run.path / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    assert run.results["distill"]["layers_kept"] == [1]
    assert parameters(run.path) < parameters(teacher)
    predictor = stepwise.load(run.path)
    assert len(predictor.model.encoder.encoder.layer) == 1
    assert predictor.predict(["the movie was excellent and wonderful"]) in (["pos"], ["neg"])
    logged = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [r for r in logged if "loss" in r]
    assert train_lines and all({"kd", "ce"} <= set(r) for r in train_lines)
    assert train_lines[-1]["loss"] == pytest.approx(0.5 * train_lines[-1]["kd"] + 0.5 * train_lines[-1]["ce"],
                                                    rel=1e-4)

    code = main(["evaluate", str(run.path), "--data", str(data["test"]), "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["accuracy"] == pytest.approx(run.results["test"]["accuracy"])


def test_distill_trains_on_unlabeled_text_too(teacher: Path, data: dict[str, Path], tmp_path: Path) -> None:
    """The unlabeled lines join the training set: more steps per epoch, counted in the run's results."""
    texts = [t for t, _ in toy_sentences(64, 9)]
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(texts[:32]) + "\n\n" + "\n".join(texts[32:]) + "\n")  # a blank line is skipped
    plain = distill(str(teacher), layers=1, **options(data, tmp_path / "plain", epochs=1))
    run = distill(str(teacher), layers=1, unlabeled=str(unlabeled), **options(data, tmp_path / "student", epochs=1))
    assert plain.results["train"]["steps"] == 10 and run.results["train"]["steps"] == 14  # 160 / 16, 224 / 16
    assert run.results["distill"]["unlabeled_examples"] == 64 and run.results["train"]["examples"] == 224
    assert stepwise.load(run.path).predict(["the movie was excellent"]) in (["pos"], ["neg"])


def test_distill_a_tagger_on_unlabeled_sentences(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture
                                                  ) -> None:
    files = {"train": write_conll(tmp_path / "train.conll", toy_ner(32, 1)),
             "dev": write_conll(tmp_path / "dev.conll", toy_ner(8, 2)),
             "test": write_conll(tmp_path / "test.conll", toy_ner(8, 3))}
    base = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "tagger", task="tag", epochs=1))
    unlabeled = tmp_path / "sentences.txt"
    unlabeled.write_text("".join(" ".join(words) + "\n" for words, _ in toy_ner(16, 4)))
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["distill", str(base.path), "--layers", "1", "--unlabeled", str(unlabeled), "--epochs", "1",
                     "--train", str(files["train"]), "--dev", str(files["dev"]), "--out", str(tmp_path / "student"),
                     "--batch-size", "16", "--precision", "fp32", "--threads", "1", "--quiet"])
    results = json.loads((tmp_path / "student" / "results.json").read_text())
    assert code == 0 and results["train"]["steps"] == 3 and results["distill"]["unlabeled_examples"] == 16


def test_unlabeled_text_is_refused_for_a_refiner_or_when_empty(tiny_model: str, teacher: Path,
                                                               data: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(StepwiseError, match="file is empty|has no text"):
        distill(str(teacher), layers=1, unlabeled=str(empty), **options(data, tmp_path / "out"))
    refiner = stepwise.train(**tiny_options(tiny_model, data, tmp_path / "refiner", max_steps=1, refine_steps=2))
    empty.write_text("a fine film\n")
    with pytest.raises(StepwiseError, match="--unlabeled needs a single-step teacher"):
        distill(str(refiner.path), layers=1, unlabeled=str(empty), **options(data, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --- FFN pruning ----------------------------------------------------------------------------------


def test_taylor_importance_drops_large_but_dead_neurons_exactly(tiny_model: str) -> None:
    """Half the neurons get big weights but never fire: magnitude would keep them, importance must drop them.

    With exactly those removed, the pruned model computes the same function as the unpruned one.
    """
    torch.manual_seed(0)
    task = get_task("classify", ["neg", "pos"])
    tokenizer = load_tokenizer(tiny_model)
    feats = task.encode(tokenizer, [stepwise.Example(t, y) for t, y in toy_sentences(32, 7)], 64)
    batches = [collate(feats[i:i + 8], tokenizer.pad_token_id) for i in range(0, 32, 8)]
    model = TaskModel.from_encoder(tiny_model, 2, "mean").eval()
    live = []
    with torch.no_grad():
        for up, down in ffn_modules(model.encoder):
            dead = torch.randperm(up.out_features)[: up.out_features // 2]
            up.weight[dead] *= 10
            up.bias[dead] = -1e4  # GELU(-1e4) is exactly 0 in fp32, and so is its slope
            down.weight[:, dead] *= 10
            live.append(sorted(set(range(up.out_features)) - set(dead.tolist())))
    before = model(**batches[0])
    scores = taylor_importance(model, model.encoder, batches, lambda m, b: task.loss(m(**b), b, 0.0))
    assert not model.training and all(p.grad is None for p in model.parameters())
    magnitude = [up.weight.abs().sum(1) for up, _ in ffn_modules(model.encoder)]
    assert [sorted(torch.topk(m, len(k)).indices.tolist()) for m, k in zip(magnitude, live)] != live
    model.encoder = prune_ffn(model.encoder, scores, keep=len(live[0]))
    assert model.encoder.config.intermediate_size == len(live[0])
    assert torch.allclose(model(**batches[0]), before, atol=1e-5)


def test_prune_halves_the_ffn_and_recovers(teacher: Path, data: dict[str, Path], tmp_path: Path) -> None:
    run = prune(str(teacher), ffn=0.5, **options(data, tmp_path / "pruned"))
    config = json.loads((run.path / "model" / "config.json").read_text())
    assert config["intermediate_size"] == 32 and config["num_hidden_layers"] == 2
    assert run.results["prune"]["intermediate_size"] == [64, 32]
    assert parameters(run.path) == run.results["prune"]["parameters"][1] < parameters(teacher)
    assert run.results["train"]["steps"] == 10  # recovery defaults to one epoch (160 examples / 16)
    assert run.results["test"]["accuracy"] >= 0.9
    assert stepwise.load(run.path).predict(["the movie was excellent and wonderful",
                                            "the movie was awful and terrible"]) == ["pos", "neg"]


def test_prune_and_distill_a_tagger(tiny_model: str, tmp_path: Path) -> None:
    """Taggers carry the word-shape input and label only first sub-tokens: both recipes keep that working."""
    files = {"train": write_conll(tmp_path / "train.conll", toy_ner(80, 1)),
             "dev": write_conll(tmp_path / "dev.conll", toy_ner(20, 2)),
             "test": write_conll(tmp_path / "test.conll", toy_ner(20, 3))}
    base = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "tagger", task="tag", epochs=2))
    pruned = prune(str(base.path), ffn=0.25, **options(files, tmp_path / "pruned", max_steps=2))
    assert pruned.results["task"] == "tag" and pruned.results["prune"]["intermediate_size"] == [64, 48]
    student = distill(str(base.path), layers=1, **options(files, tmp_path / "student", max_steps=2))
    assert "f1" in student.results["test"]
    logged = [json.loads(x) for x in (student.path / "metrics.jsonl").read_text().splitlines()]
    assert any("kd" in r for r in logged)
    assert stepwise.load(student.path).model.extra_inputs == stepwise.load(base.path).model.extra_inputs


def test_pruned_model_exports_to_onnx(tiny_model: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = TaskModel.from_encoder(tiny_model, 2, "mean").eval()
    scores = [torch.arange(up.out_features, dtype=torch.float) for up, _ in ffn_modules(model.encoder)]
    model.encoder = prune_ffn(model.encoder, scores, keep=16)
    ids = torch.tensor([[101, 2204, 3185, 102], [101, 2919, 102, 0]])
    mask = (ids != 0).long()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        expected = model(ids, mask).numpy()
        torch.onnx.export(model, (ids, mask), str(tmp_path / "m.onnx"), input_names=["input_ids", "attention_mask"],
                          dynamo=True, external_data=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert abs(got - expected).max() < 1e-4


# --- heads and bad inputs -----------------------------------------------------------------------------


def test_head_size_is_tied_to_the_head_count_in_transformers() -> None:
    """Why --heads is refused: with fewer heads, a BERT config makes each head wider, not fewer heads of a size."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertSelfAttention

    attention = BertSelfAttention(BertConfig(hidden_size=32, num_attention_heads=1, intermediate_size=64))
    assert attention.attention_head_size == 32 and attention.query.out_features == 32


@pytest.mark.parametrize("recipe, arguments, message", [
    ("distill", {"layers": 0}, "--layers must be a whole number from 1 to 2"),
    ("distill", {"layers": 3}, "--layers must be a whole number from 1 to 2"),
    ("distill", {"layers": 1.5}, "--layers must be a whole number"),
    ("distill", {"layers": 1, "temperature": 0.0}, "--temperature must be greater than 0"),
    ("distill", {"layers": 1, "alpha": 1.5}, "--alpha must be from 0 to 1"),
    ("prune", {"ffn": 0.0}, "--ffn must be between 0 and 1"),
    ("prune", {"ffn": 1.0}, "--ffn must be between 0 and 1"),
    ("prune", {"ffn": -0.5}, "--ffn must be between 0 and 1"),
    ("prune", {"ffn": 0.001}, "keeps 64 of the 64 FFN neurons"),
    ("prune", {"ffn": 0.5, "heads": 0.5}, "attention heads cannot be pruned"),
    ("prune", {"ffn": 0.5, "heads": 1.5}, "--heads must be from 0"),
])
def test_bad_inputs_are_one_line_before_anything_is_written(teacher: Path, data: dict[str, Path], tmp_path: Path,
                                                            recipe: str, arguments: dict, message: str) -> None:
    out = tmp_path / "out"
    function = distill if recipe == "distill" else prune
    with pytest.raises(StepwiseError, match=message) as caught:
        function(str(teacher), **arguments, **options(data, out))
    assert "\n" not in str(caught.value)
    assert not out.exists()


def test_a_run_that_is_not_a_run_is_refused(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(StepwiseError, match="run directory not found"):
        distill(str(tmp_path / "nowhere"), layers=1, **options(data, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
