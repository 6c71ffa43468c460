"""The train recipe: data → task → model → loop → reports. The CLI and Python users both call this."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepwise.config import TrainConfig, build_config, save_config
from stepwise.data.readers import Example, read_examples
from stepwise.data.split import stratified_split
from stepwise.errors import StepwiseError
from stepwise.files import atomic_write_json, atomic_write_text
from stepwise.infer import resolve_precision
from stepwise.model import TaskModel, load_tokenizer
from stepwise.predictor import Predictor, load
from stepwise.refine.policy import PREV
from stepwise.report import plot_curves, write_reports
from stepwise.rl import ReinforceObjective, get_reward
from stepwise.tasks import get_task, task_class
from stepwise.train.checkpoint import CHECKPOINT
from stepwise.train.loop import Callback, fit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Run:
    """A finished run directory and its headline results (the `--json` object)."""

    path: Path
    results: dict[str, Any]

    def load(self) -> Predictor:
        return load(self.path)

    @classmethod
    def from_dir(cls, path: str | Path) -> Run:
        """A run written earlier, from its directory's results.json."""
        path = Path(path)
        return cls(path, json.loads((path / "results.json").read_text()))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_split(cfg: TrainConfig, path: str) -> list[Example]:
    return read_examples(path, fmt=cfg.format, text_column=cfg.text_column, label_column=cfg.label_column,
                         tag_column=cfg.tag_column, prefer=preferred_format(cfg.task))


def preferred_format(task: str) -> str | None:
    """Tagging data in .txt (or no extension) is CoNLL, as CoNLL-2003 itself is shipped."""
    return "conll" if task == "tag" else None


def _write_split(path: Path, examples: list[Example]) -> None:
    atomic_write_text(path, "".join(json.dumps({"text": ex.text, "label": ex.label}) + "\n" for ex in examples))


def prepare_data(cfg: TrainConfig, run_dir: Path) -> dict[str, list[Example]]:
    """Read train/dev/test; with only --train, split it 7:2:1 (stratified, seeded) and save the split."""
    train = read_split(cfg, cfg.train)
    labels = task_class(cfg.task).collect_labels(train)
    if len(labels) < 2:
        raise StepwiseError(f"need at least 2 classes, found {len(labels)} ({', '.join(labels)})", path=cfg.train,
                            fix="add examples of another class")
    if cfg.dev is None:
        train, dev, test_split = stratified_split(train, cfg.seed)
        for name, part in (("train", train), ("dev", dev), ("test", test_split)):
            _write_split(run_dir / "splits" / f"{name}.jsonl", part)
        data = {"train": train, "dev": dev}
        if cfg.test is None and test_split:
            data["test"] = test_split
    else:
        data = {"train": train, "dev": read_split(cfg, cfg.dev)}
    if cfg.test is not None:
        data["test"] = read_split(cfg, cfg.test)
    if not data["dev"]:
        raise StepwiseError("too few examples to split off a dev set", path=cfg.train,
                            fix="add examples or pass --dev")
    return data


def train(config: TrainConfig | None = None, *, callbacks: tuple[Callback, ...] = (), **options: Any) -> Run:
    """Fine-tune a pretrained encoder for the configured task and write a complete run directory.

    Pass a TrainConfig or keyword options (the same names as the CLI flags), e.g.
    ``stepwise.train(task="classify", train="data.tsv", out="runs/a", epochs=2)``.
    """
    cfg = config if config is not None else build_config(options)
    run_dir = Path(cfg.out)
    if run_dir.exists() and (run_dir / "config.yaml").exists() and not cfg.resume:
        raise StepwiseError("the run directory already holds a run", path=run_dir,
                            fix="pass --resume to continue it, or choose another --out")
    if cfg.resume and not (run_dir / CHECKPOINT).exists():
        raise StepwiseError("nothing to resume (no checkpoint.pt)", path=run_dir,
                            fix="drop --resume to start a new run")
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    started = time.perf_counter()

    data = prepare_data(cfg, run_dir)
    if cfg.init_from:
        model, tokenizer, meta = TaskModel.from_pretrained(_model_dir(cfg.init_from))
        if meta["task"] != cfg.task:
            raise StepwiseError(f"the run is a {meta['task']} run, not {cfg.task}", path=cfg.init_from,
                                fix=f"pass --task {meta['task']}")
        labels = meta["labels"]
        task = get_task(cfg.task, labels, **meta.get("task_options", {}))
    else:
        labels = task_class(cfg.task).collect_labels(data["train"])
        task = get_task(cfg.task, labels, **task_options(cfg, data["train"]))
    repaired = {split: task.prepare(exs) for split, exs in data.items()} if cfg.repair else {}
    for split in ("dev", "test"):
        if split in data:
            task.check_labels(data[split], getattr(cfg, split) or str(run_dir / "splits" / f"{split}.jsonl"))
    if cfg.init_from:
        task.check_labels(data["train"], cfg.train)
    precision = resolve_precision(cfg.precision)
    if not cfg.init_from:
        tokenizer = load_tokenizer(cfg.model)
        extra_inputs = dict(task.extra_inputs)
        if cfg.refine_steps > 1:
            extra_inputs[PREV] = len(labels) + 1  # label id + 1; 0 = "no prediction yet"
        model = TaskModel.from_encoder(cfg.model, len(labels), task.pooling, cfg.dropout, extra_inputs)
    refine_steps = meta.get("refine_steps", 1) if cfg.init_from else cfg.refine_steps
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "labels.json", labels)

    features = {split: task.encode(tokenizer, exs, cfg.max_length) for split, exs in data.items()}
    predictor = Predictor(model, tokenizer, task, max_length=cfg.max_length, batch_size=cfg.eval_batch_size,
                          precision=precision, steps=refine_steps)
    meta = {"task": cfg.task, "labels": labels, "max_length": cfg.max_length,
            "eval_batch_size": cfg.eval_batch_size, "precision": cfg.precision, "task_options": task.options,
            "refine_steps": refine_steps}

    reward = get_reward(cfg.reward) if cfg.reward else None
    objective = None
    if cfg.reward:
        objective = ReinforceObjective(task, model, reward, baseline=cfg.baseline, entropy_coef=cfg.entropy_coef,
                                       kl_coef=cfg.kl_coef, ce_coef=cfg.ce_coef, precision=precision)

    def evaluate_dev() -> dict[str, Any]:
        score = predictor.score(data["dev"], features["dev"])
        if reward is not None and cfg.dev_metric(task.default_metric) == "reward":
            # the dev reward of the greedy prediction, for early stopping in rl
            gold = [ex.label for ex in data["dev"]]
            score["metrics"]["reward"] = sum(map(reward, score["pred"], gold)) / max(len(gold), 1)
        return score["metrics"]

    state = fit(model, task, features["train"], evaluate_dev, cfg, run_dir, pad_id=tokenizer.pad_token_id,
                precision=precision, save_best=lambda: model.save_pretrained(run_dir / "model", tokenizer, meta),
                callbacks=callbacks, objective=objective)

    best = load(run_dir)
    scores, timings = {}, {}
    for split in ("dev", "test"):
        if split in data:
            tick = time.perf_counter()
            scores[split] = best.score(data[split], features[split])
            timings[split] = len(data[split]) / (time.perf_counter() - tick)
    metric = cfg.dev_metric(task.default_metric)
    flops_per_s = state.flops / max(state.train_seconds, 1e-9)
    summary = {"train": {"seconds": round(state.train_seconds, 2), "eval_seconds": round(state.eval_seconds, 2),
                         "wall_seconds": round(time.perf_counter() - started, 2),
                         "examples_per_s": round(state.examples / max(state.train_seconds, 1e-9), 2),
                         "steps": state.step, "best_step": state.best_step, f"best_dev_{metric}": state.best,
                         "stopped_early": state.stopped_early, "precision": precision,
                         "mfu": round(flops_per_s / max(state.peak_flops, 1), 4),
                         "model_gflops_per_s": round(flops_per_s / 1e9, 1),
                         "peak_gflops_per_s": round(state.peak_flops / 1e9, 1),
                         "examples": len(data["train"])}}
    if any(repaired.values()):
        summary["repaired_tags"] = repaired
    for split, rate in timings.items():
        summary.setdefault("inference", {})[f"{split}_examples_per_s"] = round(rate, 2)
    write_reports(run_dir, cfg.task, scores, summary)
    plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png", metric)
    results = {"task": cfg.task, **summary, **{s: _headline(v["metrics"]) for s, v in scores.items()}}
    atomic_write_json(run_dir / "results.json", results)
    return Run(run_dir, results)


def _model_dir(run: str | Path) -> Path:
    path = Path(run)
    if not path.exists():
        raise StepwiseError("run directory not found", path=run, fix="pass a run directory written by stepwise")
    return path / "model" if (path / "model").is_dir() else path


def task_options(cfg: TrainConfig, train_examples: list[Example]) -> dict[str, Any]:
    """Options a task needs from the config and the training data (saved with the model)."""
    if cfg.task != "tag":
        return {}
    from stepwise.data.conll import detect_scheme

    scheme = detect_scheme([ex.label for ex in train_examples if ex.label])
    return {"scheme": scheme, "casing": True if cfg.casing is None else cfg.casing, "strict": cfg.strict}


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flat numbers plus per-label detail, without the confusion matrix (that is in report.json)."""
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def evaluate(run: str | Path, data: str | Path, *, steps: int | None = None, confidence: float | None = None,
             time_budget_ms: float | None = None, keep: str = "last", **read_options: Any) -> dict[str, Any]:
    """Score a run on a labeled file, step by step: metrics, report, and per-step quality/changes/latency."""
    predictor = load(run)
    examples = read_examples(data, prefer=preferred_format(predictor.task.name), **read_options)
    task = predictor.task
    task.check_labels(examples, str(data))
    task.prepare(examples)
    result = predictor.refine(examples, steps=steps, confidence=confidence, time_budget_ms=time_budget_ms,
                              keep=keep)
    gold = [ex.label for ex in examples]
    metric = task.default_metric
    per_step = []
    for stat in result.stats:
        scores = task.metrics(gold, [task.ids_to_labels(p) for p in result.at_step(stat.step)])
        per_step.append({"step": stat.step, metric: scores[metric], "changed": round(stat.changed, 4),
                         "active": stat.active, "seconds": round(stat.seconds, 4),
                         "ms_per_example": round(1000 * stat.seconds / max(len(examples), 1), 3)})
    pred = [task.ids_to_labels(p) for p in result.predictions]
    return {"metrics": task.metrics(gold, pred), "report": task.report_text(gold, pred), "steps": per_step,
            "mean_steps": result.mean_steps, "result": result, "examples": examples, "pred": pred}


# Policy-gradient fine-tuning starts from a trained policy: small steps, no warmup, one pass.
RL_DEFAULTS = {"lr": 1e-5, "epochs": 1.0, "warmup_ratio": 0.0, "reward": None}


def rl(run: str | Path, *, callbacks: tuple[Callback, ...] = (), **options: Any) -> Run:
    """Optimize a trained run's policy for a reward with REINFORCE; writes a new run directory."""
    meta_path = _model_dir(run) / "stepwise.json"
    if not meta_path.is_file():
        raise StepwiseError("not a stepwise run (no model/stepwise.json)", path=run,
                            fix="pass a run directory written by `stepwise train`")
    meta = json.loads(meta_path.read_text())
    values = {**{k: v for k, v in RL_DEFAULTS.items() if v is not None}, "task": meta["task"],
              "reward": "entity_f1" if meta["task"] == "tag" else "accuracy", **options, "init_from": str(run)}
    return train(build_config(values), callbacks=callbacks)
