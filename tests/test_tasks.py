"""Task conformance: one check every registered task must pass (scikit-learn's estimator_checks, for tasks).

A new task registers itself and adds its sample data to SAMPLES (a task of your own, in a test:
`monkeypatch.setitem(SAMPLES, name, ...)` and call the checks, as tests/test_toy_task.py does); everything
else here is shared. The contract (tasks/base.py) is checked for every task; each optional capability
(tasks/capabilities.py) for the tasks that have it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from stepwise.data.batching import pad
from stepwise.errors import StepwiseError
from stepwise.example import IGNORE_INDEX, Example
from stepwise.reinforce.rewards import BUILT_IN, LOGLIK
from stepwise.tasks import get_task, task_class, task_names
from stepwise.tasks.capabilities import Augments, LearnsFromReward, PromptsLLM, Refines, has
from tests.conftest import toy_edits, toy_ner, toy_sentences

SAMPLES = {
    "classify": lambda: [Example(t, y, i + 1) for i, (t, y) in enumerate(toy_sentences(12, 0, ("neg", "neu", "pos")))],
    "tag": lambda: [Example(w, t, i + 1) for i, (w, t) in enumerate(toy_ner(12, 0))],
    "edit": lambda: [Example(s, [t], i + 1) for i, (s, t) in enumerate(toy_edits(16, 0))],
}


#: tasks that predict labels through the shared Predictor; a task with a recipe of its own (retrieval) has its
#: own verbs and tests, and must only declare what the loop and the registry ask (test_own_recipe_tasks)
LABEL_TASKS = [n for n in task_names() if not getattr(task_class(n), "recipe", None)]
RECIPE_TASKS = [n for n in task_names() if n not in LABEL_TASKS]


def perfect(task, examples: list[Example]) -> list:
    """Predictions equal to the gold, in the form `metrics` takes them (labels, tags, or corrected text)."""
    return [ex.label[0] if task.iterative else ex.label for ex in examples]


def test_every_registered_task_has_samples() -> None:
    assert set(LABEL_TASKS) == set(SAMPLES)


@pytest.mark.parametrize("name", RECIPE_TASKS)
def test_own_recipe_tasks(name: str) -> None:
    import importlib

    from stepwise.config import TrainConfig

    cls = task_class(name)
    module, _, attr = cls.recipe.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    assert cls.name == name and cls.noun and cls.default_metric in cls.metric_names
    assert set(cls.options_model.model_fields) <= set(TrainConfig.model_fields)
    assert cls().units([{"input_ids": [1]}, {"input_ids": [2]}]) == 2


def built(name: str, tokenizer=None):
    from stepwise.config import TrainConfig

    cls = task_class(name)
    examples = SAMPLES[name]()
    options = cls.options_from_config(TrainConfig(train="x", out="y"), examples)
    cls.clean_labels(examples, options)
    return get_task(name, cls.collect_labels(examples), **options), examples


@pytest.fixture(scope="module")
def tokenizer(tiny_model: str):
    from stepwise.model import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_declared_attributes(name: str) -> None:
    cls = task_class(name)
    assert cls.name == name and cls.noun and cls.data_hint
    assert cls.default_metric in cls.metric_names
    assert "jsonl" in cls.output_formats
    assert cls.pooling in ("mean", "token")
    model = cls.options_model
    if model is not None:  # its own options: defaults valid, and no clash with the shared ones or another task's
        from stepwise.config import SharedConfig, TrainConfig

        assert not set(model.__annotations__) & set(SharedConfig.model_fields)
        assert set(model.model_fields) <= set(TrainConfig.model_fields)
        model()
    for dim, spec in cls.search_space.items():
        from stepwise.search.space import parse_param

        parse_param(dim, spec, "search_space")  # a dimension the search can sample


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_rejects_every_other_tasks_data(name: str) -> None:
    cls = task_class(name)
    cls.check_data(SAMPLES[name](), "own.file")
    for other in LABEL_TASKS:
        if other != name:
            with pytest.raises(StepwiseError, match="other.file:1:"):
                cls.check_data(SAMPLES[other](), "other.file")


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_labels_are_stable_and_checked(name: str) -> None:
    task, examples = built(name)
    assert len(task.labels) >= 2 and task_class(name).collect_labels(list(reversed(examples))) == task.labels
    bad = SAMPLES[name]()[:1]
    if task.iterative:  # an editor's labels are the edits of any correction: no target is unknown
        bad[0].label = ["A target with words the training data never had ."]
        task.check_labels(bad, "data.file")
        return
    bad[0].label = "never-seen" if isinstance(bad[0].label, str) else ["B-NEVER"] * len(bad[0].label)
    with pytest.raises(StepwiseError, match="data.file:1:"):
        task.check_labels(bad, "data.file")


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_encode_decode_round_trip(name: str, tokenizer) -> None:
    """Logits that put all mass on the gold label ids decode, merge and read back as the gold labels."""
    task, examples = built(name)
    features = task.encode(tokenizer, examples, max_length=16)  # short: taggers cut sentences into windows
    assert all(f["_example"] in range(len(examples)) for f in features)
    batch = pad(features, tokenizer.pad_token_id)
    labels = batch["labels"]
    logits = np.full((*labels.shape, len(task.labels)), -20.0, dtype=np.float32)
    hot = np.where(labels == IGNORE_INDEX, 0, labels)
    np.put_along_axis(logits, hot[..., None], 20.0, axis=-1)
    probs = task.merge(examples, features, task.decode(logits, batch))
    if task.iterative:  # one pass of the decoded edits turns each source into its target
        assert [" ".join(task.apply(ex.text.split(), task.prediction_ids(p))) for ex, p in zip(examples, probs)] == \
            perfect(task, examples)
    else:
        assert [task.to_labels(p) for p in probs] == [ex.label for ex in examples]
    assert all(0.99 <= task.confidence(p) <= 1.0 for p in probs)


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_metrics_and_reports(name: str) -> None:
    task, examples = built(name)
    gold, best = task.gold(examples), perfect(task, examples)
    scores = task.metrics(gold, best)
    assert scores[task.default_metric] == pytest.approx(1.0)
    assert set(task.metric_names) <= set(scores)
    wrong = [ex.text if task.iterative else task.labels[0] if isinstance(ex.label, str) else ["O"] * len(ex.label)
             for ex in examples]
    assert task.metrics(gold, wrong)[task.default_metric] < 1.0
    assert isinstance(task.report_text(gold, best), str)


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_records_in_every_output_format(name: str, tiny_model: str, tokenizer) -> None:
    """An untrained model's predictions, through the one inference path, print in every format."""
    from stepwise.model import TaskModel
    from stepwise.predictor import Predictor

    task, examples = built(name)
    model = TaskModel.from_encoder(tiny_model, len(task.labels), task.pooling, extra_inputs=task.extra_inputs)
    outputs = Predictor(model, tokenizer, task, precision="fp32", steps=2).run(examples).outputs
    for fmt in task.output_formats:
        for ex, p in zip(examples, outputs):
            text = task.format_prediction(ex, p, fmt)
            assert text.endswith("\n")
            if fmt == "jsonl":
                json.loads(text)
        assert task.format_prediction(examples[0], None, fmt).endswith("\n")  # an input with no text keeps a line
    json.dumps(task.empty_record(Example("", None, 1)))
    with pytest.raises(StepwiseError, match="not available"):
        task.check_output_format("no-such-format")


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_refinement_hooks(name: str, tokenizer) -> None:
    """Refines: the previous prediction maps onto every feature token; ids round-trip through the labels."""
    task, examples = built(name)
    if task.iterative:
        pytest.skip("an iterative task's next step reads its own output text, not a previous-prediction input")
    if not has(task, Refines):
        pytest.skip("no Refines capability: --refine-steps > 1 is refused")
    features = task.encode(tokenizer, examples, max_length=16)
    gold_ids = [np.asarray([task.label_to_id[t] for t in ex.label]) if isinstance(ex.label, list)
                else np.asarray(task.label_to_id[ex.label]) for ex in examples]
    for feature in features:
        part = task.slice_prediction(feature, gold_ids[feature["_example"]])
        prev = task.prev_ids(feature, part)
        assert len(prev) == len(feature["input_ids"]) and all(0 <= v <= len(task.labels) for v in prev)
    for ex, ids in zip(examples, gold_ids):
        assert task.ids_to_labels(ids) == ex.label


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_model_declares_the_inputs_the_task_feeds(name: str, tiny_model: str, tokenizer) -> None:
    from stepwise.backends.torch import TorchBackend
    from stepwise.model import TaskModel

    task, examples = built(name)
    model = TaskModel.from_encoder(tiny_model, len(task.labels), task.pooling, extra_inputs=task.extra_inputs)
    batch = pad(task.encode(tokenizer, examples, 32, with_labels=False), tokenizer.pad_token_id)
    assert set(model.input_names) <= set(batch)
    logits = TorchBackend(model).run(batch)
    assert logits.dtype == np.float32 and logits.shape[-1] == len(task.labels)


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_llm_prompting(name: str) -> None:
    """PromptsLLM: a gold answer, shown as a prompt shows it, parses back to itself; the fallback and a wrong
    draft are answers too; the output reads as labels; the task ships its draft and revise templates."""
    from stepwise.llm.prompts import Prompts, shot_of

    task, examples = built(name)
    if not has(task, PromptsLLM):
        with pytest.raises(StepwiseError, match="an LLM policy is not available"):
            Prompts(task)
        return
    prompts = Prompts(task)  # the built-in templates load
    for ex in examples[:4]:
        gold = task.llm_gold(ex)
        answer = task.llm_answer(gold, ex)
        assert task.llm_answer(task.llm_parse(answer, ex), ex) == answer
        assert task.llm_parse("", ex) is None
        for ids in (task.llm_wrong(ex), task.llm_fallback(ex, examples)):
            task.llm_answer(ids, ex)
        assert task.to_labels(task.llm_output(gold, ex)) == perfect(task, [ex])[0]
        assert task.llm_max_tokens(ex) > 0
        text = prompts.render("draft", example=ex, shots=[shot_of(task, e) for e in examples[:2]])
        assert task.llm_text(ex) in text


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_rewards(name: str) -> None:
    """LearnsFromReward: the built-in rewards it names exist, and each gives its gold's perfect prediction the
    top score."""
    from stepwise.reinforce.rewards import get_reward

    task, examples = built(name)
    if not has(task, LearnsFromReward):
        pytest.skip("no LearnsFromReward capability: stepwise rl is refused")
    assert task.rewards and all(r in BUILT_IN or r == LOGLIK for r in task.rewards)
    for spec in task.rewards:
        reward = get_reward(spec)
        if reward is None:  # loglik: computed by the objective from the model's own probabilities
            continue
        for gold in task.gold(examples[:4]):
            assert reward(task.perfect(gold), gold) == pytest.approx(1.0)


@pytest.mark.parametrize("name", LABEL_TASKS)
def test_augmentation(name: str) -> None:
    """Augments: one noisy copy per example, labels kept, reproducible from the seed."""
    task, examples = built(name)
    if not has(task, Augments):
        with pytest.raises(StepwiseError, match="--augment is not available"):
            from stepwise.tasks.capabilities import require

            require(task, Augments, "--augment")
        return
    copies = task.augment(examples, 3.0, seed=1)
    assert len(copies) == len(examples) and [c.label for c in copies] == [ex.label for ex in examples]
    assert [c.text for c in copies] == [c.text for c in task.augment(examples, 3.0, seed=1)]
    assert any(c.text != ex.text for c, ex in zip(copies, examples))
