"""The small-data rule: what a classifier trained on a few thousand texts or fewer gets instead of the defaults.

The shared defaults (a fresh head, 3 epochs, lr 1e-4, batch 32) were chosen on SST-2's 6,920 sentences. On
small sets they trail HF Trainer and move between seeds (issue 35). bench/small_data.py measured the
candidates one at a time (bench/NOTES.md, "Small data"); the one that carried the gain is the head's start: a
linear probe of the frozen encoder (training/probe_head.py) instead of random numbers. More epochs, a lower
lr or a longer patience did not help once the head starts there, and cost time. So the rule is:

    classify, fine-tuning a pretrained encoder (not rl/distill/prune from a run), at most SMALL_DATA_MAX
    training texts, --small-data on (the default)  →  the head starts from the linear probe.

results.json keeps what the rule saw and chose under "small_data", including when it chose nothing.
"""

from __future__ import annotations

from typing import Any

#: training texts up to which the rule applies: the sizes measured (298 to 3,000) and the team's 5.4k
#: question-type set; the full SST-2 (6,920) and twitter_fin (9,543) sets keep the plain defaults
SMALL_DATA_MAX = 6000


def decide(task: Any, examples: int, objective: str, from_run: bool, enabled: bool) -> dict[str, Any]:
    """What the rule chooses for a run of this kind and size, and why (a plain dict for results.json); `task`:
    the task (its name, class or instance), whose `probe_head_on_small_data` says whether the rule is for it."""
    if isinstance(task, str):
        from stepwise.tasks import task_class

        task = task_class(task)
    seen = {"examples": examples, "max_examples": SMALL_DATA_MAX}
    reasons = [(not enabled, "--no-small-data"),
               (not getattr(task, "probe_head_on_small_data", False), f"a {task.name} run"),
               (objective != "supervised", f"the {objective} objective"), (from_run, "starts from a trained run"),
               (examples > SMALL_DATA_MAX, f"more than {SMALL_DATA_MAX} training texts")]
    off = [why for hit, why in reasons if hit]
    if off:
        return {**seen, "applied": False, "why": off[0], "chose": {}}
    return {**seen, "applied": True, "why": f"a classifier on at most {SMALL_DATA_MAX} training texts",
            "chose": {"head": "linear probe"}}


def apply_small_data(job: Any, objective: str) -> None:
    """Run the rule on a loaded job (its model has its fresh head): probe the head when chosen; noted."""
    from stepwise.model import position_limit
    from stepwise.training import probe_head

    cfg, train = job.config, job.data["train"]
    choice = decide(job.task, len(train), objective, job.start_meta is not None, cfg.small_data)
    if choice["chose"].get("head") == "linear probe":
        length = min(cfg.max_length, position_limit(job.model.encoder) or cfg.max_length)
        features = job.task.encode(job.tokenizer, train, length)
        choice["probe"] = probe_head.init_head_from_probe(job.model, features, job.tokenizer.pad_token_id,
                                                          probe_head.PROBE_C)
    job.notes["small_data"] = choice
