"""Training inputs for the later passes of an editor: the model's own pass-1 output, re-aligned with the target.

The pairs alone teach a pass over a noisy sentence (and over one corrected by the gold edits). At
prediction time pass 2 reads what pass 1 *actually* made: some errors left, some wrong edits. With
`--own-outputs S`, a share S of the training batches is replaced, on the fly, by the current model's
own one-pass output on each pair's sentence, tagged against the same target — so later passes learn to
fix what the model leaves and to undo what it broke (DAgger's idea; `RefinerTraining` does the same for
a refiner). A pair the model leaves unchanged, or whose output no longer fits one window, keeps its
original lesson, and so does a pass that rewrote more than a quarter of the sentence (an untrained
model's noise, early in training, is not a lesson). The seeded generator (`rng`) is saved in checkpoints.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from stepwise.data.batching import pad
from stepwise.example import Feature

if TYPE_CHECKING:
    import torch

    from stepwise.tasks.edit.task import EditTask


def _plausible(before: list[str], after: list[str]) -> bool:
    import difflib

    changed = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in
                  difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes() if op != "equal")
    return changed <= max(2, len(before) // 4)


class OwnOutputs:
    def __init__(self, task: EditTask, tokenizer: Any, *, share: float, max_length: int, precision: str,
                 seed: int = 0) -> None:
        self.task, self.tokenizer, self.share = task, tokenizer, share
        self.max_length, self.precision = max_length, precision
        self.rng = random.Random(seed)

    def inputs(self, model: torch.nn.Module, feats: list[Feature]) -> list[Feature]:
        if self.rng.random() >= self.share:
            return feats
        whole = [i for i, f in enumerate(feats) if f["_start"] == 0 and sum(f["word_mask"]) == len(f["_state"]) + 1]
        if not whole:
            return feats
        outputs = self._one_pass(model, [feats[i] for i in whole])
        out = list(feats)
        for i, own in zip(whole, outputs):
            f = feats[i]
            if own == f["_state"] or not _plausible(f["_state"], own):
                continue
            encoded = self.task.encode_pairs(self.tokenizer, [(own, f["_target"])], self.max_length)
            if len(encoded) == 1:
                out[i] = {**encoded[0], "_example": f["_example"], "_gold": f.get("_gold"),
                          "pair_id": f.get("pair_id", 0)}
        return out

    def _one_pass(self, model: torch.nn.Module, feats: list[Feature]) -> list[list[str]]:
        import torch

        from stepwise.precision import autocast

        was_training = model.training
        model.eval()
        batch = pad(feats, self.tokenizer.pad_token_id)
        with torch.no_grad(), autocast(self.precision):
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        model.train(was_training)
        probs = self.task.decode(logits.float().numpy(), batch)
        return [self.task.apply(f["_state"], self.task.choose(p)[0]) for f, p in zip(feats, probs)]
