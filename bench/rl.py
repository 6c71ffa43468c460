"""RL on CoNLL-2003: supervised run -> REINFORCE with the entity-F1 reward, against a control that
continues the same supervised run with cross-entropy for the same extra training time.

Run: make bench-rl   (or .venv/bin/python bench/rl.py [--epochs 1] [--rl-epochs 0.5] [--ce-coef 1.0]
                      [--init bench/out/refine_conll2003/single] [--name rl_converged])
--init starts from an existing supervised tagging run (e.g. the refine bench's 2-epoch model) instead of
training one here; the comparison RL vs control is then made from that run.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from common import OUT, SHARED, emit, need


def row(name: str, run, base_test: float | None = None) -> dict:
    r = run.results
    out = {"system": name, "test_f1": round(r["test"]["f1"], 4), "dev_f1": round(r["dev"]["f1"], 4),
           "train_seconds": r["train"]["seconds"], "steps": r["train"]["steps"]}
    if base_test is not None:
        out["gain_vs_supervised"] = round(100 * (r["test"]["f1"] - base_test), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=1.0, help="supervised epochs")
    parser.add_argument("--rl-epochs", type=float, default=0.5, help="extra epochs of RL")
    parser.add_argument("--lr", type=float, default=1e-5, help="learning rate of both continuations")
    parser.add_argument("--ce-coef", type=float, default=0.0, help="cross-entropy mixed into the RL loss")
    parser.add_argument("--init", default=None, help="an existing supervised tagging run to start from")
    parser.add_argument("--name", default="rl", help="output name under bench/out/")
    args = parser.parse_args()
    import stepwise
    from stepwise import Run
    from stepwise.config import load_yaml

    data = need(SHARED / "conll2003")
    files = {"train": str(data / "train.txt"), "dev": str(data / "valid.txt"), "test": str(data / "test.txt")}
    out = OUT / args.name
    shutil.rmtree(out, ignore_errors=True)
    common = {**files, "quiet": True, "patience": None}
    if args.init:
        supervised = Run.from_dir(args.init)
        epochs = load_yaml(Path(args.init) / "config.yaml")["epochs"]
    else:
        epochs = args.epochs
        supervised = stepwise.train(task="tag", out=str(out / "supervised"), epochs=epochs, lr=1e-4, **common)
    base = supervised.results["test"]["f1"]
    steps_per_epoch = supervised.results["train"]["steps"] / epochs
    rl_steps = max(1, math.ceil(args.rl_epochs * steps_per_epoch))
    rl_run = stepwise.rl(str(supervised.path), out=str(out / "rl"), reward="entity_f1", max_steps=rl_steps,
                         lr=args.lr, ce_coef=args.ce_coef, **common)
    # The control gets the same extra training time: CE steps are cheaper, so it gets more of them.
    ce_step = supervised.results["train"]["seconds"] / supervised.results["train"]["steps"]
    control_steps = max(1, round(rl_run.results["train"]["seconds"] / ce_step))
    control = stepwise.train(task="tag", init_from=str(supervised.path), out=str(out / "control"),
                             max_steps=control_steps, lr=args.lr, warmup_ratio=0.0, **common)
    mix = f", + {args.ce_coef:g} CE" if args.ce_coef else ""
    rows = [row(f"supervised ({epochs:g} ep)", supervised),
            row("control: + cross-entropy, same extra time", control, base),
            row(f"RL: + REINFORCE entity-F1 (self-critical, KL 0.05{mix})", rl_run, base)]
    extra = {"rl_minus_control_points": round(100 * (rl_run.results["test"]["f1"] - control.results["test"]["f1"]), 2)}
    print(f"RL - control, test entity F1 points: {extra['rl_minus_control_points']}")
    emit(args.name, rows, ["system", "test_f1", "dev_f1", "gain_vs_supervised", "train_seconds", "steps"], extra)


if __name__ == "__main__":
    main()
