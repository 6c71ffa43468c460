"""What a search leaves in DIR besides the study: trials.csv, trials.md, search.png and best.yaml.

Every file is rewritten whole (atomically) from the study after each trial, so whichever process
finished last has written them and a reader never sees half a table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from stepwise.files import atomic_write, atomic_write_text
from stepwise.layout import CONFIG

TRIALS_CSV, TRIALS_MD, PLOT, BEST_YAML, BEST_RUN, TRIALS = "trials.csv", "trials.md", "search.png", "best.yaml", \
    "best", "trials"


def trial_dir(out: str | Path, number: int) -> Path:
    return Path(out) / TRIALS / f"{number:04d}"


def rows(trials: list[Any], metric: str) -> list[dict[str, Any]]:
    """One row per trial: number, state, its best dev metric, optimizer steps, seconds, parameters."""
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        dev = t.user_attrs.get("dev")
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name,
                               f"dev_{metric}": "" if dev is None else round(dev, 4),
                               "steps": t.user_attrs.get("steps", ""), "seconds": t.user_attrs.get("seconds", ""),
                               "retry_of": t.system_attrs.get("failed_trial", "")}
        row.update({k: _short(v) for k, v in sorted(t.params.items())})
        out.append(row)
    return out


def best_trial(trials: list[Any]) -> Any | None:
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def write_outputs(out: str | Path, trials: list[Any], metric: str, base: dict[str, Any],
                  test: dict[str, Any] | None = None) -> Any | None:
    """The tables, the plot and (once a trial completed) best.yaml; returns the best trial."""
    out = Path(out)
    table = rows(trials, metric)
    columns = list(dict.fromkeys(k for r in table for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(out / TRIALS_CSV, buffer.getvalue())
    best = best_trial(trials)
    atomic_write_text(out / TRIALS_MD, markdown(table, columns, best, metric, test))
    plot(trials, metric, out / PLOT)
    if best is not None:
        write_best_yaml(out, best, metric, base)
    return best


def markdown(table: list[dict[str, Any]], columns: list[str], best: Any, metric: str,
             test: dict[str, Any] | None) -> str:
    states: dict[str, int] = {}
    for row in table:
        states[row["state"]] = states.get(row["state"], 0) + 1
    lines = [f"# stepwise search: {len(table)} trials ({', '.join(f'{v} {k.lower()}' for k, v in states.items())})",
             ""]
    if best is not None:
        lines.append(f"Best: trial {best.number}, dev {metric} {best.value:.4f}, "
                     + ", ".join(f"{k}={_short(v)}" for k, v in sorted(best.params.items())) + ".")
        if test:
            lines.append(f"Its test scores: {', '.join(f'{k} {v:.4f}' for k, v in test.items())}.")
        lines.append(f"Reproduce it: `stepwise train --config {BEST_YAML}`.")
        lines.append("")
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines.extend("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in table)
    return "\n".join(lines) + "\n"


def plot(trials: list[Any], metric: str, path: Path) -> None:
    """Dev metric per trial (completed: dots, pruned: crosses at their last value) and the best so far."""
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    series = {TrialState.COMPLETE: ([], [], "o", "tab:blue", "completed"),
              TrialState.PRUNED: ([], [], "x", "tab:gray", "pruned (best dev before it stopped)")}
    steps_x, steps_y, best = [], [], None
    for t in sorted(trials, key=lambda t: t.number):
        dev = t.user_attrs.get("dev")
        if t.state in series and dev is not None:
            series[t.state][0].append(t.number)
            series[t.state][1].append(dev)
        if t.state == TrialState.COMPLETE and t.value is not None:
            best = t.value if best is None else max(best, t.value)
        if best is not None:
            steps_x.append(t.number)
            steps_y.append(best)
    for xs, ys, marker, color, label in series.values():
        if xs:
            ax.scatter(xs, ys, marker=marker, color=color, label=label, zorder=3)
    if steps_x:
        ax.step(steps_x, steps_y, where="post", color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title("stepwise search")
    ax.grid(alpha=0.3)
    if steps_x or any(s[0] for s in series.values()):
        ax.legend(loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def write_best_yaml(out: Path, best: Any, metric: str, base: dict[str, Any]) -> None:
    """The best trial's own resolved config, with --test back, its own --out, and nothing search-only."""
    config = yaml.safe_load((Path(best.user_attrs["run"]) / CONFIG).read_text(encoding="utf-8"))
    config.update(out=str((out / BEST_RUN).resolve()), resume=False, overwrite=False,
                  quiet=bool(base.get("quiet", False)))
    if base.get("test") is not None:
        config["test"] = str(Path(base["test"]).resolve())
    header = (f"# stepwise search: trial {best.number}, dev {metric} {best.value:.4f}\n"
              f"# reproduce it: stepwise train --config {out / BEST_YAML}\n")
    atomic_write_text(out / BEST_YAML, header + yaml.safe_dump(config, sort_keys=False))


def _short(value: Any) -> Any:
    return float(f"{value:.4g}") if isinstance(value, float) else value
