"""Answer queries from an index in steps: retrieve → rerank (optional) → answer or abstain.

Step 1 ranks every passage by cosine similarity with the bi-encoder (top `rerank_k` kept); step 2, with a
reranker (a text-pair classifier trained on (query, passage, relevant?) with negatives mined from the
bi-encoder's own top-k: `stepwise mine`), rescores those candidates reading query and passage together;
step 3 abstains when the final top score is below the threshold calibrated on dev for the precision
the user names. An intent classifier, when given, adds the query's category and its own in-scope flag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stepwise.errors import StepwiseError
from stepwise.files import atomic_write_json
from stepwise.tasks.retrieve.index import CALIBRATION_FILE, Index

RELEVANT = ("relevant", "1", "true", "yes", "pos", "positive")
CALIBRATION_FORMAT = 1


def relevant_column(labels: list[str], path: str | Path) -> int:
    """Which of a reranker's labels means "relevant"."""
    for i, label in enumerate(labels):
        if str(label).lower() in RELEVANT:
            return i
    raise StepwiseError(f"the reranker's labels {labels} name no relevant class", path=path,
                        fix="train it on `stepwise mine` output (labels relevant / other)")


@dataclass
class Answerer:
    index: Index
    embedder: Any
    reranker: Any = None
    intent: Any = None
    k: int = 5
    rerank_k: int = 20
    calibration: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=lambda: {"retrieve": 0.0, "rerank": 0.0, "intent": 0.0})

    @property
    def scorer(self) -> dict[str, Any]:
        """What the abstention score comes from: a threshold is only valid for the scorer it was set on."""
        if self.reranker is None:
            return {"kind": "retrieval", "fingerprint": self.index.fingerprint}
        return {"kind": "rerank", "run": self.reranker.source}

    def candidates(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, passage rows) after retrieval and, with a reranker, reranking; best first."""
        tick = time.perf_counter()
        vectors = self.embedder.embed(queries)
        depth = max(self.k, self.rerank_k if self.reranker is not None else self.k)
        scores, rows = self.index.search(vectors, depth)
        self.timings["retrieve"] += time.perf_counter() - tick
        if self.reranker is None:
            return scores, rows
        tick = time.perf_counter()
        from stepwise.example import Example

        pairs = [Example(q, None, i, self.index.passages[r].text) for i, q in enumerate(queries) for r in rows[i]]
        probs = np.asarray(self.reranker.predictor.predict_proba(pairs))[:, self.reranker.column]
        probs = probs.reshape(rows.shape)
        order = np.argsort(-probs, axis=1, kind="stable")
        self.timings["rerank"] += time.perf_counter() - tick
        return np.take_along_axis(probs, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def answer(self, queries: list[str]) -> list[dict[str, Any]]:
        """One record per query, in order; a blank query is answered with nothing (abstain, reason empty)."""
        keep = [i for i, q in enumerate(queries) if q.strip()]
        records: list[dict[str, Any]] = [{"query": q, "answers": [], "abstain": True, "reason": "empty query"}
                                         for q in queries]
        if not keep:
            return records
        asked = [queries[i] for i in keep]
        scores, rows = self.candidates(asked)
        intents = self._intents(asked)
        threshold = self.calibration["threshold"] if self.calibration else None
        for j, i in enumerate(keep):
            answers = [{"id": self.index.passages[r].id, "text": self.index.passages[r].text,
                        "score": round(float(s), 4),
                        **({"category": c} if (c := self.index.passages[r].category) else {})}
                       for s, r in zip(scores[j][:self.k], rows[j][:self.k])]
            top = float(scores[j][0])
            record = {"query": queries[i], "answers": answers, "abstain": threshold is not None and top < threshold}
            if record["abstain"]:
                record["reason"] = (f"out of scope: top score {top:.3f} is below the calibrated threshold "
                                    f"{threshold:.3f} (abstention precision {self.calibration['target_precision']} "
                                    "on dev)")
            if intents is not None:
                record["intent"] = intents[j]
            records[i] = record
        return records

    def _intents(self, queries: list[str]) -> list[dict[str, Any]] | None:
        if self.intent is None:
            return None
        tick = time.perf_counter()
        probs = np.asarray(self.intent.predictor.predict_proba(queries))
        self.timings["intent"] += time.perf_counter() - tick
        threshold = (self.calibration or {}).get("intent", {}).get("threshold")
        labels = self.intent.predictor.labels
        out = []
        for row in probs:
            best = int(row.argmax())
            item = {"label": labels[best], "prob": round(float(row[best]), 4)}
            if threshold is not None:
                item["in_scope"] = bool(row[best] >= threshold)
            out.append(item)
        return out


@dataclass
class Scorer:
    """A classifier run used in the answer pipeline (reranker or intent), with where it came from."""

    predictor: Any
    source: str
    column: int = 0


def open_answerer(index_dir: str | Path, *, encoder: str | Path | None = None, rerank: str | Path | None = None,
                  intent: str | Path | None = None, k: int = 5, rerank_k: int = 20, backend: str = "auto",
                  threads: int | None = None, batch_size: int = 64, calibrated: bool = True) -> Answerer:
    """Everything `answer` needs, checked: the index, an encoder of the same model, the optional runs, and
    the stored calibration when it fits this pipeline (`calibrated=False` skips it: calibrating anew)."""
    from stepwise.tasks.retrieve.encoder import load_encoder

    if k < 1 or rerank_k < 1:
        raise StepwiseError("--k and --rerank-k must be at least 1", fix="e.g. --k 5 --rerank-k 20")
    index = Index.load(index_dir)
    source = encoder or index.meta["model"].get("path") or index.meta["model"]["source"]
    embedder, meta = load_encoder(source, backend=backend, threads=threads, batch_size=batch_size)
    index.check_model(meta["fingerprint"], str(source))
    answerer = Answerer(index, embedder, k=k, rerank_k=rerank_k)
    if rerank is not None:
        predictor = _classifier(rerank, "--rerank", threads)
        answerer.reranker = Scorer(predictor, str(Path(rerank).resolve()), relevant_column(predictor.labels, rerank))
    if intent is not None:
        answerer.intent = Scorer(_classifier(intent, "--intent", threads), str(Path(intent).resolve()))
    if calibrated:
        answerer.calibration = read_calibration(index, answerer.scorer)
    return answerer


def _classifier(path: str | Path, flag: str, threads: int | None) -> Any:
    from stepwise.predictor import load_in_process
    from stepwise.rundir import model_meta

    meta = model_meta(path)
    if meta.get("task") != "classify":
        raise StepwiseError(f"{flag} takes a classifier run, not a {meta.get('task')} run", path=path,
                            fix="train it with `stepwise train --task classify`")
    return load_in_process(path, threads=threads)


def read_calibration(index: Index, scorer: dict[str, Any]) -> dict[str, Any] | None:
    """The stored threshold, if it was set for this index and this scorer; else None (never abstain)."""
    from stepwise.modeldir import read_json

    path = index.path / CALIBRATION_FILE
    if not path.is_file():
        return None
    fix = "calibrate again: stepwise answer INDEX --dev DEV --oos-dev OOS [--rerank RUN]"
    calibration = read_json(path, "calibration", fix, required={"index": str, "threshold": (int, float),
                                                                 "scorer": dict}, newest=CALIBRATION_FORMAT)
    if calibration["index"] != index.meta["id"]:
        raise StepwiseError("the calibration was made for another index", path=path, fix=fix)
    if calibration["scorer"] != scorer:
        how = "with --rerank " + calibration["scorer"]["run"] if calibration["scorer"]["kind"] == "rerank" \
            else "without --rerank"
        raise StepwiseError(f"the threshold was calibrated {how}: it does not apply to this pipeline", path=path,
                            fix=f"answer {how}, or {fix}")
    return calibration


def calibrate(answerer: Answerer, dev: list[Any], oos: list[str], target_precision: float,
              source: str) -> dict[str, Any]:
    """Choose where to abstain: the threshold whose abstentions on dev are out-of-scope queries at
    `target_precision` or better, with the most out-of-scope queries caught. Stored with the index.

    `dev`: in-scope pairs whose passages are in the index (by id or text); `oos`: out-of-scope queries.
    """
    from stepwise.tasks.retrieve.data import resolve

    gold = resolve(dev, answerer.index.passages)
    missing = [p for p, g in zip(dev, gold) if g < 0]
    if missing:
        raise StepwiseError("this dev pair's passage is not in the index", path=source, line=missing[0].line,
                            fix="calibrate on pairs whose answers the index holds")
    answerer.calibration = None
    scores_in, rows_in = answerer.candidates([p.query for p in dev])
    scores_out, _ = answerer.candidates(oos)
    s_in, s_out = scores_in[:, 0].astype(float), scores_out[:, 0].astype(float)
    correct = rows_in[:, 0] == np.asarray(gold)
    threshold, chosen = _threshold(s_in, s_out, target_precision)
    auroc = _auroc(s_in, s_out)
    kept = s_in >= threshold
    stats = {"in_scope": len(s_in), "out_of_scope": len(s_out), "auroc": round(auroc, 4),
             "recall@1": round(float(correct.mean()), 4),
             "recall@1_after_abstention": round(float((correct & kept).mean()), 4),
             "in_scope_abstained": round(float((~kept).mean()), 4),
             "oos_recall": round(float((s_out < threshold).mean()), 4), **chosen}
    stats["steps"] = _steps(answerer, dev, gold, stats)
    calibration = {"format": CALIBRATION_FORMAT, "index": answerer.index.meta["id"], "scorer": answerer.scorer,
                   "threshold": float(threshold), "target_precision": target_precision, "dev": stats}
    if answerer.intent is not None:
        calibration["intent"] = _intent_calibration(answerer, dev, oos, target_precision)
    atomic_write_json(answerer.index.path / CALIBRATION_FILE, calibration)
    answerer.calibration = calibration
    return calibration


def _steps(answerer: Answerer, dev: list[Any], gold: list[int], stats: dict[str, Any]) -> list[dict[str, Any]]:
    """What each step of the pipeline gives on dev, as `evaluate --steps` does for refinement: R@1 after
    retrieval, after reranking (with a reranker), and after abstaining (a right answer withheld counts wrong)."""
    steps = []
    if answerer.reranker is not None:
        _, rows = answerer.index.search(answerer.embedder.embed([p.query for p in dev]), 1)
        steps.append({"step": "retrieve", "recall@1": round(float((rows[:, 0] == np.asarray(gold)).mean()), 4)})
    steps.append({"step": "rerank" if answerer.reranker is not None else "retrieve", "recall@1": stats["recall@1"]})
    steps.append({"step": "answer or abstain", "recall@1": stats["recall@1_after_abstention"],
                  "in_scope_abstained": stats["in_scope_abstained"], "oos_recall": stats["oos_recall"]})
    return steps


def _threshold(s_in: np.ndarray, s_out: np.ndarray, target: float) -> tuple[float, dict[str, Any]]:
    """The largest threshold (most out-of-scope caught) whose abstentions are out-of-scope at `target` or
    better. Abstaining below t: precision = oos below t / all below t. None qualifies → never abstain."""
    candidates = np.unique(np.r_[s_in, s_out])
    best, best_precision = -np.inf, None
    for t in candidates[::-1]:  # high to low: the first that qualifies catches the most
        below_out, below_in = int((s_out < t).sum()), int((s_in < t).sum())
        if below_out + below_in == 0:
            continue
        precision = below_out / (below_out + below_in)
        if precision >= target:
            best, best_precision = float(t), precision
            break
    if best_precision is None:
        return -np.inf, {"abstention_precision": None, "note": f"no threshold reaches {target} on dev: never abstains"}
    return best, {"abstention_precision": round(best_precision, 4)}


def _intent_calibration(answerer: Answerer, dev: list[Any], oos: list[str], target: float) -> dict[str, Any]:
    """The intent classifier's max-probability threshold, chosen by the same rule; with its scores.

    Max-probability (MSP) rather than an energy score: the classifier is a softmax head of a few classes
    trained for a handful of epochs; energy needs well-spread logits to pay off, MSP is what its
    probabilities already say, and the same rule as the retriever's keeps the two comparable.
    """
    labels = answerer.intent.predictor.labels
    p_in = np.asarray(answerer.intent.predictor.predict_proba([p.query for p in dev]))
    p_out = np.asarray(answerer.intent.predictor.predict_proba(oos))
    s_in, s_out = p_in.max(axis=1), p_out.max(axis=1)
    threshold, chosen = _threshold(s_in, s_out, target)
    gold = [p.passage.category for p in dev]
    known = [g is not None for g in gold]
    accuracy = float(np.mean([labels[int(r.argmax())] == g for r, g, k in zip(p_in, gold, known) if k])) \
        if any(known) else None
    caught = s_out < threshold
    flagged = int(caught.sum() + (s_in < threshold).sum())
    precision = float(caught.sum() / flagged) if flagged else 0.0
    recall = float(caught.mean())
    return {"threshold": float(threshold), "score": "max probability",
            "auroc": round(_auroc(s_in, s_out), 4),
            "in_scope_accuracy": None if accuracy is None else round(accuracy, 4),
            "oos_precision": round(precision, 4), "oos_recall": round(recall, 4),
            "oos_f1": round(2 * precision * recall / max(precision + recall, 1e-9), 4), **chosen}


def _auroc(s_in: np.ndarray, s_out: np.ndarray) -> float:
    """How well the score separates in-scope (higher) from out-of-scope queries: 1 perfect, 0.5 chance."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out]))
