"""Where training numbers go: metrics.jsonl and the progress bar, behind one small interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


class Logger:
    """Receives a record per log step (`train`) and per evaluation (`evaluation`); both carry "step".

    `advance` is called after every optimizer step, for live displays.
    """

    def advance(self, step: int) -> None:
        pass

    def train(self, record: dict[str, Any]) -> None:
        pass

    def evaluation(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class MetricsLog(Logger):
    """metrics.jsonl: one JSON line per record; on resume, lines after the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        if keep_until_step is None:
            path.write_text("")
        elif path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= keep_until_step]
            path.write_text("".join(ln + "\n" for ln in kept))

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    train = evaluation = _write


class ProgressBar(Logger):
    """A tqdm bar over optimizer steps with loss, learning rate, throughput and MFU."""

    def __init__(self, total: int, initial: int, disable: bool) -> None:
        self.bar = tqdm(total=total, initial=initial, disable=disable, desc="train", unit="step", dynamic_ncols=True)
        self.step = initial

    def advance(self, step: int) -> None:
        self.bar.update(step - self.step)
        self.step = step

    def train(self, record: dict[str, Any]) -> None:
        threads = {"threads": record["threads"]} if "threads" in record else {}
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                             ex_s=f"{record['examples_per_s']:.1f}", mfu=f"{record['mfu']:.1%}", **threads)
        if change := record.get("threads_change"):
            self.bar.write(f"step {change['step']}: {change['threads']} threads from here (other processes "
                           f"use {change['others_load']:.1f} cores)")

    def close(self) -> None:
        self.bar.close()
