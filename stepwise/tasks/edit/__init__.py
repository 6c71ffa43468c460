"""Editing: correct a sentence by tagging each word with an edit and applying the edits, pass after pass.

    task.py      the task class, which composes a tagger over edit tags
    tags.py      edit tags: alignment, vocabulary, applying them
    pairs.py     reading (source, target) pairs
    policy.py    the editing policy of the refinement engine
    training.py  `--own-outputs`: training on the model's own one-pass outputs
    metrics.py   GLEU, F0.5 over edits, BLEU
    noise.py     learner-error noise (`stepwise noise`, `--augment`)
    templates/   the LLM prompts (draft, revise)
"""

from stepwise.tasks.edit.task import EditTask

__all__ = ["EditTask"]
