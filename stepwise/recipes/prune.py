"""Recipe: prune a trained run's FFN neurons by importance, then a short recovery fine-tune; writes a new run.

The fine-tune recipe started from the run (its task, labels, head and tokenizer), with the loaded model's
FFN cut by stepwise.deploy.prune before training: the same loop, reports and run directory as `train`.
"""

from __future__ import annotations

import random
from typing import Any

from stepwise.config import build_config
from stepwise.errors import StepwiseError
from stepwise.recipes.distill import encoder_config
from stepwise.recipes.finetune import Prepared, run_recipe
from stepwise.rundir import Run, RunDir

# Recovery from a trained model is short: one pass over the training data.
PRUNE_DEFAULTS = {"epochs": 1.0}
IMPORTANCE_BATCHES = 8  # training batches the Taylor importance is summed over
# Why: stepwise/deploy/prune.py (a standard BERT config sizes every head hidden_size / num_attention_heads).
HEADS_UNSUPPORTED = ("--heads: attention heads cannot be pruned into a standard BERT config, whose head size is "
                     "always hidden_size / num_attention_heads")


def prune(run: str, *, ffn: float, heads: float = 0.0, callbacks: tuple = (), **options: Any) -> Run:
    """Remove the share `ffn` of every layer's FFN neurons (least Taylor-important first), then fine-tune.

    `heads` must be 0: heads cannot be removed into a loadable standard config (see stepwise.deploy.prune).
    `options` are training options (train, dev, test, out, ...); epochs default to 1.
    """
    source = RunDir.open(run)
    if not 0 <= heads < 1:
        raise StepwiseError(f"--heads must be from 0 to below 1 (got {heads!r})", fix="omit --heads")
    if heads > 0:
        raise StepwiseError(HEADS_UNSUPPORTED, fix="omit --heads and prune the FFN with --ffn")
    if not 0 < ffn < 1:
        raise StepwiseError(f"--ffn must be between 0 and 1, the share of FFN neurons to remove (got {ffn!r})",
                            fix="e.g. --ffn 0.5 halves every layer's intermediate size")
    size = encoder_config(source, "intermediate_size")
    keep = round(size * (1 - ffn))
    if keep in (0, size):
        raise StepwiseError(f"--ffn {ffn:g} keeps {keep} of the {size} FFN neurons per layer",
                            fix="choose a share that removes some neurons and keeps some")
    cfg = build_config({**PRUNE_DEFAULTS, "task": source.meta()["task"], **options, "init_from": str(run)})

    def cut(job: Prepared) -> None:
        from stepwise.deploy.prune import prune_ffn, taylor_importance
        from stepwise.precision import resolve_precision

        model, batches = job.model, importance_batches(job)
        before = sum(p.numel() for p in model.parameters())
        scores = taylor_importance(model, model.encoder, batches,
                                   lambda m, batch: job.task.loss(m(**batch), batch, 0.0),
                                   resolve_precision(cfg.precision))
        model.encoder = prune_ffn(model.encoder, scores, keep)
        job.notes["prune"] = {"from": str(run), "ffn": ffn, "intermediate_size": [size, keep],
                              "parameters": [before, sum(p.numel() for p in model.parameters())],
                              "importance": f"taylor, {len(batches)} training batches"}

    return run_recipe(cfg, objective="supervised", callbacks=callbacks, transform=cut)


def importance_batches(job: Prepared) -> list[dict[str, Any]]:
    """A seeded sample of training examples as padded batches, first-step inputs for a refiner."""
    from stepwise.data.batching import collate
    from stepwise.refine.policy import first_step

    cfg, task, train = job.config, job.task, job.data["train"]
    sample = random.Random(cfg.seed).sample(train, min(len(train), IMPORTANCE_BATCHES * cfg.batch_size))
    features = first_step(task, task.encode(job.tokenizer, sample, cfg.max_length), job.model.input_names)
    size, pad_id = cfg.batch_size, job.tokenizer.pad_token_id
    return [collate(features[i:i + size], pad_id) for i in range(0, len(features), size)]
