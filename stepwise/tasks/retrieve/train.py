"""Recipe: train the encoder as a bi-encoder retriever on (query, passage) pairs; write a run directory.

    validate (pairs, pool, options, --out)                                   nothing written yet
    → load the encoder, count free cores → begin the run directory (fresh, resumed, started over)
    → tokenise queries and the pool → time fp32/bf16 → [mine hard negatives with the starting model]
    → fit (the shared loop, contrastive objective, dev ranking metric for early stopping)
    → score dev and test against the pool with the best weights → reports → results.json

Dev and test queries are ranked among every passage of the pool (`--pool`, default: every distinct
passage of the given splits), so a test question's answer competes with all the others, as in service.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stepwise.config import refuse_unused, save_config, with_defaults
from stepwise.errors import StepwiseError
from stepwise.files import atomic_write_json, atomic_write_text
from stepwise.layout import CONFIG, CURVES, METRICS, REPORT_JSON, REPORT_TXT, RESULTS
from stepwise.rundir import Run, RunDir
from stepwise.tasks.retrieve.data import Pair, Passage, check_in_pool, pool_of, read_pairs, read_pool, resolve

if TYPE_CHECKING:
    from stepwise.config import TrainConfig

#: options of the classifier/tagger loop that mean nothing for two towers
NOT_FOR_RETRIEVAL = ("reward", "refine_steps", "augment", "label_smoothing", "init_from",
                     "pair_column", "label_column", "train_target", "dev_target", "test_target")


#: where the shared defaults (chosen on classification) are wrong for a bi-encoder on a few hundred pairs:
#: on the FAQ benchmark, lr 1e-4 peaked on dev after one epoch and then overfit; 7e-5 for 2 epochs with 5
#: mined negatives per query gave +4.1 MRR@10 over the shared defaults (seed 0; bench/NOTES.md, retrieval)
RETRIEVAL_DEFAULTS = {"lr": 7e-5, "epochs": 2.0, "hard_negatives": 5}


def _check(cfg: TrainConfig) -> None:
    from stepwise.recipes.finetune import _check_task_options
    from stepwise.tasks import task_class

    refuse_unused(cfg, NOT_FOR_RETRIEVAL, "retriever")
    _check_task_options(cfg, task_class(cfg.task), "supervised")
    if cfg.metric is not None and cfg.metric not in task_class(cfg.task).metric_names:
        raise StepwiseError(f"--metric {cfg.metric} is not a retrieval metric",
                            fix=f"use one of {', '.join(task_class(cfg.task).metric_names)}")


def _split(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """A seeded 7:2:1 split of one pair file, by passage: a passage's queries stay in one split."""
    passages = list(dict.fromkeys(p.passage.id for p in pairs))
    random.Random(seed).shuffle(passages)
    n = len(passages)
    n_dev, n_test = round(0.2 * n), round(0.1 * n)
    part = {pid: 1 if i < n_dev else 2 if i < n_dev + n_test else 0 for i, pid in enumerate(passages)}
    splits: tuple[list[Pair], list[Pair], list[Pair]] = ([], [], [])
    for pair in pairs:
        splits[part[pair.passage.id]].append(pair)
    return splits


def read_data(cfg: TrainConfig) -> tuple[dict[str, list[Pair]], list[Passage], bool]:
    """The splits, the pool, and whether the split was made here; every check before anything is written."""
    data = {"train": read_pairs(cfg.train)}
    for split in ("dev", "test"):
        if getattr(cfg, split):
            data[split] = read_pairs(getattr(cfg, split))
    split_made = "dev" not in data
    if split_made:
        if len({p.passage.id for p in data["train"]}) < 10:
            raise StepwiseError("too few passages to split off dev and test (fewer than 10)", path=cfg.train,
                                fix="give --dev (and --test) files, or more pairs")
        data["train"], data["dev"], test = _split(data["train"], cfg.seed)
        if "test" not in data:
            data["test"] = test
    if cfg.pool:
        pool = read_pool(cfg.pool)
        for split, pairs in data.items():
            check_in_pool(pairs, pool, getattr(cfg, split) or cfg.train, cfg.pool)
    else:
        pool = pool_of(data.values())
    if len(pool) < 2:
        raise StepwiseError("the pool holds one passage: nothing to rank", path=cfg.pool or cfg.train,
                            fix="give pairs with at least two different passages")
    if len({p.passage.id for p in data["train"]}) < 2:
        raise StepwiseError("every training pair has the same passage: in-batch negatives need two or more",
                            path=cfg.train, fix="give pairs with different passages")
    return data, pool, split_made


class RankEvaluator:
    """Dev ranking metrics with the current weights: embed the pool and the queries, rank, score."""

    def __init__(self, model: Any, tokenizer: Any, pool_ids: list[list[int]], queries: list[list[int]],
                 gold: list[int], precision: str, batch_size: int) -> None:
        from stepwise.backends.torch import TorchBackend
        from stepwise.tasks.retrieve.embedder import Embedder

        self.embedder = Embedder(TorchBackend(model, precision), tokenizer, batch_size=batch_size)
        self.pool_ids, self.queries, self.gold = pool_ids, queries, gold

    def __call__(self) -> dict[str, Any]:
        return self.rank(self.queries, self.gold, self.embedder.embed_ids(self.pool_ids))

    def rank(self, queries: list[list[int]], gold: list[int], pool_vectors: np.ndarray) -> dict[str, Any]:
        """The ranking metrics of these queries against an embedded pool."""
        from stepwise.tasks.retrieve.metrics import ranking_metrics, ranks

        return ranking_metrics(ranks(self.embedder.embed_ids(queries) @ pool_vectors.T, gold))


def train_retriever(cfg: TrainConfig, *, callbacks: tuple = ()) -> Run:
    from stepwise.threads import ThreadGovernor

    cfg, defaults = with_defaults(cfg, RETRIEVAL_DEFAULTS)
    run = RunDir(cfg.out)
    threads = ThreadGovernor(forced=cfg.threads)
    threads.begin()
    run.check_writable()
    _check(cfg)
    data, pool, split_made = read_data(cfg)
    from stepwise.modeldir import check_encoder_dir, default_model_dir

    check_encoder_dir(cfg.model or default_model_dir())

    from stepwise.model import load_tokenizer
    from stepwise.scope import seeded
    from stepwise.tasks.retrieve.model import BiEncoder

    started = time.perf_counter()
    with seeded(cfg.seed):
        tokenizer = load_tokenizer(cfg.model)
        scale = 1.0 / cfg.retrieval_temperature if cfg.retrieval_temperature else 20.0
        model = BiEncoder.from_encoder(cfg.model, cfg.dropout, scale,
                                       learn_scale=cfg.retrieval_temperature is None)
        from stepwise.recipes.finetune import fit_length

        notes: dict[str, Any] = {"retrieval_defaults": defaults}
        cfg = fit_length(cfg, model.encoder, notes)
        threads.start()
        resuming = run.begin(resume=cfg.resume, overwrite=cfg.overwrite)
        paths = {k: str(Path(v).resolve()) for k in ("train", "dev", "test", "pool") if (v := getattr(cfg, k))}
        cfg = cfg.model_copy(update={**paths, "embedding_update": "dense"})  # both towers' rows train
        save_config(cfg, run / CONFIG)
        if split_made:
            for split, pairs in data.items():
                atomic_write_text(run.split_file(split), "".join(
                    json.dumps({"query": p.query, "passage": p.passage.text, "id": p.passage.id}) + "\n"
                    for p in pairs))
        return _train(cfg, run, model, tokenizer, data, pool, threads, resuming, callbacks, started, notes)


def _train(cfg: TrainConfig, run: RunDir, model: Any, tokenizer: Any, data: dict[str, list[Pair]],
           pool: list[Passage], threads: Any, resuming: bool, callbacks: tuple, started: float,
           notes: dict[str, Any]) -> Run:
    from stepwise.precision import measure_precision
    from stepwise.tasks import get_task
    from stepwise.tasks.retrieve.objective import Contrastive, features, mine_negatives
    from stepwise.training.loop import fit

    task = get_task("retrieve", [])

    def tokenize(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]

    pool_ids = tokenize([p.text for p in pool])
    queries = {split: tokenize([p.query for p in pairs]) for split, pairs in data.items()}
    gold = {split: resolve(pairs, pool) for split, pairs in data.items()}
    lengths = sorted(len(q) + len(pool_ids[g]) for q, g in zip(queries["train"], gold["train"]))
    precision, probe = measure_precision(cfg.precision, model, batch=cfg.batch_size,
                                         length=lengths[len(lengths) // 2] // 2, train=True)
    evaluate = RankEvaluator(model, tokenizer, pool_ids, queries["dev"], gold["dev"], precision, cfg.eval_batch_size)
    negatives, mining = None, None
    if cfg.hard_negatives:  # with the starting model, before the first step
        tick = time.perf_counter()
        embed = evaluate.embedder.embed_ids
        negatives = mine_negatives(embed(queries["train"]), embed(pool_ids), gold["train"],
                                   min(cfg.hard_negatives, len(pool) - 1))
        mining = {"k": cfg.hard_negatives, "with": "the starting model",
                  "seconds": round(time.perf_counter() - tick, 2)}
    train_features = features(queries["train"], gold["train"], pool_ids, negatives)
    meta = {"max_length": cfg.max_length, "eval_batch_size": cfg.eval_batch_size, "precision": cfg.precision}
    objective = Contrastive(pool_ids, tokenizer.pad_token_id, precision, seed=cfg.seed)
    state = fit(model, task, train_features, evaluate, cfg, run.path, pad_id=tokenizer.pad_token_id,
                precision=precision, save_best=lambda: model.save_pretrained(run.model_dir, tokenizer, meta),
                callbacks=callbacks, objective=objective, resume=resuming, threads=threads)

    from stepwise.tasks.retrieve.model import BiEncoder

    best, _, _ = BiEncoder.from_pretrained(run.model_dir)
    scorer = RankEvaluator(best, tokenizer, pool_ids, [], [], precision, cfg.eval_batch_size)
    tick = time.perf_counter()
    pool_vectors = scorer.embedder.embed_ids(pool_ids)  # once, for every split: as an index holds it
    pool_seconds = time.perf_counter() - tick
    scores, rates = {}, {}
    for split in ("dev", "test"):
        if split in data:
            tick = time.perf_counter()
            scores[split] = scorer.rank(queries[split], gold[split], pool_vectors)
            rates[split] = len(data[split]) / (time.perf_counter() - tick)
    notes["inference"] = {"pool_passages_per_s": round(len(pool) / max(pool_seconds, 1e-9), 2),
                          **{f"{s}_queries_per_s": round(r, 2) for s, r in rates.items()}}
    notes = {**notes, "pool": {"passages": len(pool), "source": cfg.pool or "the passages of the given splits"},
             **({"hard_negatives": mining} if mining else {})}
    return _write(run, cfg, state, scores, precision, probe, threads, started, notes, len(data["train"]))


def _write(run: RunDir, cfg: TrainConfig, state: Any, scores: dict, precision: str, probe: dict,
           threads: Any, started: float, notes: dict, examples: int) -> Run:
    from stepwise.report import plot_curves
    from stepwise.tasks.retrieve.metrics import report_text

    metric = cfg.dev_metric("mrr@10")
    train = {**state.summary(metric, precision, started), "examples": examples, "precision_choice": probe,
             "threads": threads.report()}
    results = {"task": "retrieve", "train": train, **notes, **scores}
    from stepwise.report.write import fact_line

    text = [f"stepwise retrieve report — {run.path}\n"]
    for split, metrics in scores.items():
        text.append(f"== {split} ({metrics['n']} queries, ranked among {notes['pool']['passages']} passages) ==\n"
                    + report_text(metrics))
    text.append("== training ==\n" + "\n".join(f"{k}: {fact_line(k, v)}" for k, v in train.items()) + "\n")
    atomic_write_text(run / REPORT_TXT, "\n".join(text))
    atomic_write_json(run / REPORT_JSON, results)
    plot_curves(run / METRICS, run / CURVES, metric)
    atomic_write_json(run / RESULTS, results)
    return Run(Path(run.path), results)
