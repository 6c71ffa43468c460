"""The Optuna side of a search: the study in DIR/study.db, sampler, pruner, the pruning callback and the
recovery of trials whose process died.

Storage: Optuna's RDB storage on SQLite (one file, DIR/study.db, readable with sqlite3 or
optuna-dashboard). Several processes on one machine share it (SQLite locks the file for each write;
a trial writes a handful of rows per evaluation, so a 60 s lock timeout is never close). Processes on
other machines share a study through `--storage URL` (a database server; SQLite over a network file
system is not safe).

Interrupted trials: Ctrl-C or SIGTERM marks the trial FAIL at once; SIGKILL or a crash leaves it
RUNNING, and the next search start on the same machine fails it when its process is gone (other
machines: when its heartbeat is 10 minutes old). Either way the trial is retried once, with the same
parameters, as a new trial in a new run directory; its partial run directory stays, listed as FAIL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STUDY_NAME = "stepwise"
STUDY_DB = "study.db"
HEARTBEAT_S, GRACE_S = 60, 600
PRUNERS = ("median", "halving")


@contextlib.contextmanager
def quiet_optuna() -> Iterator[Any]:
    """Optuna imported with its logging at ERROR and its experimental warnings off; both put back after."""
    try:
        import optuna
    except ImportError:
        from stepwise.errors import StepwiseError

        raise StepwiseError("`stepwise search` needs optuna, which is not installed",
                            fix="pip install 'stepwise[search]'") from None

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trial lines (and failed-trial tracebacks) are ours
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield optuna
    finally:
        optuna.logging.set_verbosity(previous)


def storage_url(out: str | Path, storage: str | None = None) -> str:
    return storage or f"sqlite:///{(Path(out) / STUDY_DB).resolve()}"


def open_study(out: str | Path, *, storage: str | None, pruner: str, startup_trials: int) -> Any:
    """Create the study, or load it when DIR (or the storage) already holds one: a rerun continues it."""
    import optuna

    from stepwise.errors import StepwiseError

    Path(out).mkdir(parents=True, exist_ok=True)
    url = storage_url(out, storage)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with _file_lock(Path(out) / ".study.lock"):  # two processes starting together create the tables once
            rdb = optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
            return optuna.create_study(study_name=STUDY_NAME, storage=rdb, direction="maximize",
                                       pruner=make_pruner(pruner, startup_trials), load_if_exists=True)
    except (ImportError, ValueError) as err:  # a driver that is not installed, a malformed URL
        raise StepwiseError(f"cannot open the study storage: {err}", path=None if storage else out,
                            fix="check --storage (an SQLAlchemy URL such as postgresql://host/db)") from None
    except Exception as err:
        if type(err).__module__.startswith("sqlalchemy"):
            raise StepwiseError(f"cannot open the study storage: {str(err).splitlines()[0]}",
                                path=None if storage else Path(out) / STUDY_DB,
                                fix="check --storage, or that the file is an Optuna study") from None
        raise


def make_sampler(seed: int, startup_trials: int) -> Any:
    """TPE, seeded per trial (seed + trial number): the same command gives the same parameters, and two
    processes sharing a study never draw the same random start. constant_liar keeps concurrent trials apart."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, constant_liar=True)


def make_pruner(name: str, startup_trials: int) -> Any:
    """median (default): stop a trial whose dev metric at an evaluation is below the median of earlier trials
    at the same evaluation, once `startup_trials` trials finished. halving: asynchronous successive halving
    (rungs at evaluations 1, 3, 9, ...; only the top third go on) — more aggressive, for many short trials."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


class PruningCallback:
    """A `train()` callback: reports each new dev evaluation to the trial; True (stop) when it should be pruned.

    The report step is the evaluation's ordinal (1, 2, ...): a search evaluates every trial the same number
    of times per epoch, so step k means the same amount of training (k/evals-per-epoch epochs) in every trial,
    whatever its batch size.
    """

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric, self.seen, self.pruned_at = trial, metric, 0, None

    def __call__(self, state: Any) -> bool:
        if len(state.history) <= self.seen:
            return False
        for record in state.history[self.seen:]:
            self.seen += 1
            self.trial.report(float(record["dev"][self.metric]), self.seen)
        if self.trial.should_prune():
            self.pruned_at = state.step
            return True
        return False


def mark_owner(trial: Any) -> None:
    """Which process runs the trial: a later start on this machine fails it if that process is gone."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())


def recover(study: Any) -> list[int]:
    """Fail the RUNNING trials whose process on this machine is gone, and queue each for one retry; the numbers."""
    import optuna
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or not isinstance(pid, int) or _alive(pid):
            continue
        try:
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        retry(study, trial.number)
    return failed


def retry(study: Any, number: int) -> None:
    """Queue one retry (same parameters, a new trial) of a trial that was interrupted, not one that was bad."""
    import optuna

    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if trial.state.name != "FAIL":  # an interrupt between trials leaves a finished trial as it is
        return
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)


def counts(study: Any) -> dict[str, int]:
    """Trials per state name (COMPLETE, PRUNED, RUNNING, WAITING, FAIL)."""
    out: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name] = out.get(trial.state.name, 0) + 1
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
