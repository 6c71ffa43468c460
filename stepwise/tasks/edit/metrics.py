"""Metrics of a text-editing task (grammatical error correction): GLEU, BLEU and edit precision/recall.

Every sentence is a list of whitespace tokens; nothing here re-tokenizes. GLEU is the JFLEG benchmark's
metric (Napoles, Sakaguchi, Post & Tetreault 2015, revised in 2016 as "GLEU without tuning") and equals
the official scorer's number (keisks/jfleg eval/gleu.py) up to float rounding. BLEU is sacrebleu's. The edit scores
count edits the M2/ERRANT way, with edits taken from a plain token diff.
"""

from __future__ import annotations

import difflib
import math
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

Tokens = Sequence[str]
Edit = tuple[int, int, tuple[str, ...]]

#: The official scorer's defaults: 500 iterations, iteration j draws its references from seed 101 * j.
GLEU_ITERATIONS = 500
GLEU_SEED_STEP = 101


def _ngrams(tokens: Tokens, order: int) -> Counter:
    return Counter(tuple(tokens[i:i + order]) for i in range(len(tokens) - order + 1))


def _check_corpus(sources: Sequence | None, hypotheses: Sequence, references: Sequence) -> None:
    if sources is not None and len(sources) != len(hypotheses):
        raise ValueError(f"{len(sources)} sources but {len(hypotheses)} hypotheses")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets but {len(hypotheses)} hypotheses")
    for i, refs in enumerate(references):
        if not refs:
            raise ValueError(f"sentence {i} has no reference")


def _gleu_stats(source: Tokens, hypothesis: Tokens, references: Sequence[Tokens], n: int) -> list[list[int]]:
    """Per reference: [hypothesis length, reference length, then per order k: matches, hypothesis k-grams].

    "matches" is the hypothesis k-grams found in the reference minus those that copy a source k-gram the
    reference removed (clipped at 0): that subtraction is what makes GLEU punish leaving errors in place,
    which BLEU against a near-copy reference hardly does. The denominator is the hypothesis k-gram count
    (the 2016 fix), so it does not depend on the reference.
    """
    hyp = [_ngrams(hypothesis, k) for k in range(1, n + 1)]
    src = [_ngrams(source, k) for k in range(1, n + 1)]
    out = []
    for reference in references:
        stats = [len(hypothesis), len(reference)]
        for k in range(1, n + 1):
            ref = _ngrams(reference, k)
            removed = Counter({g: c for g, c in src[k - 1].items() if g not in ref})
            matches = sum((hyp[k - 1] & ref).values()) - sum((hyp[k - 1] & removed).values())
            stats += [max(matches, 0), max(len(hypothesis) + 1 - k, 0)]
        out.append(stats)
    return out


def _gleu_of_stats(stats: Sequence[int], n: int) -> float:
    """Brevity penalty times the geometric mean of the n-gram precisions; 0 if any count is 0 (unsmoothed)."""
    if any(s == 0 for s in stats):
        return 0.0
    hyp_len, ref_len = stats[0], stats[1]
    log_precision = sum(math.log(stats[2 + 2 * i] / stats[3 + 2 * i]) for i in range(n)) / n
    return math.exp(min(0.0, 1 - ref_len / hyp_len) + log_precision)


def _reference_draws(counts: Sequence[int], iterations: int) -> np.ndarray:
    """Which reference each sentence uses in each iteration, exactly as the official scorer draws them.

    That scorer ran on Python 2, whose randint(0, k - 1) is int(random() * k) (Python 3's randint draws
    differently), reseeded with 101 * j before iteration j; one draw per sentence, in order.
    """
    draws = np.empty((iterations, len(counts)), dtype=np.int64)
    for j in range(iterations):
        rng = random.Random(GLEU_SEED_STEP * j)
        draws[j] = [int(rng.random() * k) for k in counts]
    return draws


def gleu(sources: Sequence[Tokens], hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]],
         n: int = 4, *, iterations: int = GLEU_ITERATIONS) -> float:
    """Corpus GLEU in [0, 1], the JFLEG benchmark's number (papers print it x100).

    GLEU is BLEU's formula (brevity penalty x geometric mean of 1..n-gram precisions, summed over the
    corpus) with the precision's numerator reduced by the hypothesis n-grams that keep source n-grams the
    reference changed, so copying the source is not rewarded for the parts that needed correcting.

    Several references per sentence are handled as the official scorer does, by sampling: each of
    `iterations` (500) rounds picks one reference per sentence, scores the corpus against those picks,
    and the rounds' scores are averaged. The picks replay the official scorer's seeds (101 * round) and
    draws, so with the same references in the same order the result equals its number up to float
    rounding (checked on JFLEG dev: source copy 0.382146). The average is not the expectation over all
    picks (that has no closed form), so reordering a sentence's references moves the score by sampling
    noise, about 1e-3 on JFLEG dev.
    A sentence with k references draws among its own k; the official scorer assumes the same k everywhere
    (and always uses n = 4, where this honours `n`).
    """
    _check_corpus(sources, hypotheses, references)
    if not hypotheses:
        return 0.0
    counts = [len(refs) for refs in references]
    stats = np.zeros((len(hypotheses), max(counts), 2 * n + 2), dtype=np.int64)
    for i, (src, hyp, refs) in enumerate(zip(sources, hypotheses, references)):
        stats[i, :len(refs)] = _gleu_stats(src, hyp, refs, n)
    rows = np.arange(len(hypotheses))
    scores = [_gleu_of_stats(stats[rows, picks].sum(axis=0).tolist(), n)
              for picks in _reference_draws(counts, iterations)]
    return float(np.mean(scores))


def sentence_gleu(source: Tokens, hypothesis: Tokens, references: Sequence[Tokens], n: int = 4) -> float:
    """Smoothed GLEU of one sentence in [0, 1], meant as a reward: the mean over all references.

    The mean over references is deterministic and is what the sampled corpus GLEU estimates per sentence.
    Smoothing is add-one on the 2..n-gram precisions (Lin & Och's BLEU+1), so a 2-token sentence is not 0
    for lack of 4-grams and a fully right short sentence scores 1; the unigram precision is left raw, so a
    hypothesis with no net matching word scores 0. An empty hypothesis scores 1 against an empty reference,
    else 0.
    """
    if not references:
        raise ValueError("sentence_gleu needs at least one reference")
    scores = []
    for stats in _gleu_stats(source, hypothesis, references, n):
        hyp_len, ref_len = stats[0], stats[1]
        if hyp_len == 0 or stats[2] == 0:
            scores.append(float(hyp_len == 0 and ref_len == 0))
            continue
        log_precision = math.log(stats[2] / stats[3])
        log_precision += sum(math.log((stats[2 + 2 * i] + 1) / (stats[3 + 2 * i] + 1)) for i in range(1, n))
        scores.append(math.exp(min(0.0, 1 - ref_len / hyp_len) + log_precision / n))
    return sum(scores) / len(scores)


def sentence_bleu(hypothesis: Tokens, references: Sequence[Tokens]) -> float:
    """sacrebleu's sentence BLEU in [0, 1] (exp smoothing, effective order) against all references at once."""
    import sacrebleu

    if not references:
        raise ValueError("sentence_bleu needs at least one reference")
    result = sacrebleu.sentence_bleu(" ".join(hypothesis), [" ".join(r) for r in references], tokenize="none")
    return result.score / 100.0


def corpus_bleu(hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]]) -> float:
    """sacrebleu's corpus BLEU in [0, 1] with tokenize="none", since the tokens are already split.

    sacrebleu takes references as streams (stream k = every sentence's k-th reference); a sentence with
    fewer references is padded with None, which sacrebleu skips (an empty string would count as a reference).
    """
    import sacrebleu

    _check_corpus(None, hypotheses, references)
    if not hypotheses:
        return 0.0
    width = max(len(refs) for refs in references)
    streams = [[" ".join(refs[k]) if k < len(refs) else None for refs in references] for k in range(width)]
    # force: the input is tokenized on purpose, so sacrebleu's "forgot to detokenize?" warning does not apply
    hyps = [" ".join(h) for h in hypotheses]
    return sacrebleu.corpus_bleu(hyps, streams, tokenize="none", force=True).score / 100.0


def token_edits(source: Tokens, target: Tokens) -> list[Edit]:
    """The edits turning `source` into `target`: (start, end, replacement) over source positions, in order.

    From difflib's opcodes (autojunk off, so frequent tokens such as "the" still align); equal runs are
    dropped, an insertion has start == end, a deletion an empty replacement.
    """
    matcher = difflib.SequenceMatcher(None, list(source), list(target), autojunk=False)
    return [(i1, i2, tuple(target[j1:j2])) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"]


def _prf(tp: int, fp: int, fn: int, beta: float) -> tuple[float, float, float]:
    """M2/ERRANT convention: no proposed edits means precision 1, nothing to find means recall 1."""
    precision = tp / (tp + fp) if fp else 1.0
    recall = tp / (tp + fn) if fn else 1.0
    b2 = beta * beta
    f = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
    return precision, recall, f


def edit_scores(sources: Sequence[Tokens], hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]],
                beta: float = 0.5) -> dict:
    """Precision, recall and F_beta of the hypothesis edits against the reference edits (M2/ERRANT-style).

    An edit counts as right only if span and replacement both match a reference edit. Per sentence, the
    reference kept is the one giving the highest corpus F_beta once its tp/fp/fn are added to the totals so
    far (ERRANT's rule); ties go to more tp, then fewer fp, then fewer fn, then the earlier reference
    (ERRANT also compares F rounded to 4 digits; here it is unrounded). A sentence where neither hypothesis
    nor reference edits adds nothing. Precision with no proposed edits is 1.0 and recall with no reference
    edits is 1.0 (the M2 convention), so a corpus with no edits at all scores F = 1.

    Edits come from `token_edits` (a token diff), not ERRANT's linguistically informed alignment, so the
    same correction split differently by the two diffs counts as a miss: compare numbers only with each other.
    Returns {"precision", "recall", f"f{beta:g}" (e.g. "f0.5"), "tp", "fp", "fn"}.
    """
    _check_corpus(sources, hypotheses, references)
    tp = fp = fn = 0
    for source, hypothesis, refs in zip(sources, hypotheses, references):
        proposed = set(token_edits(source, hypothesis))
        best: tuple | None = None
        for ref in refs:
            gold = set(token_edits(source, ref))
            counts = (len(proposed & gold), len(proposed - gold), len(gold - proposed))
            f = _prf(tp + counts[0], fp + counts[1], fn + counts[2], beta)[2]
            key = (f, counts[0], -counts[1], -counts[2])
            if best is None or key > best[0]:
                best = (key, counts)
        tp, fp, fn = tp + best[1][0], fp + best[1][1], fn + best[1][2]
    precision, recall, f = _prf(tp, fp, fn, beta)
    return {"precision": precision, "recall": recall, f"f{beta:g}": f, "tp": tp, "fp": fp, "fn": fn}
