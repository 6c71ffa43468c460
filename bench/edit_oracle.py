"""How much can passes 2..T be worth on JFLEG dev? The editor's tag scheme with gold tags, pass by pass.

Run: cd bench && ../.venv/bin/python edit_oracle.py        (no model, no training: a few minutes)
A perfect tagger tags each token of the current sentence with the first operation that leads to the target
(`stepwise.tasks.edit.tags`, what the editor is trained on); the tags are applied and the new sentence tagged again,
5 passes. Its pass-1 output holds everything one pass can do; what passes 2..5 add is the part of the task
that needs a second look: a token with two operations (a replacement and an appended word), a two-word
insertion, a merge after a change. The target is each sentence's closest reference, then each reference.

To see that share at an editor's recall, a tagger that knows a fraction p of the edits, decided once by a hash
so that the same edit is known or unknown in every pass, as for a deterministic model; unknown edits are tagged
$KEEP. Two bounds on how a real model's knowledge hangs together: each edit (sentence, token, operation) known
on its own (a second-pass edit then needs two lucky draws), or whole sentences known (a sentence the tagger
understands, it corrects completely). It never makes a wrong edit and gains nothing from a corrected context:
it isolates what dependent operations alone give to later passes.
"""

from __future__ import annotations

import argparse
import hashlib

from common import SHARED, emit, need

PASSES = 5


def known(key: str, p: float) -> bool:
    return p >= 1.0 or int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32 < p


def passes(sources: list[tuple], targets: list[tuple], p: float, unit: str) -> list[list[tuple]]:
    """The corpus after each pass (index 0: the sources) of a gold tagger that knows a share p of the edits."""
    from stepwise.tasks.edit.tags import KEEP, START, apply_tags
    from stepwise.tasks.edit.task import ops_for, speller

    outputs, current = [list(sources)], [list(s) for s in sources]
    for _ in range(PASSES):
        nxt = []
        for i, (sentence, target) in enumerate(zip(current, targets)):
            words = [START, *sentence]
            tags = [ops[0] if ops[0] == KEEP or known(f"{i}|{words[k]}|{ops[0]}" if unit == "edit" else str(i), p)
                    else KEEP
                    for k, ops in enumerate(ops_for(sentence, list(target)))]
            nxt.append(apply_tags(sentence, tags, speller()))
        current = nxt
        outputs.append([tuple(s) for s in current])
    return outputs


def later_share(sources: list[tuple], targets: list[tuple]) -> tuple[int, int]:
    """(all operations source → target, those past a token's first: one pass cannot make them)."""
    from stepwise.tasks.edit.tags import KEEP
    from stepwise.tasks.edit.task import ops_for

    total = later = 0
    for source, target in zip(sources, targets):
        for ops in ops_for(list(source), list(target)):
            edits = [o for o in ops if o != KEEP]
            total += len(edits)
            later += max(len(edits) - 1, 0)
    return total, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known", type=float, nargs="+", default=[1.0, 0.5, 0.25],
                        help="shares of the edits the simulated tagger knows")
    parser.add_argument("--unit", choices=["edit", "sentence"], nargs="+", default=["edit", "sentence"],
                        help="what the simulated tagger knows or not as a whole")
    args = parser.parse_args()

    from stepwise.tasks.edit.metrics import gleu, token_edits
    from stepwise.tasks.edit.task import EditTask, references

    jfleg = need(SHARED / "jfleg_dev")
    examples = EditTask.read_file(str(jfleg / "dev.src"), targets=[str(jfleg / f"dev.ref{i}") for i in range(4)])
    sources = [tuple(ex.text.split()) for ex in examples]
    refs = [[tuple(r.split()) for r in references(ex.label)] for ex in examples]
    choices = {"closest": [min(rs, key=lambda r: len(token_edits(s, r))) for s, rs in zip(sources, refs)]}
    choices.update({f"ref{k}": [rs[k] for rs in refs] for k in range(4)})
    rows = []
    for name, targets in choices.items():
        total, later = later_share(sources, targets)
        for unit, p in [(u, p) for u in args.unit for p in args.known if p < 1 or u == args.unit[0]]:
            scores = [round(100 * gleu(sources, out, refs), 2) for out in passes(sources, targets, p, unit)]
            rows.append({"target": name, "known": p, "unit": unit if p < 1 else "", "ops": total,
                         "ops_past_first_%": round(100 * later / total, 1),
                         **{f"pass_{t}": scores[t] for t in range(PASSES + 1)},
                         "gain_T_vs_1": round(scores[-1] - scores[1], 2),
                         "gain_1_vs_copy": round(scores[1] - scores[0], 2)})
            print(rows[-1], flush=True)
    emit("edit_oracle", rows, list(rows[0]))


if __name__ == "__main__":
    main()
