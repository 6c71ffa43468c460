"""Recipe parts for a tagger with document context (`--doc-context head` or `model`).

head (`fit_head`): after training, the best model's step-1 probabilities on dev → the document head
(stepwise.tasks.tag.doc_head), C by cross-validation over dev documents → kept only if its cross-validated dev
metric beats step 1's; its weights go into the model's metadata, and dev is reported cross-validated.

model (`out_of_fold`, `finish`): out-of-fold step-1 predictions on the training data:

    training documents → K = 2 folds (whole documents, seeded)
    → per fold: a step-1 tagger (no document input, the run's epochs and settings) trained on the other
      folds in RUN/folds/foldK (its own checkpoint: an interrupted fold resumes with --resume)
    → it predicts its fold: step-1 tags for every training sentence from a model that never saw its labels
      (RUN/folds/foldK/oof.json, written atomically; the fold's model is then deleted)
    → per word, the context id of its document (stepwise.tasks.tag.document) → each training feature's
      `_doc_ids`, which `DocContextTraining` feeds to half of the final model's batches

The final model thus learns step 2 on contexts as noisy as a real step 1 makes them, instead of on gold
tags it would never see at prediction time. `finish` removes RUN/folds once the run's results are written.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.files import atomic_write_json
from stepwise.layout import FOLDS
from stepwise.rundir import RunDir
from stepwise.tasks.hooks import TrainingHooks

K = 2
OOF = "oof.json"


class DocContextHooks(TrainingHooks):
    """`--doc-context head` or `model` in the fine-tuning recipe (stepwise.tasks.hooks)."""

    name = "doc_context"

    def __init__(self, method: str) -> None:
        self.method = method

    def check(self, config: Any, data: dict[str, list[Example]], sources: dict[str, str], *, distributed: bool) -> None:
        if self.method == "model" and distributed:
            raise StepwiseError("--doc-context trains its fold models one after another: not under torchrun",
                                fix="run it as one process (drop torchrun), or drop --doc-context")
        check(config, data, sources)

    def refine_steps(self, steps: int) -> int:
        return 2 if self.method == "model" else steps  # step 1 without the document, step 2 with its step-1 tags

    def before_fit(self, job: Any, run: RunDir, train_features: list[dict], precision: str, resuming: bool,
                   step_inputs: Any) -> tuple[Any, dict[str, Any] | None]:
        if self.method != "model":
            return step_inputs, None
        from stepwise.tasks.tag.document import DocContextTraining

        # out-of-fold step-1 tags → each training sentence's document context
        return DocContextTraining(job.config.seed), out_of_fold(job, run, train_features, precision, resuming)

    def after_fit(self, job: Any, run: RunDir, best: Any, metric: str, train_seconds: float,
                  notes: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if self.method == "head":  # step 2 fitted on dev: dev is scored by its cross-validated predictions
            return fit_head(job, run, best, metric)
        if notes is not None:  # the benchmark compares at equal total training time
            notes["final_train_seconds"] = round(train_seconds, 2)
            notes["total_train_seconds"] = round(train_seconds + notes["fold_train_seconds"], 2)
        return notes, None

    def finish(self, run: RunDir) -> None:
        if self.method == "model":
            finish(run)


def check(cfg: Any, data: dict[str, list[Example]], sources: dict[str, str]) -> None:
    """Refuse what --doc-context cannot do, before anything is written."""
    if cfg.doc_context == "head":
        from stepwise.tasks.tag.doc_head import MIN_DOCUMENTS

        if cfg.refine_steps > 1:
            raise StepwiseError("--doc-context and --refine-steps > 1 cannot be combined", fix="drop one of them")
        docs = {ex.doc for ex in data["dev"] if ex.doc is not None}
        if len(docs) < MIN_DOCUMENTS:
            found = "no -DOCSTART- lines" if not docs else "a single document"
            raise StepwiseError(f"--doc-context head is fitted on the dev split's documents: dev has {found}",
                                path=sources.get("dev", sources["train"]),
                                fix="give --dev a CoNLL file whose documents start with -DOCSTART- lines, "
                                "or drop --doc-context")
        return
    train, source = data["train"], sources["train"]
    if cfg.init_from:
        raise StepwiseError("--doc-context trains its fold models from a pretrained encoder, not from a run",
                            fix="drop --doc-context (the run keeps its own document input), or --init-from")
    if cfg.refine_steps > 1:
        raise StepwiseError("--doc-context and --refine-steps > 1 cannot be combined",
                            fix="drop one of them")
    if getattr(cfg, "augment", 0):  # a noisy copy has no document: folds would train on copies of what they tag
        raise StepwiseError("--doc-context and --augment cannot be combined", fix="drop one of them")
    docs = {ex.doc for ex in train if ex.doc is not None}
    if len(docs) < K:
        found = "no -DOCSTART- lines" if not docs else "a single document"
        raise StepwiseError(f"--doc-context needs documents to learn from: the training data has {found}",
                            path=source, fix="give a CoNLL file whose documents start with -DOCSTART- lines, "
                            "or drop --doc-context")


def fit_head(job: Any, run: RunDir, best: Any, metric: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit step 2 on dev (see the module doc); returns the notes for results.json and dev's score."""
    import numpy as np

    from stepwise.modeldir import update_meta
    from stepwise.predictor import score_probabilities
    from stepwise.tasks.tag import doc_head
    from stepwise.tasks.tag.words import words_of

    task, dev, seed = job.task, job.data["dev"], job.config.seed
    started = time.perf_counter()
    step1 = best.refine(dev, steps=1).outputs  # a resumed run's model may already carry a head
    words, docs = [words_of(ex) for ex in dev], [ex.doc for ex in dev]
    x = doc_head.features(words, docs, step1)
    y = np.array([task.label_to_id[t] for ex in dev for t in ex.label], dtype=np.int64)
    groups = np.array([f"d{ex.doc}" if ex.doc is not None else f"s{i}" for i, ex in enumerate(dev) for _ in ex.label])
    gold = task.gold(dev)
    sizes = np.cumsum([len(w) for w in words])[:-1]

    def score(rows: np.ndarray) -> float:
        return task.metrics(gold, [task.to_labels(p) for p in np.split(rows, sizes)])[metric]

    head, held, scores = doc_head.fit(x, y, groups, len(task.labels), score, seed)
    before = task.metrics(gold, [task.to_labels(p) for p in step1])[metric]
    kept = scores[head.C] > before
    options = {**task.options, "doc_head": head.to_dict()} if kept else task.options
    update_meta(run.model_dir, task_options=options, refine_steps=2 if kept else 1)
    dev_score = score_probabilities(task, dev, np.split(held, sizes) if kept else step1)
    notes = {"method": "head", "kept": kept, "C": head.C, "dev_documents": len({g for g in groups if g[0] == "d"}),
             f"step1_dev_{metric}": round(before, 6),
             f"cross_validated_dev_{metric}": {str(c): round(v, 6) for c, v in scores.items()},
             "fit_seconds": round(time.perf_counter() - started, 2)}
    return notes, dev_score


def out_of_fold(job: Any, run: RunDir, train_features: list[dict], precision: str, resuming: bool) -> dict[str, Any]:
    """Store each training feature's out-of-fold context under TRAIN_KEY; returns the notes for results.json."""
    from stepwise.tasks.tag.document import ALONE, ALWAYS_O, FIRST_TYPE, NONE, TRAIN_KEY, document_folds

    cfg, task, train = job.config, job.task, job.data["train"]
    folds = document_folds(train, K, cfg.seed)
    predictions: list[Any] = [None] * len(train)
    done = []
    for k in range(K):
        held = [i for i, f in enumerate(folds) if f == k]
        record = _fold(job, run, k, [i for i, f in enumerate(folds) if f != k], held, precision, resuming)
        if record["examples"] != held:
            raise StepwiseError("the saved fold predictions do not match the training data", path=run.fold_dir(k),
                                fix="pass --overwrite to start the run over")
        for i, ids in zip(held, record["predictions"]):
            predictions[i] = ids
        done.append(record)
    context = task.doc_context_ids(train, predictions)
    for feature in train_features:
        feature[TRAIN_KEY] = task.doc_ids(feature, context[feature["_example"]])
    names = {NONE: "none", ALONE: "alone", ALWAYS_O: "always_O",
             **{FIRST_TYPE + k: kind for k, kind in enumerate(task.entity_types)}}
    share = Counter(names[c] for ids in context for c in ids)
    total = max(sum(share.values()), 1)
    gold = task.gold(train)
    oof = task.metrics(gold, [task.ids_to_labels(p) for p in predictions])
    return {"folds": K, "fold_train_seconds": round(sum(r["train_seconds"] for r in done), 2),
            "fold_wall_seconds": round(sum(r["wall_seconds"] for r in done), 2),
            "fold_steps": [r["steps"] for r in done], "fold_best_dev": [r["best_dev"] for r in done],
            f"out_of_fold_train_{task.default_metric}": round(oof[task.default_metric], 6),
            "context_share": {k: round(v / total, 4) for k, v in sorted(share.items())}}


def _fold(job: Any, run: RunDir, k: int, train_idx: list[int], held: list[int], precision: str,
          resuming: bool) -> dict[str, Any]:
    """Train fold k's step-1 tagger (or resume it) and predict its held-out examples; cached in oof.json."""
    from stepwise.model import TaskModel
    from stepwise.predictor import Predictor, load
    from stepwise.tasks import get_task
    from stepwise.training.evaluator import DevEvaluator
    from stepwise.training.loop import fit

    directory = RunDir(run.fold_dir(k))
    cached = directory / OOF
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    if not resuming and directory.path.exists():
        shutil.rmtree(directory.path)
    directory.path.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cfg, data, tokenizer = job.config, job.data, job.tokenizer
    task = get_task(job.task.name, job.task.labels, **{**job.task.options, "doc_context": False})
    model = TaskModel.from_encoder(cfg.model, len(task.labels), task.pooling, cfg.dropout, task.extra_inputs)
    features = task.encode(tokenizer, [data["train"][i] for i in train_idx], cfg.max_length)
    dev = task.encode(tokenizer, data["dev"], cfg.max_length)
    predictor = Predictor(model, tokenizer, task, max_length=cfg.max_length, batch_size=cfg.eval_batch_size,
                          precision=precision, steps=1)
    meta = {"task": task.name, "labels": task.labels, "max_length": cfg.max_length,
            "eval_batch_size": cfg.eval_batch_size, "precision": cfg.precision, "task_options": task.options,
            "refine_steps": 1}
    fold_cfg = cfg.model_copy(update={"doc_context": False, "epochs": cfg.doc_fold_epochs or cfg.epochs,
                                      "max_steps": None if cfg.doc_fold_epochs else cfg.max_steps})
    state = fit(model, task, features, DevEvaluator(predictor, data["dev"], dev, None), fold_cfg, directory.path,
                pad_id=tokenizer.pad_token_id, precision=precision, resume=resuming, threads=job.threads,
                save_best=lambda: model.save_pretrained(directory.model_dir, tokenizer, meta))
    best = load(directory.path)  # the fold's best checkpoint, not its last weights
    probs = best.probabilities([data["train"][i] for i in held])
    record = {"fold": k, "examples": held, "predictions": [best.task.prediction_ids(p).tolist() for p in probs],
              "train_seconds": round(state.train_seconds, 2), "steps": state.step, "best_dev": state.best,
              "wall_seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(cached, record)
    shutil.rmtree(directory.model_dir, ignore_errors=True)  # the fold's checkpoint (state only) stays: resumable
    return record


def finish(run: RunDir) -> None:
    """The run is finished: the fold models and predictions have served their purpose."""
    shutil.rmtree(run / FOLDS, ignore_errors=True)
