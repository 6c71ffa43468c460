"""Recipe: distill a trained run into a shallower student that starts from some of its layers; writes a new run.

The fine-tune recipe started from the teacher run (its task, labels, head and tokenizer), with the loaded
model cut to `layers` encoder layers and trained with the "distill" objective against the frozen teacher.
The student is a standard encoder with a smaller `num_hidden_layers`, saved as a normal run.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from stepwise.config import build_config
from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.recipes.finetune import Prepared, run_recipe
from stepwise.rundir import Run, RunDir


def distill(teacher_run: str, *, layers: int, temperature: float = 2.0, alpha: float = 0.9,
            unlabeled: str | None = None, callbacks: tuple = (), **options: Any) -> Run:
    """Train a `layers`-layer student of `teacher_run` on alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE.

    The student keeps the teacher's embeddings, head, extra inputs and the layers `spread_layers` picks:
    evenly spread and always including the top one (3 of 6 → 1, 3, 5; 0-based), because the head was
    trained on the top layer's output and each kept layer is the last of the block it stands for.
    `unlabeled`: a file of texts without labels (one per line, or any input `predict` reads) added to the
    training set with the teacher's soft targets as their only target — more of the teacher's knowledge for
    the same gold labels (Hinton et al.'s transfer set; TinyBERT's augmented data).
    `options` are training options (train, dev, test, out, epochs, lr, ...), with the usual defaults.
    alpha 0.9 (mostly soft targets): on SST-2, 6 → 3 layers, 2 epochs, test accuracy 0.8737 against 0.8600
    at alpha 0.5 (T 2) and 0.8600 at T 4 (bench/NOTES.md).
    """
    from stepwise.numbers import check_finite

    check_finite({"temperature": temperature, "alpha": alpha})
    teacher = RunDir.open(teacher_run)
    depth = encoder_config(teacher, "num_hidden_layers")
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= depth:
        raise StepwiseError(f"--layers must be a whole number from 1 to {depth}, the teacher's layers (got {layers!r})",
                            path=teacher_run, fix=f"pass --layers {max(depth // 2, 1)}, say")
    if not temperature > 0:
        raise StepwiseError(f"--temperature must be greater than 0 (got {temperature!r})", fix="e.g. --temperature 2")
    if not 0 <= alpha <= 1:
        raise StepwiseError(f"--alpha must be from 0 to 1 (got {alpha!r})",
                            fix="alpha weighs the teacher's soft targets, 1 - alpha the gold labels; e.g. --alpha 0.5")
    values = {"task": teacher.meta()["task"], **options, "init_from": str(teacher_run)}
    cfg = build_config(values)
    extra = read_unlabeled(teacher, unlabeled) if unlabeled is not None else []

    def to_student(job: Prepared) -> None:
        from stepwise.deploy.surgery import keep_layers, spread_layers
        from stepwise.training.objectives import Teacher

        kept = spread_layers(layers, depth)
        student = copy.deepcopy(job.model)
        student.encoder = keep_layers(job.model.encoder, kept)
        job.teacher = Teacher(job.model, temperature, alpha)
        job.model = student
        job.unlabeled = extra
        job.notes["distill"] = {"teacher": str(teacher_run), "teacher_layers": depth, "layers_kept": kept,
                                "temperature": temperature, "alpha": alpha,
                                **({"unlabeled": str(unlabeled), "unlabeled_examples": len(extra)} if extra else {})}

    return run_recipe(cfg, objective="distill", callbacks=callbacks, transform=to_student)


def read_unlabeled(teacher: RunDir, path: str) -> list[Example]:
    """The non-blank texts of `path` for the teacher's task: .txt is one text per line (a tagger's words split
    on spaces), other extensions are read as `predict` reads them. A refiner teacher is refused (its
    previous-step input is built from gold labels, which unlabeled text has not)."""
    from stepwise.predictor import _has_text
    from stepwise.recipes.predict import read_inputs
    from stepwise.tasks import task_class, task_from_meta

    meta = teacher.meta()
    task = task_from_meta(meta)
    if meta.get("refine_steps", 1) > 1 or task.multi_step(task.extra_inputs):  # e.g. a tagger's document input
        raise StepwiseError("--unlabeled needs a single-step teacher: this run refines in several steps",
                            path=teacher.path, fix="distill it without --unlabeled, or use a single-step run")
    plain = Path(path).suffix.lower() in ("", ".txt")  # one text (a tagger: one sentence) per line
    examples = [ex for ex in read_inputs(task_class(meta["task"]), path, fmt="tsv" if plain else None)
                if _has_text(ex)]
    if not examples:
        raise StepwiseError("the unlabeled file has no text", path=path, fix="give one text per line")
    return examples


def encoder_config(run: RunDir, key: str) -> int:
    """A size from the run's saved encoder config (config.json), read without loading the model."""
    path = run.model_dir / "config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise StepwiseError("the run's model config is missing or damaged", path=path,
                            fix="retrain the run, or restore the run directory from a copy") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise StepwiseError(f"the run's encoder config has no {key}", path=path,
                            fix="pass a run trained from a BERT-style encoder")
    return value
