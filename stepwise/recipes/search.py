"""Recipe: hyperparameter search on Optuna, each trial a normal `stepwise train` run directory.

    validate (options, data, space) once                          nothing written yet
    → open or continue the study in DIR/study.db
    → until --trials trials are complete or pruned (counting every process sharing the study), or --timeout:
        fail trials whose process died → retry them once;  draw parameters (TPE);
        train DIR/trials/NNNN, reporting each dev evaluation → pruned trials stop early
        → trials.csv, trials.md, search.png, best.yaml
    → score the best trial on --test (once)

    DIR/
      study.db     the Optuna study (SQLite): rerun the same command to continue it
      trials/0000  one run directory per trial (`stepwise show`, `evaluate`, `export` work on it)
      trials.csv  trials.md  search.png  best.yaml (`stepwise train --config best.yaml` retrains the best)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field

from stepwise.config import build_config
from stepwise.errors import StepwiseError
from stepwise.options import Options
from stepwise.search.report import trial_dir, write_outputs
from stepwise.search.space import Param, default_space, load_space, space_spec

__all__ = ["search"]

PATH_OPTIONS = ("train", "dev", "test", "model", "init_from")
NOT_COMPARED = ("quiet", "threads", "eval_batch_size")  # may differ between the processes of one study


class SearchOptions(Options):
    """How a search runs (its own options; the training options it fixes are TrainConfig's)."""

    fix: ClassVar[str] = "see `stepwise search --help`"

    trials: int = Field(..., ge=1, json_schema_extra={"metavar": "N"},
                        description="finished (complete or pruned) trials the study should hold, counting earlier runs")
    timeout: Optional[float] = Field(None, gt=0, json_schema_extra={"metavar": "S"},
                                     description="start no new trial after S seconds")
    space: Optional[str] = Field(None, json_schema_extra={"metavar": "FILE"}, description="YAML search space, e.g. "
                                 "lr: {low: 1.0e-5, high: 1.0e-3, log: true}; batch_size: {choices: [16, 32]} "
                                 "(default: the README's default space, less the options fixed by flags)")
    pruner: Literal["median", "halving"] = Field("median", description="median: stop a trial below the median of "
                                                 "earlier trials at the same evaluation; halving: asynchronous "
                                                 "successive halving (default: median)")
    startup_trials: int = Field(2, ge=0, json_schema_extra={"metavar": "K"}, description="median pruner: trials "
                                "that finish before any is pruned (default: 2)")
    evals_per_epoch: int = Field(2, ge=1, json_schema_extra={"metavar": "E"}, description="dev evaluations per "
                                 "epoch in every trial: the points where trials are compared and pruned (default: 2)")
    storage: Optional[str] = Field(None, json_schema_extra={"metavar": "URL"}, description="Optuna storage shared "
                                   "by several machines, an SQLAlchemy URL such as postgresql://host/db (default: "
                                   "sqlite OUT/study.db)")


def search(*, trials: int, out: str, timeout: float | None = None, space: str | Path | None = None,
           pruner: str = "median", startup_trials: int = 2, evals_per_epoch: int = 2, storage: str | None = None,
           echo: Callable[[str], None] | None = None, **options: Any) -> dict[str, Any]:
    """Search the training options of `space` (default: the documented default space) for the best dev metric.

    `options` are the fixed training options (the `stepwise train` keywords: train, dev, test, task, model,
    max_length, ...), the same in every trial; a search needs --dev so every trial is judged on the same
    examples. Rerunning with the same arguments continues the study; `trials` counts every finished trial.
    """
    _check_arguments(trials, timeout, pruner, startup_trials, evals_per_epoch, out, options)
    base = {k: v for k, v in options.items() if v is not None}
    job = _prepare(base, out)
    task, n_train = job.config.task, len(job.data["train"])
    base["task"] = task
    metric = job.config.dev_metric(job.task.default_metric)
    fixed = {k: v for k, v in options.items() if v is not None}
    params = load_space(space, fixed) if space is not None else default_space(task, fixed)
    if not params:
        raise StepwiseError("nothing left to search: every option of the default space is fixed",
                            fix="drop a fixed flag, or give --space")

    from stepwise.search import study as studies

    with studies.quiet_optuna():
        created = not Path(out).exists()
        study = studies.open_study(out, storage=storage, pruner=pruner, startup_trials=startup_trials)
        _check_same_search(study, base, params, out)
        objective = _Objective(study, base, params, out, metric, n_train, evals_per_epoch, trials)
        started = time.monotonic()
        while True:
            studies.recover(study)
            count = studies.counts(study)
            if count.get("COMPLETE", 0) + count.get("PRUNED", 0) + count.get("RUNNING", 0) >= trials:
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                break
            objective.number = None
            try:
                study.optimize(objective, n_trials=1)
            except KeyboardInterrupt:
                if objective.number is not None:
                    studies.retry(study, objective.number)  # interrupted, not bad: the next start reruns it
                write_outputs(out, study.get_trials(), metric, base)
                raise
            except StepwiseError as err:  # a trial's options are bad: name the space line, keep nothing that blocks
                raise _trial_error(err, study, params, space, out, created, objective.number) from None
            best = write_outputs(out, study.get_trials(), metric, base)
            if echo is not None and objective.number is not None:
                echo(_trial_line(study, objective.number, metric, best))
        all_trials = study.get_trials()
        best = write_outputs(out, all_trials, metric, base)
        test = _score_test(best, base) if best is not None and base.get("test") and not base.get("test_target") \
            else None
        if test:
            write_outputs(out, all_trials, metric, base, test)
        count = studies.counts(study)
    summary: dict[str, Any] = {"out": str(out), "task": task, "metric": metric, "trials": count,
                               "seconds": round(time.monotonic() - started, 1)}
    if best is not None:
        summary["best"] = {"trial": best.number, "params": best.params, f"dev_{metric}": best.value,
                           "run": best.user_attrs["run"], "steps": best.user_attrs.get("steps"),
                           "best_yaml": str(Path(out) / "best.yaml")}
        if test:
            summary["best"]["test"] = test
    return summary


class _Objective:
    """One trial: draw the parameters, train DIR/trials/NNNN with the pruning callback, return the best dev metric."""

    def __init__(self, study: Any, base: dict[str, Any], params: list[Param], out: str, metric: str, n_train: int,
                 evals_per_epoch: int, trials: int) -> None:
        self.study, self.base, self.params, self.out, self.metric = study, base, params, out, metric
        self.n_train, self.evals_per_epoch = n_train, evals_per_epoch
        self.startup = max(2, min(10, trials // 3))  # TPE's random start: a third of a small budget
        self.number: int | None = None

    def __call__(self, trial: Any) -> float:
        import optuna

        from stepwise.recipes.finetune import train
        from stepwise.search.study import PruningCallback, make_sampler, mark_owner

        self.number = trial.number
        self.study.sampler = make_sampler(int(self.base.get("seed", 0)) * 100_003 + trial.number, self.startup)
        mark_owner(trial)
        values = {**self.base, **{p.name: p.suggest(trial) for p in self.params}}
        run_dir = trial_dir(self.out, trial.number)
        trial.set_user_attr("run", str(run_dir.resolve()))
        values.update(out=str(run_dir), test=None, test_target=None, overwrite=True, resume=False, quiet=True)
        values.setdefault("eval_every", self._eval_every(values))
        callback = PruningCallback(trial, self.metric)
        tick = time.perf_counter()
        run = train(build_config(values, source="search trial"), callbacks=(callback,))
        trial.set_user_attr("seconds", round(time.perf_counter() - tick, 1))
        trial.set_user_attr("steps", run.results["train"]["steps"])
        dev = run.results["train"][f"best_dev_{self.metric}"]
        trial.set_user_attr("dev", dev)
        if callback.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {callback.pruned_at}")
        return dev

    def _eval_every(self, values: dict[str, Any]) -> int:
        """Optimizer steps between evaluations so that every trial is scored `evals_per_epoch` times an epoch."""
        examples = self.n_train * (2 if values.get("augment") else 1)  # --augment adds a noisy copy of each
        steps = math.ceil(math.ceil(examples / int(values.get("batch_size", 32))) / int(values.get("grad_accum", 1)))
        return max(1, round(steps / self.evals_per_epoch))


def _trial_error(err: StepwiseError, study: Any, params: list[Param], space: str | Path | None, out: str,
                 created: bool, number: int | None) -> StepwiseError:
    """A user error raised inside a trial, said in terms of the search: the searched option that caused it
    (the space file and its line), and — when no trial of the study has finished or is running — the study
    removed, so that the corrected command starts afresh instead of being refused as a different search."""
    import shutil

    import optuna

    from stepwise.search.space import _key_lines
    from stepwise.search.study import STUDY_NAME

    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    drawn = trial.params if trial is not None else {}
    culprit = next((p for p in params if f"--{p.name.replace('_', '-')}" in err.problem or p.name in err.problem),
                   None)
    where: dict[str, Any] = {"path": err.path, "line": err.line}
    if culprit is not None:
        where = {"path": space, "line": _key_lines(space).get(culprit.name)} if space is not None else \
            {"path": None, "line": None}
    value = f" with {culprit.name} = {drawn[culprit.name]!r}" if culprit is not None and culprit.name in drawn else ""
    kept = [t for t in study.get_trials(deepcopy=False) if t.state.name != "FAIL"]
    if not kept:  # nothing of value in the study: remove it (and what this command created)
        optuna.delete_study(study_name=STUDY_NAME, storage=study._storage)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        elif number is not None:
            shutil.rmtree(trial_dir(out, number), ignore_errors=True)
        after = "nothing of this search was kept: correct it and run the same command again"
    else:
        after = "the finished trials are kept; a corrected space is a new search: use a new --out"
    what = f"in the space file, searched option {culprit.name!r}" if culprit is not None and space is not None \
        else f"searched option {culprit.name!r} of the default space" if culprit is not None else "a trial's options"
    if culprit is not None and space is not None:
        fix = f"remove {culprit.name!r} from the space file or narrow its values; "
    elif culprit is not None:
        fix = f"give {culprit.name} as a flag (--{culprit.name.replace('_', '-')}): that takes it out of the search; "
    else:
        fix = f"{err.fix}; " if err.fix else ""
    return StepwiseError(f"trial {number}{value} failed: {err.problem} ({what})", fix=f"{fix}{after}", **where)


def _check_arguments(trials: int, timeout: float | None, pruner: str, startup_trials: int, evals_per_epoch: int,
                     out: str, options: dict[str, Any]) -> None:
    SearchOptions(trials=trials, timeout=timeout, pruner=pruner,
                  startup_trials=startup_trials, evals_per_epoch=evals_per_epoch)  # the CLI's checks, in its words
    from stepwise.training.distributed import from_environment

    if from_environment().active:
        raise StepwiseError("`stepwise search` does not run under torchrun", fix="start the same search command "
                            "once per process or machine instead: the trials share the study")
    if Path(out).exists() and not Path(out).is_dir():
        raise StepwiseError("--out is a file, not a directory", path=out, fix="give --out a directory for the search")
    from stepwise.places import SEARCH, check_output

    check_output(out, "--out", SEARCH)
    if not options.get("dev"):
        raise StepwiseError("--dev is required: every trial is judged on the same dev file",
                            fix="pass --dev (e.g. a held-out slice of your training data)")
    for flag in ("resume", "overwrite", "init_from"):
        if options.get(flag):
            raise StepwiseError(f"--{flag.replace('_', '-')} does not apply to a search",
                                fix="rerun the same command to continue a search; use a new --out to start over")


def _prepare(base: dict[str, Any], out: str) -> Any:
    """Every check `stepwise train` makes on the data and options, once, before the study is touched."""
    from stepwise.recipes.finetune import prepare

    cfg = build_config({**base, "out": str(trial_dir(out, 0)), "augment": 0.0}, source="command line")
    return prepare(cfg, "supervised")


def _signature(base: dict[str, Any], params: list[Param]) -> dict[str, Any]:
    fixed = {k: (str(Path(v).resolve()) if k in PATH_OPTIONS and isinstance(v, str) else v)
             for k, v in sorted(base.items()) if k not in NOT_COMPARED}
    return {"fixed": fixed, "space": space_spec(params)}


def _check_same_search(study: Any, base: dict[str, Any], params: list[Param], out: str) -> None:
    """A rerun continues the study only with the same fixed options and space; anything else is a new search."""
    import json

    signature = json.loads(json.dumps(_signature(base, params), default=str))
    saved = study.user_attrs.get("search")
    if saved is None:
        study.set_user_attr("search", signature)
        return
    for part in ("fixed", "space"):
        old, new = saved[part], signature[part]
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                what = f"--{key.replace('_', '-')}" if part == "fixed" else f"the searched option {key!r}"
                raise StepwiseError(f"this study was started with {what} = {old.get(key)!r}, now "
                                    f"{new.get(key)!r}", path=out,
                                    fix="rerun with the study's options to continue it, or use a new --out")


def _trial_line(study: Any, number: int, metric: str, best: Any) -> str:
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    dev = trial.user_attrs.get("dev")
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(trial.params.items()))
    score = "" if dev is None else f" dev {metric} {dev:.4f},"
    lead = f" (best: trial {best.number}, {best.value:.4f})" if best is not None else ""
    return (f"trial {number:04d} {trial.state.name.lower()}:{score} {trial.user_attrs.get('steps', '?')} steps, "
            f"{trial.user_attrs.get('seconds', '?')} s — {params}{lead}")


def _score_test(best: Any, base: dict[str, Any]) -> dict[str, float]:
    """The best trial's scores on --test: the only time the search looks at it."""
    from stepwise.recipes.evaluate import evaluate

    read = {"fmt": base.get("input_format"), "text_column": base.get("text_column"),
            "label_column": base.get("label_column"), "tag_column": base.get("tag_column"),
            "pair_column": base.get("pair_column")}
    from stepwise.tasks import task_class

    metrics = evaluate(best.user_attrs["run"], base["test"], **read)["metrics"]
    return {k: round(float(metrics[k]), 6) for k in task_class(base["task"]).metric_names if k in metrics}
