"""Recipe: clean sentences in, (noisy, clean) learner-error pairs out — training data for the edit task.

Reads plain text, one tokenized sentence per line (blank lines skipped), corrupts it with
stepwise.tasks.edit.noise and writes `noisy<TAB>clean` rows, all at once (atomically: an error leaves no file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepwise.data.text import read_text
from stepwise.errors import StepwiseError
from stepwise.files import atomic_write, same_file
from stepwise.numbers import check_finite
from stepwise.places import FILE, check_output
from stepwise.tasks.edit.noise import ERROR_TYPES, make_pairs, scale_rates


def run(input: str, out: str, *, seed: int = 0, rates: dict[str, float] | None = None, copies: int = 1,
        keep_clean: float = 0.0, scale: float = 1.0) -> dict[str, Any]:
    """Write `copies` noisy versions of every sentence in `input` ("-": stdin) to the TSV `out`.

    `rates` override the per-sentence probabilities of stepwise.tasks.edit.noise.DEFAULT_RATES; `keep_clean` is the
    share of pairs left unchanged; `scale` multiplies every rate (capped at 0.95). Returns a summary:
    sentences read, pairs written, unchanged pairs, errors applied per type and per noisy pair.
    """
    check_finite({"rate": rates or {}, "keep_clean": keep_clean, "scale": scale})
    rates = scale_rates(rates, scale)  # before reading: a typo in a rate name fails fast, even on stdin
    if input != "-" and same_file(input, out):
        raise StepwiseError("the output would overwrite the input", path=out, fix="write the pairs to another file")
    check_output(out, "--out", FILE, inputs=[input])
    sentences = [line for line in read_text(input).splitlines() if line.strip()]
    pairs, counts = make_pairs(sentences, seed=seed, rates=rates, copies=copies, keep_clean=keep_clean)
    text = "".join(f"{noisy}\t{clean}\n" for noisy, clean in pairs)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    noisy_pairs = sum(noisy != clean for noisy, clean in pairs)
    return {
        "input": input, "out": str(out), "seed": seed, "sentences": len(sentences), "pairs": len(pairs),
        "unchanged": len(pairs) - noisy_pairs,
        "errors": {name: counts[name] for name in ERROR_TYPES},
        "errors_per_noisy_pair": round(sum(counts.values()) / noisy_pairs, 3) if noisy_pairs else 0.0,
    }
