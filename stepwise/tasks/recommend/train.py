"""Recipe: train two towers on user histories and item texts; choose the collaborative step on dev; write a run.

    validate (interactions, items, options, --out)                            nothing written yet
    → split leave-last-out by timestamp (each user's last item is test, the one before dev; --cold-items of
      the catalogue removed from training) → load the encoder, count free cores → begin the run directory
    → training examples: each user's --examples-per-user most recent history prefixes → next item
    → fit (the shared loop, sampled softmax with logQ correction, dev NDCG@10 over the full catalogue)
    → with the best weights: item vectors, dev and test scores; the collaborative step's weight and decay
      chosen on dev → the item index and the serving files → reports → results.json

Every metric ranks the whole catalogue with the user's earlier items excluded (stepwise.tasks.recommend.metrics).
"cold" rows are the users whose test item no training history holds (the text alone can score it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stepwise.config import refuse_unused, save_config, with_defaults
from stepwise.errors import StepwiseError
from stepwise.files import atomic_write, atomic_write_json, atomic_write_text
from stepwise.layout import CONFIG, CURVES, METRICS, REPORT_JSON, REPORT_TXT, RESULTS
from stepwise.rundir import Run, RunDir
from stepwise.tasks.retrieve.train import NOT_FOR_RETRIEVAL

if TYPE_CHECKING:
    from stepwise.config import TrainConfig

NOT_FOR_RECOMMEND = (*NOT_FOR_RETRIEVAL, "dev", "test", "pool", "hard_negatives", "retrieval_temperature")

#: where the shared defaults (chosen on classification) are wrong for two towers on an interaction log:
#: MiniLM on 2 cores trains ~10-20 histories/s at 64 tokens (the newest ~6 MovieLens titles), so the
#: budget is tokens and examples, not epochs; see bench/NOTES.md, recommendation
RECOMMEND_DEFAULTS = {"lr": 1e-4, "epochs": 1.0, "max_length": 64, "batch_size": 64}


def _check(cfg: TrainConfig) -> None:
    from stepwise.recipes.finetune import _check_task_options
    from stepwise.tasks import task_class

    split = " (dev and test are each user's last interactions)"
    refuse_unused(cfg, NOT_FOR_RECOMMEND, "recommender", why={"dev": split, "test": split})
    if not cfg.items:
        raise StepwiseError("--items is required for --task recommend (the item texts)",
                            fix="e.g. stepwise train --task recommend --interactions ratings.tsv --items items.tsv")
    _check_task_options(cfg, task_class(cfg.task), "supervised")
    if cfg.metric is not None and cfg.metric not in task_class(cfg.task).metric_names:
        raise StepwiseError(f"--metric {cfg.metric} is not a recommendation metric",
                            fix=f"use one of {', '.join(task_class(cfg.task).metric_names)}")


class Data:
    """The split as catalogue rows: what training, evaluation and the serving files need."""

    def __init__(self, cfg: TrainConfig, split: Any = None) -> None:
        """`split`: a Split made by the caller from the same files (the bench ranks every model on one)."""
        from stepwise.tasks.recommend.data import read_interactions, read_items, split_leave_last_out

        self.texts_by_id = read_items(cfg.items)
        interactions, self.skipped = read_interactions(cfg.train, min_rating=cfg.min_rating, items=self.texts_by_id)
        if split is None:
            split = split_leave_last_out(interactions, self.texts_by_id, cold_fraction=cfg.cold_items, seed=cfg.seed)
        self.split = split
        self.skipped = {**self.skipped, **{k: v for k, v in split.skipped.items() if k not in self.skipped}}
        self.items = split.items
        self.texts = [self.texts_by_id[i] for i in self.items]
        self.row = {item: j for j, item in enumerate(self.items)}
        trained = sorted({self.row[i] for h in split.train.values() for i in h})
        if len(trained) < 2:
            raise StepwiseError("training holds fewer than two distinct items: nothing to contrast", path=cfg.train,
                                fix="give more interactions (each user's last two are held out for dev and test)")
        # id-table row of each catalogue row: 1.. for items training saw, 0 (none) for cold ones
        self.id_rows = [0] * len(self.items)
        for n, j in enumerate(trained, start=1):
            self.id_rows[j] = n
        self.n_ids = len(trained)
        by_time: dict[str, list[tuple[float, int, str]]] = {}
        for n, r in enumerate(interactions):
            by_time.setdefault(r.user, []).append((r.timestamp, n, r.item))
        self.users = {u: [i for _, _, i in sorted(rows)] for u, rows in by_time.items()}  # everything known
        if not split.dev:
            raise StepwiseError("no user has three interactions: no dev target to choose the model on",
                                path=cfg.train, fix="give users at least three interactions")

    def rows(self, items: list[str]) -> list[int]:
        return [self.row[i] for i in items]

    def evaluation(self, split: str) -> tuple[list[str], list[list[int]], list[int], list[list[int]]]:
        """(users, histories, targets, excluded) of the users with a target in that split."""
        targets = getattr(self.split, split)
        users = [u for u in targets]
        return (users, [self.rows(self.split.history(u, split)) for u in users], [self.row[targets[u]] for u in users],
                [self.rows(sorted(self.split.seen(u, split))) for u in users])

    def training(self, per_user: int) -> tuple[list[list[int]], list[int]]:
        """(histories, targets): each user's most recent `per_user` prefixes of their training items."""
        histories, targets = [], []
        for items in self.split.train.values():
            rows = self.rows(items)
            for t in range(max(1, len(rows) - per_user), len(rows)):
                histories.append(rows[:t])
                targets.append(rows[t])
        return histories, targets


class TowerScores:
    """Score matrices of the current two-tower weights: items embedded once per call, users per split."""

    def __init__(self, model: Any, tokenizer: Any, data: Data, cfg: TrainConfig, precision: str) -> None:
        from stepwise.backends.torch import TorchBackend
        from stepwise.tasks.recommend.towers import ITEM_TOKENS
        from stepwise.tasks.retrieve.embedder import Embedder

        self.model, self.data, self.cfg = model, data, cfg
        backend = TorchBackend(model, precision)
        self.users = Embedder(backend, tokenizer, max_length=cfg.max_length, batch_size=cfg.eval_batch_size)
        self.item_embedder = Embedder(backend, tokenizer, max_length=ITEM_TOKENS, batch_size=cfg.eval_batch_size)
        self.item_ids = self.item_embedder.tokenize(data.texts)

    def item_vectors(self) -> np.ndarray:
        from stepwise.tasks.recommend.recommender import item_vectors

        ids = self.model.id_vectors()
        return item_vectors(self.item_embedder, self.item_ids, self.data.id_rows,
                            None if ids is None else ids.numpy())

    def scores(self, histories: list[list[int]], items: np.ndarray) -> np.ndarray:
        from stepwise.tasks.recommend.recommender import user_texts

        return self.users.embed(user_texts(histories, self.data.texts, self.cfg.history_items)) @ items.T


class DevEvaluator:
    """Dev NDCG@10 for the loop; keeps the last evaluation's item vectors and dev scores, so the best
    evaluation's need not be computed again after training (`kept` is set when its weights are saved)."""

    def __init__(self, scorer: TowerScores, data: Data) -> None:
        self.scorer = scorer
        _, self.histories, self.targets, self.exclude = data.evaluation("dev")
        self.last: tuple[np.ndarray, np.ndarray] | None = None
        self.kept: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self) -> dict[str, Any]:
        from stepwise.tasks.recommend.metrics import rank_metrics

        items = self.scorer.item_vectors()
        scores = self.scorer.scores(self.histories, items)
        self.last = (items, scores)
        return rank_metrics(scores, self.targets, self.exclude)


def train_recommender(cfg: TrainConfig, *, callbacks: tuple = (), split: Any = None,
                      matrices: dict[str, np.ndarray] | None = None) -> Run:
    """`split`: the caller's Split of the same files; `matrices`, when given, receives the test users' score
    matrices of each step (the bench scores them with its own evaluation)."""
    from stepwise.threads import ThreadGovernor

    cfg, defaults = with_defaults(cfg, RECOMMEND_DEFAULTS)
    run = RunDir(cfg.out)
    threads = ThreadGovernor(forced=cfg.threads)
    threads.begin()
    run.check_writable()
    _check(cfg)
    data = Data(cfg, split)
    from stepwise.modeldir import check_encoder_dir, default_model_dir

    check_encoder_dir(cfg.model or default_model_dir())

    from stepwise.model import load_tokenizer
    from stepwise.scope import seeded
    from stepwise.tasks.recommend.towers import TwoTower
    from stepwise.tasks.retrieve.model import BiEncoder

    started = time.perf_counter()
    with seeded(cfg.seed):
        tokenizer = load_tokenizer(cfg.model)
        bi = BiEncoder.from_encoder(cfg.model, cfg.dropout)
        from stepwise.recipes.finetune import fit_length

        notes: dict[str, Any] = {"recommend_defaults": defaults}
        cfg = fit_length(cfg, bi.encoder, notes)
        model = TwoTower(bi, data.n_ids if cfg.item_ids else 0)
        threads.start()
        resuming = run.begin(resume=cfg.resume, overwrite=cfg.overwrite)
        paths = {k: str(Path(v).resolve()) for k in ("train", "items") if (v := getattr(cfg, k))}
        cfg = cfg.model_copy(update={**paths, "embedding_update": "dense"})  # the item tower's rows train too
        save_config(cfg, run / CONFIG)
        return _train(cfg, run, model, tokenizer, data, threads, resuming, callbacks, started, notes, matrices)


def save_model(model: Any, tokenizer: Any, directory: Path, meta: dict[str, Any]) -> None:
    """The encoder as a bi-encoder (so `stepwise index` and the retrieval loader read it), marked a
    recommender, and the id vectors beside it."""
    from stepwise.modeldir import META_FILE
    from stepwise.tasks.recommend.recommender import IDS, SUBDIR

    model.bi.save_pretrained(directory, tokenizer, meta)
    saved = json.loads((directory / META_FILE).read_text())
    atomic_write_json(directory / META_FILE, {**saved, "task": "recommend"})
    ids = model.id_vectors()
    if ids is not None:
        atomic_write(directory / SUBDIR / IDS, lambda tmp: _save_with(np.save, tmp, ids.numpy()))


def _save_with(save: Any, path: str, value: Any) -> None:
    """numpy's savers add their extension to a bare path (a temp file's name has none): give them the file."""
    with open(path, "wb") as fh:
        save(fh, value)


def load_model(directory: Path) -> Any:
    from stepwise.tasks.recommend.recommender import IDS, SUBDIR
    from stepwise.tasks.recommend.towers import ID_GAIN, TwoTower
    from stepwise.tasks.retrieve.model import BiEncoder

    bi, _, _ = BiEncoder.from_pretrained(directory)
    path = directory / SUBDIR / IDS
    if not path.is_file():
        return TwoTower(bi)
    import torch

    ids = np.load(path)
    model = TwoTower(bi, ids.shape[0] - 1)
    with torch.no_grad():
        model.ids.weight.copy_(torch.from_numpy(ids / ID_GAIN))
    model.eval()
    return model


def _train(cfg: TrainConfig, run: RunDir, model: Any, tokenizer: Any, data: Data, threads: Any, resuming: bool,
           callbacks: tuple, started: float, notes: dict[str, Any], matrices: dict | None) -> Run:
    from stepwise.precision import measure_precision
    from stepwise.tasks import get_task
    from stepwise.tasks.recommend.objective import SampledSoftmax, features
    from stepwise.tasks.recommend.recommender import user_texts
    from stepwise.tasks.recommend.towers import ITEM_TOKENS
    from stepwise.training.loop import fit

    task = get_task("recommend", [])
    histories, targets = data.training(cfg.examples_per_user)
    history_ids = tokenizer(user_texts(histories, data.texts, cfg.history_items), truncation=True,
                            max_length=cfg.max_length)["input_ids"]
    item_ids = tokenizer(data.texts, truncation=True, max_length=ITEM_TOKENS)["input_ids"]
    recent_rows = [list(reversed(h[-cfg.history_items:])) for h in histories]
    lengths = sorted(len(h) for h in history_ids)
    precision, probe = measure_precision(cfg.precision, model, batch=cfg.batch_size,
                                         length=lengths[len(lengths) // 2], train=True)
    scorer = TowerScores(model, tokenizer, data, cfg, precision)
    counts = np.bincount(targets, minlength=len(data.items)).astype(np.float64)
    objective = SampledSoftmax(item_ids, data.id_rows, counts, tokenizer.pad_token_id, precision,
                               sampled=cfg.sampled_negatives, batch_size=cfg.batch_size, seed=cfg.seed)
    meta = {"max_length": cfg.max_length, "eval_batch_size": cfg.eval_batch_size, "precision": cfg.precision}
    evaluator = DevEvaluator(scorer, data)

    def save_best() -> None:
        save_model(model, tokenizer, run.model_dir, meta)
        evaluator.kept = evaluator.last

    state = fit(model, task, features(history_ids, targets, recent_rows, item_ids), evaluator, cfg, run.path,
                pad_id=tokenizer.pad_token_id, precision=precision, save_best=save_best, callbacks=callbacks,
                objective=objective, resume=resuming, threads=threads)
    best = load_model(run.model_dir)
    final = TowerScores(best, tokenizer, data, cfg, precision)
    steps, fusion, vectors, rates = _score(final, data, evaluator.kept, matrices)
    _write_serving(run, best, data, cfg, fusion, vectors)
    notes = {**notes, "examples": {"train": len(targets), "per_user": cfg.examples_per_user,
                                   "users": len(data.split.train)},
             "data": {"interactions": sum(len(v) for v in data.users.values()), "users": len(data.users),
                      "items": len(data.items), "cold_items": len(data.split.cold_items), "skipped": data.skipped},
             "inference": rates, "second_step": {"kind": "item-item co-occurrence, fused by standardised score",
                                                 **fusion}}
    return _write(run, cfg, state, steps, precision, probe, threads, started, notes)


def _score(scorer: TowerScores, data: Data, kept: tuple[np.ndarray, np.ndarray] | None,
           matrices: dict | None) -> tuple[dict, dict, np.ndarray, dict]:
    """Dev and test metrics of each step (the two towers, the collaborative score alone, the fusion), and the
    fusion chosen on dev. `kept`: the best evaluation's item vectors and dev scores (a resumed run has none)."""
    from stepwise.tasks.recommend.cooccur import (
        DECAYS,
        WEIGHTS,
        collaborative_scores,
        fuse,
        impute_cold,
        item_similarity,
        known_items,
    )
    from stepwise.tasks.recommend.metrics import rank_metrics

    tick = time.perf_counter()
    vectors = scorer.item_vectors() if kept is None else kept[0]
    item_seconds = time.perf_counter() - tick
    sim = impute_cold(item_similarity([data.rows(h) for h in data.split.train.values()], len(data.items)), vectors)
    cold = {u for u, t in data.split.test.items() if data.id_rows[data.row[t]] == 0}
    out: dict[str, dict[str, Any]] = {"two_tower": {}, "collaborative": {}, "fused": {}}
    text, collab, evals = {}, {}, {}
    rates = {} if kept is not None else {"items_per_s": round(len(data.items) / max(item_seconds, 1e-9), 1)}
    for split in ("dev", "test"):
        users, histories, targets, exclude = data.evaluation(split)
        evals[split] = (users, histories, targets, exclude)
        if split == "dev" and kept is not None:  # the best evaluation's, with the same weights
            text[split] = kept[1]
            continue
        tick = time.perf_counter()
        text[split] = scorer.scores(histories, vectors)
        rates[f"{split}_users_per_s"] = round(len(users) / max(time.perf_counter() - tick, 1e-9), 1)
    best = (-1.0, 0.0, 1.0)
    for decay in DECAYS:
        collab[decay] = collaborative_scores(evals["dev"][1], sim, decay)
        for weight in WEIGHTS:
            fused = fuse(text["dev"], collab[decay], weight, known_items(sim))
            ndcg = rank_metrics(fused, evals["dev"][2], evals["dev"][3])["ndcg@10"]
            if ndcg > best[0] + 1e-12:
                best = (ndcg, weight, decay)
    _, weight, decay = best
    fusion = {"weight": weight, "decay": decay, "chosen_on": "dev ndcg@10", "weights_tried": list(WEIGHTS),
              "decays_tried": list(DECAYS)}
    # test is scored as the ID anchors are fitted: on each user's history before the test item (dev item included)
    sims = {"dev": sim, "test": impute_cold(item_similarity(evals["test"][1], len(data.items)), vectors)}
    data.similarity = sims["test"]
    for split in ("dev", "test"):
        users, histories, targets, exclude = evals[split]
        co = collaborative_scores(histories, sims[split], decay)
        step_scores = {"two_tower": text[split], "collaborative": co,
                       "fused": fuse(text[split], co, weight, known_items(sims[split]))}
        rows = [n for n, u in enumerate(users) if u in cold] if split == "test" else []
        if split == "test" and matrices is not None:
            matrices.update(step_scores)
        for step, scores in step_scores.items():
            out[step][split] = {**rank_metrics(scores, targets, exclude), "n": len(users)}
            if rows:
                out[step][f"{split}_cold"] = {**rank_metrics(scores[rows], [targets[n] for n in rows],
                                                             [exclude[n] for n in rows]), "n": len(rows)}
    return out, fusion, vectors, rates


def _write_serving(run: RunDir, model: Any, data: Data, cfg: TrainConfig, fusion: dict, vectors: np.ndarray) -> None:
    """The item index (a `stepwise index` Index), the users, the co-occurrence table and the settings."""
    import scipy.sparse as sp

    from stepwise.modeldir import read_meta
    from stepwise.tasks.recommend.recommender import ITEMS, SETTINGS, SIMILARITY, SUBDIR, USERS
    from stepwise.tasks.recommend.towers import ITEM_TOKENS
    from stepwise.tasks.retrieve.data import Passage
    from stepwise.tasks.retrieve.index import Index

    where = run.model_dir / SUBDIR
    meta = read_meta(run.model_dir)
    index = Index.build(where / ITEMS, [Passage(i, t) for i, t in zip(data.items, data.texts)], vectors,
                        {"fingerprint": meta["fingerprint"], "max_length": ITEM_TOKENS}, str(run.path),
                        str(run.path.resolve()))
    index.save()
    atomic_write_text(where / USERS, "".join(json.dumps({"user": u, "items": items}) + "\n"
                                             for u, items in data.users.items()))
    atomic_write(where / SIMILARITY, lambda tmp: _save_with(sp.save_npz, tmp, data.similarity))
    atomic_write_json(where / SETTINGS, {"history_items": cfg.history_items, "max_length": cfg.max_length,
                                         "item_max_length": ITEM_TOKENS, "item_ids": cfg.item_ids,
                                         "fusion": {"weight": fusion["weight"], "decay": fusion["decay"]}})


def _write(run: RunDir, cfg: TrainConfig, state: Any, steps: dict, precision: str, probe: dict, threads: Any,
           started: float, notes: dict) -> Run:
    from stepwise.report import plot_curves
    from stepwise.report.write import fact_line

    metric = cfg.dev_metric("ndcg@10")
    train = {**state.summary(metric, precision, started), "examples": notes["examples"]["train"],
             "precision_choice": probe, "threads": threads.report()}
    final = steps["fused"]
    results = {"task": "recommend", "train": train, **notes, "dev": final["dev"], "test": final["test"],
               **({"test_cold": final["test_cold"]} if "test_cold" in final else {}), "steps": steps}
    text = [f"stepwise recommend report — {run.path}\n",
            f"{notes['data']['users']} users, {notes['data']['items']} items ({notes['data']['cold_items']} held out "
            f"of training), ranked over the whole catalogue, earlier items excluded\n"]
    names = {"two_tower": "two towers", "collaborative": "co-occurrence alone",
             "fused": f"fused (weight {notes['second_step']['weight']}, decay {notes['second_step']['decay']})"}
    for key in ("dev", "test", "test_cold"):
        if key not in final:
            continue
        text.append(f"== {key} ({final[key]['n']} users) ==")
        for step, label in names.items():
            m = steps[step][key]
            text.append(f"{label:<34} NDCG@10 {100 * m['ndcg@10']:5.2f}  HR@10 {100 * m['hr@10']:5.2f}  "
                        f"MRR {100 * m['mrr']:5.2f}  coverage@10 {100 * m['coverage@10']:5.1f}")
        text.append("")
    text.append("== training ==\n" + "\n".join(f"{k}: {fact_line(k, v)}" for k, v in train.items()) + "\n")
    atomic_write_text(run / REPORT_TXT, "\n".join(text))
    atomic_write_json(run / REPORT_JSON, results)
    plot_curves(run / METRICS, run / CURVES, metric)
    atomic_write_json(run / RESULTS, results)
    return Run(Path(run.path), results)
