"""`stepwise demo` (the first task's demo): fine-tune the bundled MiniLM on headlines the team wrote, then predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepwise.demo import demo_data_path
from stepwise.tasks.classify.task import ClassifyTask

SAMPLES = [
    "Harbor Lane Foods lifts full-year outlook after strong holiday sales",
    "Regulator fines Greystone Bank over failures in anti-fraud controls",
    "Vellum Energy to hold annual shareholder meeting on May 14",
]


def run_demo(out: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Train (7:2:1 split of the embedded data), print the test report and a few predictions."""
    from stepwise.recipes.finetune import train

    out = out or "runs/demo"
    # the demo is disposable: re-running it starts fresh
    run = train(task=ClassifyTask.name, train=str(demo_data_path()), out=str(out), epochs=4, lr=1e-4, batch_size=16,
                quiet=quiet, overwrite=True)
    if not quiet:
        from stepwise.layout import REPORT_TXT

        print((run.path / REPORT_TXT).read_text())
        predictor = run.load()
        for text, label, probs in zip(SAMPLES, predictor.predict(SAMPLES), predictor.predict_proba(SAMPLES)):
            print(f"{label:>9} ({probs.max():.2f})  {text}")
        print(f"\nrun written to {run.path}; try: stepwise predict {run.path} --input - <<< 'Shares of Acme jump'")
    return run.results
