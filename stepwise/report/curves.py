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
