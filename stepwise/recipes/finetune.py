"""Recipe: fine-tune a pretrained encoder for a task and write a complete run directory.

    validate everything (data, task, labels, metric, reward, model, --out)   nothing written yet
    → begin the run directory (fresh, resumed, or started over)
    → encode → fit (the shared loop, with the recipe's objective) → reports → results.json

`stepwise rl` is this recipe with the "reinforce" objective, started from a trained run; `distill` and
`prune` start from a trained run too and reshape its model after loading (`transform`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepwise.config import build_config, save_config
from stepwise.data.dataset import infer_task, read_splits
from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.files import atomic_write_json, atomic_write_text
from stepwise.layout import CONFIG, CURVES, LABELS, METRICS, REPORT_JSON, REPORT_TXT, RESULTS
from stepwise.rundir import Run, RunDir
from stepwise.tasks.capabilities import Augments, Refines, require
from stepwise.tasks.hooks import TrainingHooks
from stepwise.training.evaluator import DevEvaluator

if TYPE_CHECKING:
    from stepwise.config import TrainConfig

__all__ = ["Prepared", "Run", "load_model", "prepare", "run_recipe", "train"]


@dataclass
class Prepared:
    """A validated training job: everything checked, nothing written; the model is loaded by `load_model`."""

    config: TrainConfig
    task: Any
    data: dict[str, list[Example]]
    sources: dict[str, str]
    split_made: bool
    start_meta: dict[str, Any] | None = None
    reward: Any = None
    notes: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    tokenizer: Any = None
    refine_steps: int = 1
    teacher: Any = None  # a training.objectives.Teacher, for the "distill" objective
    unlabeled: list[Example] = field(default_factory=list)  # distill: texts scored by the teacher's soft targets
    threads: Any = None  # a stepwise.threads.ThreadGovernor: the thread count, measured and followed
    hooks: TrainingHooks = field(default_factory=TrainingHooks)  # the task's own steps around the loop


def train(config: TrainConfig | None = None, *, callbacks: tuple = (), **options: Any) -> Run:
    """Fine-tune a pretrained encoder for the configured task and write a complete run directory.

    Pass a TrainConfig or keyword options (the same names as the CLI flags), e.g.
    ``stepwise.train(task="classify", train="data.tsv", out="runs/a", epochs=2)``.
    """
    cfg = config if config is not None else build_config(options)
    own = _own_recipe(cfg)
    if own is not None:  # a task trained by a recipe of its own (e.g. retrieval: two towers, no head)
        return own(cfg, callbacks=callbacks)
    # --reward asks for the policy-gradient objective (from the pretrained encoder; `rl` starts from a run)
    return run_recipe(cfg, objective="reinforce" if cfg.reward else "supervised", callbacks=callbacks)


def _own_recipe(cfg: TrainConfig) -> Callable[..., Run] | None:
    import importlib

    from stepwise.tasks import task_class, task_names

    if cfg.task not in task_names() or not getattr(task_class(cfg.task), "recipe", None):
        return None
    module, _, name = task_class(cfg.task).recipe.partition(":")
    return getattr(importlib.import_module(module), name)


def run_recipe(cfg: TrainConfig, *, objective: str, callbacks: tuple = (),
               transform: Callable[[Prepared], None] | None = None) -> Run:
    """`transform(job)`, when given, reshapes the loaded job (e.g. a smaller model, a teacher) before any writing."""
    from stepwise.threads import ThreadGovernor
    from stepwise.training.distributed import default_threads, from_environment

    run, launch = RunDir(cfg.out), from_environment()
    # the free cores are counted over the checks and the model's loading (no extra wait); under torchrun the
    # ranks on one machine would count each other as load: they split the cores instead
    threads = ThreadGovernor(forced=cfg.threads or (default_threads(launch) if launch.active else None))
    threads.begin()
    if launch.is_main:
        run.check_writable(source=cfg.init_from)
    job = prepare(cfg, objective, distributed=launch.active)  # plain Python: bad input is reported before torch

    from stepwise.scope import seeded
    from stepwise.training.distributed import process_group

    with process_group() as dist, seeded(cfg.seed):
        load_model(job)  # a missing or damaged model is still reported before anything is written
        job.threads = threads
        threads.start()
        from stepwise.training.small_data import apply_small_data

        apply_small_data(job, objective)  # a small classification set: the head from a linear probe
        if transform is not None:
            transform(job)
        resuming = dist.on_main(lambda: run.begin(resume=cfg.resume, overwrite=cfg.overwrite))
        return execute(job, run, objective, resuming, callbacks, dist)


def prepare(cfg: TrainConfig, objective: str, *, distributed: bool = False) -> Prepared:
    """Every check that can fail on the user's data and options, before the run directory is touched."""
    from stepwise.modeldir import check_encoder_dir, default_model_dir
    from stepwise.tasks import get_task, task_class, task_names

    start_meta = RunDir.open(cfg.init_from).meta() if cfg.init_from else None
    if start_meta and getattr(task_class(start_meta["task"]), "recipe", None):
        raise StepwiseError(f"a {start_meta['task']} run cannot start rl, distill or prune", path=cfg.init_from,
                            fix="these verbs start from a classifier, tagger or editor run")
    name = cfg.task or (start_meta["task"] if start_meta else infer_task(cfg.train, cfg.input_format))
    if name not in task_names():
        raise StepwiseError(f"unknown task {name!r}", fix=f"use --task {' or '.join(task_names())}")
    if start_meta and start_meta["task"] != name:
        raise StepwiseError(f"the run is a {start_meta['task']} run, not {name}", path=cfg.init_from,
                            fix=f"pass --task {start_meta['task']}")
    cfg = cfg.model_copy(update={"task": name})
    task_cls = task_class(name)
    _check_metric(cfg, task_cls, objective)
    _check_task_options(cfg, task_cls, objective)
    if not start_meta:
        check_encoder_dir(cfg.model or default_model_dir())

    splits = read_splits(cfg, task_cls)
    data = splits.data
    options = (task_cls.options_from_run(start_meta.get("task_options", {})) if start_meta
               else task_cls.options_from_config(cfg, data["train"]))
    repaired = ({split: task_cls.clean_labels(exs, options) for split, exs in data.items()}
                if task_cls.cleans_labels(cfg) else {})
    labels = start_meta["labels"] if start_meta else task_cls.collect_labels(data["train"])
    task = get_task(name, labels, **options)  # fewer than two classes is reported here
    if cfg.refine_steps > 1 and not task.iterative:  # the previous prediction becomes a model input
        require(task, Refines, "--refine-steps > 1")
    hooks = task.training_hooks(cfg)
    hooks.check(cfg, data, splits.sources, distributed=distributed)
    for split in ("train", "dev", "test") if start_meta else ("dev", "test"):
        if split in data:
            task.check_labels(data[split], splits.sources[split])

    if cfg.augment:
        require(task, Augments, "--augment")
        data["train"] = [*data["train"], *task.augment(data["train"], cfg.augment, cfg.seed)]
    reward = _reward(cfg, task, data["dev"]) if objective == "reinforce" else None
    notes: dict[str, Any] = {}
    if any(repaired.values()):
        notes["repaired_tags"] = repaired
    if splits.cleaned:
        notes["cleaned"] = splits.cleaned
    notes.update(task_cls.data_notes(data["train"]))
    return Prepared(cfg, task, data, splits.sources, splits.split_made, start_meta, reward, notes, hooks=hooks)


def load_model(job: Prepared) -> None:
    """The starting model: a trained run's (rl, continued training) or a pretrained encoder with a new head."""
    from stepwise.model import TaskModel, load_tokenizer
    from stepwise.refine.policy import PREV

    cfg, task = job.config, job.task
    if job.start_meta:
        job.model, job.tokenizer, _ = TaskModel.from_pretrained(RunDir.open(cfg.init_from).model_dir)
        # the run's steps, unless its model no longer refines (a document head is dropped in `prepare`)
        multi = task.multi_step(job.model.extra_inputs)
        job.refine_steps = job.start_meta.get("refine_steps", 1) if multi else 1
        return
    job.tokenizer = load_tokenizer(cfg.model)
    extra_inputs = dict(task.extra_inputs)
    if cfg.refine_steps > 1 and not task.iterative:
        extra_inputs[PREV] = len(task.labels) + 1  # label id + 1; 0 = "no prediction yet"
    pairs = any(ex.pair is not None for ex in job.data["train"])
    job.model = TaskModel.from_encoder(cfg.model, len(task.labels), task.pooling, cfg.dropout, extra_inputs,
                                       token_types=pairs)
    job.refine_steps = job.hooks.refine_steps(cfg.refine_steps if cfg.refine_steps > 1 or not task.iterative
                                              else task.default_steps)


def _check_metric(cfg: TrainConfig, task_cls: Any, objective: str) -> None:
    if cfg.metric is None:
        return
    allowed = list(task_cls.metric_names) + (["reward"] if objective == "reinforce" else [])
    if cfg.metric == "reward" and objective != "reinforce":
        raise StepwiseError("--metric reward needs a reward: only `stepwise rl` optimizes one",
                            fix=f"use one of {', '.join(allowed)}, or run `stepwise rl RUN --reward ...`")
    if cfg.metric not in allowed:
        raise StepwiseError(f"--metric {cfg.metric} is not a {task_cls.noun} metric",
                            fix=f"use one of {', '.join(allowed)}")


def _check_task_options(cfg: TrainConfig, task_cls: Any, objective: str) -> None:
    """Another task's own option (a field of its `options_model`) given to this task is refused, not silently
    ignored; then the task checks its own."""
    from stepwise.tasks import task_class, task_names

    own = task_options(task_cls)
    tasks = [task_class(t) for t in task_names()]
    for name, spec in type(cfg).model_fields.items():
        readers = [t.noun + "s" for t in tasks if name in task_options(t)]
        if not readers or name in own or getattr(cfg, name) == spec.default:
            continue
        flag = "--" + name.replace("_", "-")
        raise StepwiseError(f"{flag} is for {' and '.join(readers)}, not available for {task_cls.noun} runs",
                            fix=f"drop {flag}")
    task_cls.check_options(cfg, objective)


def task_options(task_cls: Any) -> set[str]:
    """The names of a task's own training options."""
    model = getattr(task_cls, "options_model", None)
    return set(model.model_fields) if model is not None else set()


def _reward(cfg: TrainConfig, task: Any, dev: list[Example]) -> Any:
    """The reward, checked before any writing: known, fits the task, and sane on gold predictions."""
    from stepwise.reinforce.rewards import BUILT_IN, LOGLIK, get_reward
    from stepwise.tasks.capabilities import LearnsFromReward, require

    require(task, LearnsFromReward, "stepwise rl (--reward)", "train it with the supervised objective")
    spec = cfg.reward or task.rewards[0]
    if (spec in BUILT_IN or spec == LOGLIK) and spec not in task.rewards:
        raise StepwiseError(f"the {spec} reward does not apply to {task.noun} runs",
                            fix=f"use one of {', '.join(task.rewards)}, or module:function")
    reward = get_reward(spec)
    if reward is not None:
        for gold in task.gold(dev[:8]):  # a reward that raises, returns NaN or a string, or leaves its range fails
            reward(task.perfect(gold), gold)
    return reward


def execute(job: Prepared, run: RunDir, objective: str, resuming: bool, callbacks: tuple, dist: Any = None) -> Run:
    """Write the run's inputs, train with the shared loop, score the best model and write the reports.

    Under torchrun (`dist`) every rank trains on its shards; rank 0 alone writes, evaluates, scores and
    reports, and the other ranks return its results.
    """
    from stepwise.precision import measure_precision
    from stepwise.predictor import Predictor, load
    from stepwise.training.distributed import Dist
    from stepwise.training.loop import fit
    from stepwise.training.objectives import ObjectiveContext, build_objective

    dist = dist or Dist()
    job.config = fit_length(job.config, job.model.encoder, job.notes)
    cfg, task, data = job.config, job.task, job.data
    started = time.perf_counter()
    if dist.is_main:
        # data paths resolved: export's parity check and `show` find them from any working directory
        paths = {k: str(Path(v).resolve()) for k in ("train", "dev", "test") if (v := getattr(cfg, k)) is not None}
        paths |= {k: [str(Path(t).resolve()) for t in v] for k in ("train_target", "dev_target", "test_target")
                  if (v := getattr(cfg, k))}
        save_config(cfg.model_copy(update=paths), run / CONFIG)
        atomic_write_json(run / LABELS, task.labels)
        if job.split_made:
            for split, part in data.items():
                atomic_write_text(run.split_file(split), "".join(_split_line(ex) for ex in part))

    encoded = data if dist.is_main else {"train": data["train"]}  # dev and test are rank 0's to score
    features = {split: task.encode(job.tokenizer, exs, cfg.max_length) for split, exs in encoded.items()}
    if job.unlabeled:
        features["train"] = features["train"] + task.mark_unlabeled(
            task.encode(job.tokenizer, job.unlabeled, cfg.max_length, with_labels=False))
    # timed at the run's typical batch: length-grouped batches are about as wide as their median sentence
    lengths = sorted(len(f["input_ids"]) for f in features["train"])
    precision, probe = dist.on_main(lambda: measure_precision(
        cfg.precision, job.model, batch=cfg.batch_size, length=lengths[len(lengths) // 2], train=True))
    meta = {"task": task.name, "labels": task.labels, "max_length": cfg.max_length,
            "eval_batch_size": cfg.eval_batch_size, "precision": cfg.precision, "task_options": task.options,
            "refine_steps": job.refine_steps}
    metric = cfg.dev_metric(task.default_metric)
    evaluate = None
    if dist.is_main:
        predictor = Predictor(job.model, job.tokenizer, task, max_length=cfg.max_length,
                              batch_size=cfg.eval_batch_size, precision=precision, steps=job.refine_steps)
        use_reward = job.reward is not None and metric == "reward"
        evaluate = DevEvaluator(predictor, data["dev"], features["dev"], job.reward if use_reward else None)
    loss = build_objective(objective, ObjectiveContext(task, job.model, cfg, precision, features["train"], job.reward,
                                                       job.teacher, job.tokenizer))
    step_inputs, hook_notes = job.hooks.before_fit(job, run, features["train"], precision, resuming,
                                                   task.step_inputs(cfg, job.tokenizer, precision))
    state = fit(job.model, task, features["train"], evaluate, cfg, run.path, pad_id=job.tokenizer.pad_token_id,
                precision=precision, save_best=lambda: job.model.save_pretrained(run.model_dir, job.tokenizer, meta),
                callbacks=callbacks, objective=loss, resume=resuming, step_inputs=step_inputs, dist=dist,
                threads=job.threads)
    if not dist.is_main:
        return Run(Path(run.path), dist.broadcast(None))
    best = load(run.path)
    scores, rates = {}, {}
    hook_notes, dev_score = job.hooks.after_fit(job, run, best, metric, state.train_seconds, hook_notes)
    if hook_notes is not None:
        job.notes[job.hooks.name] = hook_notes
    if dev_score is not None:  # the task scored dev itself (and may have changed the saved model)
        scores["dev"] = dev_score
        best = load(run.path)
    for split in ("dev", "test"):
        if split in data and split not in scores:
            tick = time.perf_counter()
            scores[split] = best.score(data[split], features[split])
            rates[split] = len(data[split]) / (time.perf_counter() - tick)
    result = _write_results(run, cfg, task, state, scores, rates, precision, metric, started,
                            {**job.notes, "examples": len(data["train"]) + len(job.unlabeled),
                             "precision_choice": probe, "threads": job.threads.report(),
                             **({"processes": dist.world} if dist.active else {})})
    job.hooks.finish(run)
    dist.broadcast(result.results)
    return result


def fit_length(cfg: TrainConfig, encoder: Any, notes: dict[str, Any]) -> TrainConfig:
    """--max-length capped at the encoder's position limit (a longer sequence cannot be embedded); noted."""
    from stepwise.model import position_limit

    limit = position_limit(encoder)
    if limit is None or cfg.max_length <= limit:
        return cfg
    notes["max_length"] = {"asked": cfg.max_length, "used": limit, "why": "the encoder's position limit"}
    return cfg.model_copy(update={"max_length": limit})


def _split_line(ex: Example) -> str:
    import json

    record = {"text": ex.text, "label": ex.label}
    if ex.pair is not None:
        record["text_pair"] = ex.pair
    if ex.doc is not None:
        record["doc"] = ex.doc
    return json.dumps(record) + "\n"


def _write_results(run: RunDir, cfg: TrainConfig, task: Any, state: Any, scores: dict, rates: dict, precision: str,
                   metric: str, started: float, notes: dict[str, Any]) -> Run:
    from stepwise.report import plot_curves, write_reports

    summary: dict[str, Any] = {"train": {
        **state.summary(metric, precision, started), "examples": notes.pop("examples"),
        "precision_choice": notes.pop("precision_choice"),
        "threads": notes.pop("threads")}}
    summary.update(notes)
    for split, rate in rates.items():
        summary.setdefault("inference", {})[f"{split}_examples_per_s"] = round(rate, 2)
    write_reports(run / REPORT_TXT, run / REPORT_JSON, task.name, scores, summary)
    plot_curves(run / METRICS, run / CURVES, metric)
    results = {"task": task.name, **summary,
               **{s: {k: v for k, v in score["metrics"].items() if k != "confusion_matrix"}
                  for s, score in scores.items()}}
    atomic_write_json(run / RESULTS, results)
    return Run(Path(run.path), results)
