"""report.txt / report.json for the final model on every scored split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepwise.files import atomic_write_json, atomic_write_text


def write_reports(text_path: Path, json_path: Path, task_name: str, scores: dict[str, dict[str, Any]],
                  summary: dict[str, Any]) -> None:
    """`scores` maps split name → Predictor.score() output; `summary` holds training facts."""
    parts = [f"stepwise {task_name} report — {text_path.parent}\n"]
    for split, score in scores.items():
        parts.append(f"== {split} ({score['metrics'].get('n', '?')} examples) ==\n{score['report']}")
    train = summary.get("train", {})
    if train:
        parts.append("== training ==\n" + "\n".join(f"{k}: {fact_line(k, v)}" for k, v in train.items()) + "\n")
    atomic_write_text(text_path, "\n".join(parts))
    atomic_write_json(json_path, {"task": task_name, **summary, **{split: s["metrics"] for split, s in scores.items()}})


def fact_line(key: str, value: Any) -> str:
    """A training fact as one readable line (the structured form is in results.json)."""
    if key == "threads" and isinstance(value, dict):
        steps = ", ".join(f"{c['threads']} from step {c['step']}" for c in value.get("changes", []))
        return f"{value.get('mode')}: {steps or value.get('final')}"
    if key == "precision_choice" and isinstance(value, dict):
        line = f"{value.get('choice')}, {value.get('reason')}"
        if "fp32_ms" in value:
            line += f" (a step: fp32 {value['fp32_ms']} ms, bf16 {value['bf16_ms']} ms"
            line += ", cached)" if value.get("cached") else ")"
        return line
    return str(value)
