"""Tagging: a tag per word. Everything the tagger owns lives here:

    task.py         the task class (encode/decode, windows over long sentences, metrics, records)
    conll.py        reading CoNLL files, the tag scheme, BIO repair
    document.py     document context: the per-word context of a sentence's document, its refinement policy
    doc_head.py     `--doc-context head`: the small second-step head fitted on dev
    doc_context.py  the training steps of document context (fold taggers, the head's fit)
    templates/      the LLM prompts (draft, revise)
"""

from stepwise.tasks.tag.task import TagTask
from stepwise.tasks.tag.words import words_of

__all__ = ["TagTask", "words_of"]
