"""The editing policy for the refinement engine: the state is the current sentence, the action its edit tags.

Each pass re-encodes the still-active sentences as they are now, tags them through the backend, and
applies the tags; the engine stops a sentence when a pass leaves it unchanged. The raw output of a
pass carries the sentence and every pass's edits so far, so records can show the edits per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepwise.example import Example
from stepwise.infer import predict_features
from stepwise.tasks.edit.tags import KEEP, START

if TYPE_CHECKING:
    from stepwise.backends import Backend
    from stepwise.tasks.edit.task import EditTask


class EditPolicy:
    def __init__(self, backend: Backend, task: EditTask, tokenizer: Any, examples: list[Example], *,
                 batch_size: int, max_length: int) -> None:
        from stepwise.tasks.tag.words import words_of

        self.backend, self.task, self.tokenizer = backend, task, tokenizer
        self.sources = [list(words_of(ex)) for ex in examples]
        self.batch_size, self.max_length = batch_size, max_length
        self.trail: list[list[list[dict[str, Any]]]] = [[] for _ in examples]  # per example, per pass: edits

    def act(self, indices: list[int], previous: list[Any | None]) -> tuple[list[Any], list[float], list[Any]]:
        current = [self.sources[i] if prev is None else list(prev) for i, prev in zip(indices, previous)]
        examples = [Example(tokens) for tokens in current]
        features = self.task.encode(self.tokenizer, examples, self.max_length, with_labels=False)
        probs = predict_features(self.backend, self.task, features, batch_size=self.batch_size,
                                 pad_id=self.tokenizer.pad_token_id)
        merged = self.task.merge(examples, features, probs)
        preds, scores, outs = [], [], []
        for i, tokens, p in zip(indices, current, merged):
            tags, score = self.task.choose(p)
            new = self.task.apply(tokens, tags)
            self.trail[i].append([{"position": k - 1, "token": ([START] + tokens)[k], "tag": tag}
                                  for k, tag in enumerate(tags) if tag != KEEP])
            preds.append(tuple(new))
            scores.append(score)
            outs.append({"tokens": new, "edits": list(self.trail[i])})
        return preds, scores, outs
