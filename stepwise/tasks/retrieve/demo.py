"""`stepwise demo --app answer`: a customer-service FAQ in about a minute — train, index, calibrate, answer.

The FAQ is a fictional bicycle shop's, written by the team: 20 answers in 5 categories, each asked three
ways (two for training, one held out for calibration), and out-of-scope questions to calibrate on.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from stepwise.tasks.retrieve.task import RetrieveTask

QUERIES = ["my tyre is flat, can you fix it quickly?", "how many days until my parcel gets here?",
           "I want to send back the helmet I bought", "can you recommend a good pizza place?"]


def _data(name: str) -> Path:
    return Path(str(resources.files("stepwise.demo") / name))


def run_answer_demo(out: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    from stepwise.files import atomic_write_text
    from stepwise.recipes.finetune import train
    from stepwise.tasks.retrieve.answer import calibrate, open_answerer
    from stepwise.tasks.retrieve.data import read_pairs, read_queries
    from stepwise.tasks.retrieve.indexing import build_index

    out = Path(out or "runs/demo-answer")
    rows = [json.loads(line) for line in _data("faq.jsonl").read_text().splitlines() if line.strip()]
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        atomic_write_text(data / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows if r["split"] == split))
    pool = {r["id"]: {"id": r["id"], "category": r["category"], "answer": r["answer"]} for r in rows}
    atomic_write_text(data / "answers.jsonl", "".join(json.dumps(p) + "\n" for p in pool.values()))

    run = train(task=RetrieveTask.name, train=str(data / "train.jsonl"), dev=str(data / "dev.jsonl"),
                pool=str(data / "answers.jsonl"), out=str(out / "retriever"), epochs=10, batch_size=8, lr=5e-5,
                hard_negatives=3,
                quiet=quiet, overwrite=True)
    build_index(out / "retriever", passages=data / "answers.jsonl", out=out / "index")
    answerer = open_answerer(out / "index", calibrated=False)
    report = calibrate(answerer, read_pairs(data / "dev.jsonl"), read_queries(_data("faq_oos.txt")), 0.9,
                       str(data / "dev.jsonl"))
    records = answerer.answer(QUERIES)
    if not quiet:
        from stepwise.tasks.retrieve.cli import _calibration_line

        dev = run.results["dev"]
        print(f"retriever: dev R@1 {100 * dev['recall@1']:.1f}, MRR@10 {100 * dev['mrr@10']:.1f} "
              f"({run.results['train']['seconds']:.0f} s of training)")
        print(_calibration_line(report))
        for record in records:
            top = record["answers"][0]
            verdict = f"ABSTAIN ({top['score']:.2f})" if record["abstain"] else f"{top['id']} ({top['score']:.2f})"
            print(f"\n> {record['query']}\n  {verdict}" + ("" if record["abstain"] else f": {top['text']}"))
        print(f"\ntry: stepwise answer {out / 'index'} --input - <<< 'do you fix e-bike motors?'")
    return {"retriever": run.results, "calibration": report, "answers": records}
