"""Where the work is that the editor's passes leave: near the previous pass's changes, or elsewhere.

Run (after `make bench-edit`, or `bench/edit.py --noise-scale 2.5 --epochs 5`, which trains the run):
    cd bench && ../.venv/bin/python edit_leftovers.py [--run out/edit/run_noise2.5_ep5] [--keep-bias 0]
One 5-pass run over JFLEG dev. After each pass: the edits still needed to reach the closest reference, split
into sentences the pass changed and sentences it left alone (those are never looked at again); how many of
them lie within 2 tokens of what the pass changed, and how many on a token it wrote (its own edit, to redo);
and how many of the next pass's edits lie within those 2 tokens. The question it answers: would a later
pass that knows where the last one changed the sentence have more to do?
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from common import OUT, SHARED, emit, need

NEAR = 2


def touched(before: tuple, after: tuple) -> set[int]:
    """Positions of `after` that the edits before → after wrote (a deletion marks its two neighbours)."""
    out: set[int] = set()
    for op, _, _, j1, j2 in difflib.SequenceMatcher(None, list(before), list(after), autojunk=False).get_opcodes():
        if op != "equal":
            out.update(range(max(j1 - 1, 0), j1 + 1) if j1 == j2 else range(j1, j2))
    return out


def close(edit: tuple, marks: set[int], near: int = NEAR) -> bool:
    start, end, _ = edit
    return any(start - near <= m <= max(start, end - 1) + near for m in marks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(OUT / "edit" / "run_noise2.5_ep5"))
    parser.add_argument("--keep-bias", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    import stepwise
    from stepwise.predictor import PredictOptions
    from stepwise.tasks.edit.metrics import token_edits
    from stepwise.tasks.edit.task import EditTask, references

    jfleg = need(SHARED / "jfleg_dev")
    examples = EditTask.read_file(str(jfleg / "dev.src"), targets=[str(jfleg / f"dev.ref{i}") for i in range(4)])
    predictor = stepwise.load(need(Path(args.run)))
    predictor.task.keep_bias = args.keep_bias
    result = predictor.run(examples, PredictOptions(steps=args.steps))
    refs = [[tuple(r.split()) for r in references(ex.label)] for ex in examples]
    states = [[tuple(ex.text.split()), *map(tuple, hist)] for ex, hist in zip(examples, result.history)]
    rows = []
    for t in range(1, args.steps):
        row = {"pass": t, "changed": 0, "left_in_changed": 0, "left_near_changes": 0, "left_on_changes": 0,
               "unchanged": 0, "left_in_unchanged": 0, "next_pass_edits": 0, "next_near_changes": 0}
        for state, rs in zip(states, refs):
            before, now = state[min(t - 1, len(state) - 1)], state[min(t, len(state) - 1)]
            left = min((token_edits(now, r) for r in rs), key=len)
            if now == before:
                row["unchanged"] += 1
                row["left_in_unchanged"] += len(left)
                continue
            marks = touched(before, now)
            row["changed"] += 1
            row["left_in_changed"] += len(left)
            row["left_near_changes"] += sum(close(e, marks) for e in left)
            row["left_on_changes"] += sum(close(e, marks, 0) for e in left)  # the pass's own edit, redone
            following = state[min(t + 1, len(state) - 1)]
            nxt = token_edits(now, following)
            row["next_pass_edits"] += len(nxt)
            row["next_near_changes"] += sum(close(e, marks) for e in nxt)
        rows.append(row)
    emit(f"edit_leftovers_bias{args.keep_bias:g}", rows, list(rows[0]), {"run": args.run, "near": NEAR})


if __name__ == "__main__":
    main()
