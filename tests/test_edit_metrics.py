"""stepwise.tasks.edit.metrics: GLEU (JFLEG's corpus metric, a smoothed sentence reward), BLEU, token edits, edit F."""

from __future__ import annotations

import math
import random

import pytest

from stepwise.tasks.edit.metrics import corpus_bleu, edit_scores, gleu, sentence_bleu, sentence_gleu, token_edits


def toks(text: str) -> list[str]:
    return text.split()


# 12 distinct tokens; the reference substitutes the middle one, so every k-gram (k <= 4) covering it changes.
LONG_SRC = [f"t{i}" for i in range(12)]
LONG_REF = LONG_SRC[:5] + ["X"] + LONG_SRC[6:]

SHORT_SRC = toks("he go to school every day")
SHORT_REF = toks("he goes to school every day")
SHORT_HYP = toks("he goes to school every days")


# ---- corpus GLEU ------------------------------------------------------------------------------------------


def test_gleu_is_one_when_hypothesis_is_the_reference():
    assert gleu([LONG_SRC], [LONG_REF], [[LONG_REF]]) == pytest.approx(1.0)
    # the source does not matter once the hypothesis is the reference
    assert gleu([SHORT_SRC, LONG_SRC], [SHORT_REF, LONG_REF], [[SHORT_REF], [LONG_REF]]) == pytest.approx(1.0)


def test_gleu_is_one_when_nothing_needed_changing():
    assert gleu([LONG_SRC], [LONG_SRC], [[LONG_SRC]]) == pytest.approx(1.0)


def test_gleu_source_copy_hand_computed():
    # Source copy of LONG_SRC against LONG_REF (t5 -> X). A k-gram counts if it is in the reference, minus
    # one for each k-gram of the source that the reference no longer has (the k windows over t5):
    #   k=1: 12 hyp unigrams, 11 in ref, 1 removed ("t5")        -> 11 - 1 = 10 / 12
    #   k=2: 11 bigrams,        9 in ref, 2 removed               ->  9 - 2 =  7 / 11
    #   k=3: 10 trigrams,       7 in ref, 3 removed               ->  7 - 3 =  4 / 10
    #   k=4:  9 4-grams,        5 in ref, 4 removed               ->  5 - 4 =  1 / 9
    # equal lengths, so no brevity penalty; GLEU = geometric mean.
    expected = (10 / 12 * 7 / 11 * 4 / 10 * 1 / 9) ** 0.25
    assert gleu([LONG_SRC], [LONG_SRC], [[LONG_REF]]) == pytest.approx(expected, abs=1e-12)
    # BLEU-style precision without the penalty would be (11/12 * 9/11 * 7/10 * 5/9) ** 0.25 ~ 0.72: GLEU
    # charges the copy for the n-grams the reference corrected.
    assert expected < 0.4 < (11 / 12 * 9 / 11 * 7 / 10 * 5 / 9) ** 0.25


def test_gleu_partial_correction_hand_computed():
    # SHORT_HYP fixes "go" but breaks "day" -> "days"; no hypothesis k-gram copies a removed source k-gram.
    #   k=1: he goes to school every | days      -> 5 / 6
    #   k=2: 4 of 5 bigrams in ref               -> 4 / 5
    #   k=3: 3 of 4                               -> 3 / 4
    #   k=4: 2 of 3                               -> 2 / 3
    expected = (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert gleu([SHORT_SRC], [SHORT_HYP], [[SHORT_REF]]) == pytest.approx(expected, abs=1e-12)


def test_gleu_sums_counts_over_the_corpus():
    # Corpus GLEU pools the counts of the two cases above (not the mean of sentence scores).
    expected = ((10 + 5) / (12 + 6) * (7 + 4) / (11 + 5) * (4 + 3) / (10 + 4) * (1 + 2) / (9 + 3)) ** 0.25
    got = gleu([LONG_SRC, SHORT_SRC], [LONG_SRC, SHORT_HYP], [[LONG_REF], [SHORT_REF]])
    assert got == pytest.approx(expected, abs=1e-12)


def test_gleu_brevity_penalty():
    # The reference minus its last token: every k-gram matches (11/11, 10/10, 9/9, 8/8), nothing copies a
    # removed source k-gram; only the brevity penalty exp(1 - 12/11) remains.
    got = gleu([LONG_SRC], [LONG_REF[:-1]], [[LONG_REF]])
    assert got == pytest.approx(math.exp(1 - 12 / 11), abs=1e-12)


def test_gleu_copy_scores_below_the_correction():
    copy = gleu([SHORT_SRC, LONG_SRC], [SHORT_SRC, LONG_SRC], [[SHORT_REF], [LONG_REF]])
    fixed = gleu([SHORT_SRC, LONG_SRC], [SHORT_REF, LONG_REF], [[SHORT_REF], [LONG_REF]])
    assert copy < fixed


def test_gleu_unsmoothed_corpus_zero_without_4grams():
    # As the official scorer: a corpus with no 4-gram at all scores 0 (sentence_gleu is the smoothed one).
    assert gleu([toks("a b")], [toks("a b")], [[toks("a b")]]) == 0.0


def random_corpus(seed: int, size: int = 40, refs: int = 4):
    rng = random.Random(seed)
    vocab = toks("a b c d e f g the of is")

    def noisy(sentence):
        out = list(sentence)
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(out))
            out[i] = rng.choice(vocab)
        return out

    sources = [[rng.choice(vocab) for _ in range(rng.randint(6, 15))] for _ in range(size)]
    references = [[noisy(s) for _ in range(refs)] for s in sources]
    hypotheses = [noisy(s) for s in sources]
    return sources, hypotheses, references


def test_gleu_multi_reference_is_deterministic_and_order_independent_within_noise():
    sources, hypotheses, references = random_corpus(0)
    base = gleu(sources, hypotheses, references)
    assert gleu(sources, hypotheses, references) == base  # fixed draws: same input, same number
    rng = random.Random(1)
    for _ in range(3):
        shuffled = [rng.sample(refs, len(refs)) for refs in references]
        # sampled over 500 rounds, so reordering moves it only by sampling noise (stated: < 0.01)
        assert gleu(sources, hypotheses, shuffled) == pytest.approx(base, abs=0.01)


def test_gleu_matches_the_official_scorer():
    # 0.40191352845172773: keisks/jfleg eval/gleu.py (Python 2.7, 500 iterations) on this corpus written to
    # files (src, hyp, ref0..ref3), full-precision mean of its iteration scores. Replaying its reference
    # draws is what makes this exact; Python 3's randint would pick other references.
    sources, hypotheses, references = random_corpus(0)
    assert gleu(sources, hypotheses, references) == pytest.approx(0.40191352845172773, abs=1e-12)


def test_gleu_duplicated_references_equal_single_reference():
    sources, hypotheses, references = random_corpus(2, refs=1)
    single = gleu(sources, hypotheses, references)
    assert gleu(sources, hypotheses, [refs * 3 for refs in references]) == pytest.approx(single, abs=1e-12)


def test_gleu_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        gleu([SHORT_SRC], [SHORT_HYP, SHORT_HYP], [[SHORT_REF]])
    with pytest.raises(ValueError):
        gleu([SHORT_SRC], [SHORT_HYP], [[]])


# ---- sentence GLEU ----------------------------------------------------------------------------------------


def test_sentence_gleu_short_sentences_are_not_zero():
    assert sentence_gleu(toks("a b"), toks("a b"), [toks("a b")]) == pytest.approx(1.0)
    assert 0.0 < sentence_gleu(toks("he go"), toks("he goes"), [toks("he went")]) < 1.0
    assert 0.0 < sentence_gleu(toks("he go"), toks("he goes"), [toks("he goes")])


def test_sentence_gleu_hand_computed_and_mean_over_references():
    # SHORT_HYP against SHORT_REF, add-one on k >= 2: 5/6, (4+1)/(5+1), (3+1)/(4+1), (2+1)/(3+1)
    one = (5 / 6 * 5 / 6 * 4 / 5 * 3 / 4) ** 0.25
    assert sentence_gleu(SHORT_SRC, SHORT_HYP, [SHORT_REF]) == pytest.approx(one, abs=1e-12)
    # against the hypothesis itself it is 1; two references -> the mean, in either order
    assert sentence_gleu(SHORT_SRC, SHORT_HYP, [SHORT_REF, SHORT_HYP]) == pytest.approx((one + 1) / 2, abs=1e-12)
    assert sentence_gleu(SHORT_SRC, SHORT_HYP, [SHORT_HYP, SHORT_REF]) == pytest.approx((one + 1) / 2, abs=1e-12)


def test_sentence_gleu_penalises_the_copy():
    copy = sentence_gleu(LONG_SRC, LONG_SRC, [LONG_REF])
    assert 0.0 < copy < sentence_gleu(LONG_SRC, LONG_REF, [LONG_REF]) == pytest.approx(1.0)
    assert sentence_gleu(toks("a b"), [], [toks("a b")]) == 0.0


# ---- BLEU -------------------------------------------------------------------------------------------------


def test_sentence_bleu_multi_reference():
    assert sentence_bleu(SHORT_REF, [SHORT_REF]) == pytest.approx(1.0)
    assert sentence_bleu(SHORT_HYP, [SHORT_SRC, SHORT_HYP]) == pytest.approx(1.0)
    assert 0.0 < sentence_bleu(SHORT_HYP, [SHORT_REF]) < 1.0


def test_corpus_bleu_multi_reference_and_padding():
    hyps = [SHORT_HYP, toks("t0 t1")]
    assert corpus_bleu([SHORT_REF, LONG_REF], [[SHORT_SRC, SHORT_REF], [LONG_REF]]) == pytest.approx(1.0)
    # A missing reference must be skipped, not counted as an empty one: with an empty reference the 2-token
    # hypothesis would be "closest" to length 0 and escape the brevity penalty. Duplicating the sole
    # reference instead is a no-op for BLEU, so both must agree.
    padded = corpus_bleu(hyps, [[SHORT_REF, SHORT_SRC], [LONG_REF]])
    duplicated = corpus_bleu(hyps, [[SHORT_REF, SHORT_SRC], [LONG_REF, LONG_REF]])
    assert padded == pytest.approx(duplicated, abs=1e-12)
    assert 0.0 < padded < 1.0


# ---- token edits ------------------------------------------------------------------------------------------


def apply_edits(source, edits):
    out = list(source)
    for start, end, replacement in sorted(edits, reverse=True):
        out[start:end] = replacement
    return out


def test_token_edits_shapes():
    src = toks("the cat sat on mat")
    assert token_edits(src, toks("the cat sat on the mat")) == [(4, 4, ("the",))]
    assert token_edits(src, toks("the cat on mat")) == [(2, 3, ())]
    assert token_edits(src, toks("a cat sat on mat")) == [(0, 1, ("a",))]
    assert token_edits(src, src) == []


def test_token_edits_round_trip():
    rng = random.Random(3)
    vocab = toks("a b c the of is")
    for _ in range(200):
        source = [rng.choice(vocab) for _ in range(rng.randint(0, 10))]
        target = [rng.choice(vocab) for _ in range(rng.randint(0, 10))]
        edits = token_edits(source, target)
        assert apply_edits(source, edits) == target
        assert all(start <= end for start, end, _ in edits)


# ---- edit precision / recall ------------------------------------------------------------------------------


def test_edit_scores_hand_made():
    sources = [toks("a b c d"), toks("x y z"), toks("p q")]
    hypotheses = [toks("a B c d"), toks("x Y z"), toks("p q")]
    references = [[toks("a B c d e")], [toks("x y z")], [toks("p q")]]
    # 1: hyp {(1,2,B)}, ref {(1,2,B), (4,4,e)} -> tp 1, fn 1;  2: hyp {(1,2,Y)}, ref {} -> fp 1;  3: nothing
    got = edit_scores(sources, hypotheses, references)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 1, 1)
    assert got["precision"] == pytest.approx(0.5) and got["recall"] == pytest.approx(0.5)
    assert got["f0.5"] == pytest.approx(0.5)


def test_edit_scores_picks_the_matching_reference():
    src, hyp = toks("a b c"), toks("a B c")
    got = edit_scores([src], [hyp], [[toks("a b C"), toks("a B c")]])
    assert (got["tp"], got["fp"], got["fn"]) == (1, 0, 0)


def test_edit_scores_reference_choice_uses_the_running_totals():
    # Sentence 1 gives tp 2. Sentence 2 proposes 2 edits (w0, w2); reference B has both plus 6 more, reference
    # A only w0. On its own B wins (P 1, R 0.25: F0.5 0.625 > A's P 0.5, R 1: 0.556), but added to the
    # totals A wins: (3, 1, 0) -> F0.5 0.789 vs B's (4, 0, 6) -> 0.769. ERRANT keeps A.
    words = [f"w{i}" for i in range(20)]

    def upper(positions):
        return [w.upper() if i in positions else w for i, w in enumerate(words)]

    sources = [toks("a b c d"), words]
    hypotheses = [toks("A b C d"), upper({0, 2})]
    references = [[toks("A b C d")], [upper({0, 2, 4, 6, 8, 10, 12, 14}), upper({0})]]
    got = edit_scores(sources, hypotheses, references)
    assert (got["tp"], got["fp"], got["fn"]) == (3, 1, 0)


def test_edit_scores_tie_break_prefers_fewer_false_negatives():
    # No proposed edits: both references give F = 0 with tp = fp = 0; the one with fewer misses is kept,
    # even though it comes second.
    src = toks("a b c d")
    got = edit_scores([src], [src], [[toks("A b C d"), toks("A b c d")]])
    assert (got["tp"], got["fp"], got["fn"]) == (0, 0, 1)
    assert got["precision"] == 1.0 and got["recall"] == 0.0 and got["f0.5"] == 0.0


def test_edit_scores_f_half_weights_precision():
    # tp 1, fp 0, fn 1: P = 1, R = 0.5 -> F0.5 = 1.25 * 0.5 / (0.25 + 0.5) = 5/6, F1 = 2/3
    args = ([toks("a b c")], [toks("A b c")], [[toks("A b C")]])
    half, one = edit_scores(*args), edit_scores(*args, beta=1.0)
    assert half["f0.5"] == pytest.approx(5 / 6) and one["f1"] == pytest.approx(2 / 3)
    assert half["precision"] > half["recall"] and half["f0.5"] > one["f1"]


def test_edit_scores_no_edits_anywhere():
    got = edit_scores([toks("a b")], [toks("a b")], [[toks("a b")]])
    assert got == {"precision": 1.0, "recall": 1.0, "f0.5": 1.0, "tp": 0, "fp": 0, "fn": 0}
