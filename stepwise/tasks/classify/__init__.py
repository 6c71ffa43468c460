"""Classification: a label per text (or text pair). The task class is in `task.py`; its LLM prompts in templates/."""

from stepwise.tasks.classify.task import ClassifyTask

__all__ = ["ClassifyTask"]
