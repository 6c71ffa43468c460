"""Learning curves from metrics.jsonl: training loss per log step, dev metric per evaluation."""

from __future__ import annotations

import json
from pathlib import Path

from stepwise.files import atomic_write


def plot_curves(metrics_path: Path, out_path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if ln.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    dev = [(r["step"], r["dev"][metric]) for r in records if "dev" in r and metric in r["dev"]]
    fig, (ax_loss, ax_dev) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot(*zip(*train), label="train loss")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss")
    if dev:
        ax_dev.plot(*zip(*dev), marker="o", color="tab:orange")
    ax_dev.set_xlabel("optimizer step")
    ax_dev.set_ylabel(f"dev {metric}")
    ax_dev.set_title(f"dev {metric} per evaluation")
    fig.tight_layout()
    atomic_write(out_path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def plot_steps(rows: list[dict], out_path: str | Path) -> None:
    """Quality against refinement step and against cumulative latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next(k for k in rows[0] if k not in ("step", "changed", "active", "seconds", "ms_per_example"))
    fig, (ax_step, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    ax_step.plot([r["step"] for r in rows], [r[metric] for r in rows], marker="o")
    ax_step.set_xlabel("refinement step")
    ax_step.set_ylabel(metric)
    ax_time.plot([r["ms_per_example"] for r in rows], [r[metric] for r in rows], marker="o", color="tab:green")
    ax_time.set_xlabel("cumulative latency (ms per example)")
    ax_time.set_ylabel(metric)
    fig.tight_layout()
    atomic_write(Path(out_path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
