"""The learner-error noise generator: deterministic, each error type does its own kind of damage, the job's file."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from stepwise.demo import demo_data_path
from stepwise.errors import StepwiseError
from stepwise.recipes.noise import run
from stepwise.tasks.edit.noise import (
    DEFAULT_RATES,
    ERROR_TYPES,
    augment_text,
    augment_tokens,
    check_rates,
    corrupt,
    make_pairs,
    scale_rates,
)

CORPUS = demo_data_path().with_name("clean_en.txt")
ARTICLES = {"a", "an", "the"}
PREPOSITIONS = {"in", "on", "at", "to", "for", "of", "with", "from", "about", "by", "into", "during", "since",
                "until", "among", "between", "through", "across", "after", "without", "while"}
PUNCT = {",", ".", "?", "!"}


def only(name: str) -> dict[str, float]:
    return {t: (1.0 if t == name else 0.0) for t in ERROR_TYPES}


def removed_added(clean: list[str], noisy: list[str]) -> tuple[Counter, Counter]:
    c, n = Counter(w.lower() for w in clean), Counter(w.lower() for w in noisy)
    return c - n, n - c


def one_substitution(clean: list[str], noisy: list[str]) -> tuple[str, str]:
    assert len(noisy) == len(clean)
    diff = [(a, b) for a, b in zip(clean, noisy) if a != b]
    assert len(diff) == 1, diff
    return diff[0]


def check_article(clean: list[str], noisy: list[str]) -> None:
    removed, added = removed_added(clean, noisy)
    assert set(removed) | set(added) <= ARTICLES


def check_preposition(clean: list[str], noisy: list[str]) -> None:
    removed, added = removed_added(clean, noisy)
    assert set(removed) <= PREPOSITIONS and set(added) <= PREPOSITIONS and sum(removed.values()) == 1


def check_verb_form(clean: list[str], noisy: list[str]) -> None:
    old, new = one_substitution(clean, noisy)
    forms = {"went": {"go", "goed", "gone", "going"}, "bought": {"buy", "buyed", "buying"},
             "played": {"play", "playing"}}
    assert new in forms[old], (old, new)


def check_agreement(clean: list[str], noisy: list[str]) -> None:
    old, new = one_substitution(clean, noisy)
    assert (old, new) in {("is", "are"), ("has", "have"), ("likes", "like"), ("were", "was")}, (old, new)


def check_noun_number(clean: list[str], noisy: list[str]) -> None:
    old, new = one_substitution(clean, noisy)
    assert (old, new) in {("children", "child"), ("children", "childrens"), ("book", "books"),
                          ("libraries", "library"), ("homework", "homeworks")}, (old, new)


def check_spelling(clean: list[str], noisy: list[str]) -> None:
    old, new = one_substitution(clean, noisy)
    assert old.isalpha() and len(old) >= 3 and new.isalpha() and new[0] == old[0], (old, new)


def check_missing_word(clean: list[str], noisy: list[str]) -> None:
    removed, added = removed_added(clean, noisy)
    assert not added and sum(removed.values()) == 1 and len(noisy) == len(clean) - 1
    assert set(removed) <= {"the", "a", "an", "to", "of", "is", "are", "was", "were", "have", "has", "and",
                            "for", "in", "on", "at", "with", "that", "it", "will", "can"}


def check_duplicate_word(clean: list[str], noisy: list[str]) -> None:
    removed, added = removed_added(clean, noisy)
    assert not removed and sum(added.values()) == 1
    i = next(i for i in range(len(noisy) - 1) if noisy[i].lower() == noisy[i + 1].lower())
    assert noisy[:i] + noisy[i + 1:] == clean or noisy[:i + 1] + noisy[i + 2:] == clean


def check_word_order(clean: list[str], noisy: list[str]) -> None:
    diff = [i for i, (a, b) in enumerate(zip(clean, noisy)) if a != b]
    assert len(noisy) == len(clean) and len(diff) == 2 and diff[1] == diff[0] + 1
    i = diff[0]
    assert noisy[i] == clean[i + 1] and noisy[i + 1] == clean[i] and clean[i].isalpha() and clean[i + 1].isalpha()


def check_punctuation(clean: list[str], noisy: list[str]) -> None:
    assert [t for t in noisy if t not in PUNCT] == [t for t in clean if t not in PUNCT]


def check_casing(clean: list[str], noisy: list[str]) -> None:
    assert [t.lower() for t in noisy] == [t.lower() for t in clean]
    old, new = one_substitution(clean, noisy)
    assert old[1:] == new[1:] or old.lower() == new


# one sentence per type with a place for it, and what its damage must look like
CASES = {
    "article": ("I saw an old man and the dog in a park .", check_article),
    "preposition": ("She lives in Paris with her sister .", check_preposition),
    "verb_form": ("Yesterday I went to school and bought a pen .", check_verb_form),
    "agreement": ("She likes music , and it is fun .", check_agreement),
    "noun_number": ("The children read a book in the libraries .", check_noun_number),
    "spelling": ("My friend received 20 letters , 3 cards and a parcel .", check_spelling),
    "missing_word": ("I want to go to the cinema with my friends .", check_missing_word),
    "duplicate_word": ("We visited our grandmother last weekend .", check_duplicate_word),
    "word_order": ("I always read books before bed .", check_word_order),
    "punctuation": ("After lunch , we walked home .", check_punctuation),
    "casing": ("Maria went to Rome last summer .", check_casing),
}


def test_every_type_is_tested_and_has_a_default_rate() -> None:
    assert set(CASES) == set(ERROR_TYPES) == set(DEFAULT_RATES)
    assert all(0 < rate < 1 for rate in DEFAULT_RATES.values())


@pytest.mark.parametrize("name", ERROR_TYPES)
def test_each_type_alone_makes_its_own_error(name: str) -> None:
    sentence, check = CASES[name]
    clean = sentence.split()
    seen = set()
    for seed in range(40):
        noisy, applied = corrupt(clean, random.Random(seed), only(name))
        assert applied == [name] and noisy != clean, (seed, noisy)
        check(clean, noisy)
        seen.add(" ".join(noisy))
    assert len(seen) > 1  # the place or the kind of damage varies with the draw


def test_a_changed_place_is_not_changed_again() -> None:
    """Counted errors are distinct edits: a later type never stacks on, or undoes, an earlier one."""
    clean = "It is a book .".split()  # "book" is the one place for both noun_number and spelling
    for seed in range(20):
        noisy, applied = corrupt(clean, random.Random(seed), {**only("noun_number"), "spelling": 1.0})
        assert (noisy, applied) == ("It is a books .".split(), ["noun_number"])
    doubled = 0
    for seed in range(60):  # a duplicated "book book" is one error: neither copy then gets a typo
        noisy, applied = corrupt(clean, random.Random(seed), {**only("duplicate_word"), "spelling": 1.0})
        if sum(t.startswith("b") for t in noisy) == 2:
            doubled += 1
            assert (noisy, applied) == ("It is a book book .".split(), ["duplicate_word"])
    assert doubled >= 5


def test_adjacent_lets_an_error_sit_next_to_an_inserted_word() -> None:
    clean = "It is a book .".split()
    beside = 0
    for seed in range(60):
        rates = {**only("duplicate_word"), "spelling": 1.0}
        for adjacent in (False, True):
            noisy, _ = corrupt(clean, random.Random(seed), rates, adjacent=adjacent)
            copies = [t for t in noisy if t.startswith("b")]
            if len(copies) == 2 and copies.count("book") == 1:  # "book" doubled and one copy misspelt
                assert adjacent, noisy  # never without `adjacent`
                beside += 1
    assert beside >= 3  # fixing "bpok book" takes a delete and a replace on neighbouring words


def test_a_type_with_no_place_is_skipped_not_counted() -> None:
    clean = "Birds sing .".split()
    noisy, applied = corrupt(clean, random.Random(0), only("article"))
    assert (noisy, applied) == (clean, [])


def test_same_seed_same_pairs_other_seed_other_pairs() -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:60]
    first, counts = make_pairs(lines, seed=7, copies=2, keep_clean=0.1)
    again, counts_again = make_pairs(lines, seed=7, copies=2, keep_clean=0.1)
    other, _ = make_pairs(lines, seed=8, copies=2, keep_clean=0.1)
    assert first == again and counts == counts_again
    assert first != other
    assert [c for _, c in first] == [" ".join(line.split()) for line in lines for _ in range(2)]
    assert first[0][0] != first[1][0] or first[2][0] != first[3][0]  # copies are different draws


def test_a_sentence_noise_does_not_depend_on_its_neighbours() -> None:
    lines = ["I went to the market yesterday .", "She has two brothers and a sister ."]
    alone, _ = make_pairs(lines[:1], seed=3)
    together, _ = make_pairs(lines, seed=3)
    assert together[0] == alone[0]


def test_zero_rates_leave_every_sentence_clean() -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:50]
    pairs, counts = make_pairs(lines, seed=1, rates=dict.fromkeys(ERROR_TYPES, 0.0))
    assert all(noisy == clean for noisy, clean in pairs) and not counts


def test_keep_clean_sets_the_share_of_identity_pairs() -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    pairs, _ = make_pairs(lines, seed=2)
    assert all(noisy != clean for noisy, clean in pairs)  # every sentence of the corpus has a place for noise
    pairs, _ = make_pairs(lines, seed=2, keep_clean=0.3)
    share = sum(noisy == clean for noisy, clean in pairs) / len(pairs)
    assert 0.2 < share < 0.4


def test_default_rates_give_learner_like_error_counts() -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    pairs, counts = make_pairs(lines, seed=0)
    mean = sum(counts.values()) / sum(noisy != clean for noisy, clean in pairs)
    assert 1.5 <= mean <= 2.5
    assert counts.most_common(1)[0][0] == "spelling" and set(counts) == set(ERROR_TYPES)


def test_scale_makes_the_noise_denser_and_is_capped(tmp_path: Path) -> None:
    scaled = scale_rates({"word_order": 0.1}, 2.5)
    assert scaled["word_order"] == pytest.approx(0.25) and scaled["spelling"] == 0.95  # 0.45 * 2.5, capped
    assert scale_rates(None, 1) == DEFAULT_RATES and set(scale_rates(None, 0).values()) == {0.0}
    with pytest.raises(StepwiseError, match="noise scale must be a number of 0 or more"):
        scale_rates(None, -1)
    plain = run(str(CORPUS), str(tmp_path / "plain.tsv"), seed=0)
    dense = run(str(CORPUS), str(tmp_path / "dense.tsv"), seed=0, scale=2.5)
    assert dense["errors_per_noisy_pair"] > 1.6 * plain["errors_per_noisy_pair"]


def test_check_rates_merges_and_refuses_bad_rates() -> None:
    assert check_rates(None) == DEFAULT_RATES
    assert check_rates({"spelling": 1})["spelling"] == 1.0 and check_rates({"spelling": 1})["article"] > 0
    with pytest.raises(StepwiseError, match="unknown error type 'speling'") as err:
        check_rates({"speling": 0.5})
    assert "spelling" in err.value.fix and "word_order" in err.value.fix
    for bad in (1.5, -0.1, float("nan"), "0.3", True):
        with pytest.raises(StepwiseError, match="from 0 to 1"):
            check_rates({"article": bad})


def test_augment_tokens_keeps_length_positions_and_punctuation() -> None:
    rng = random.Random(0)
    changed = 0
    for line in CORPUS.read_text(encoding="utf-8").splitlines()[:150]:
        tokens = line.split()
        noisy = augment_tokens(tokens, rng, rate=3.0)
        assert len(noisy) == len(tokens)
        for old, new in zip(tokens, noisy):
            assert old == new or (old.isalpha() and new.isalpha())
        changed += noisy != tokens
    assert changed > 100
    assert augment_tokens(["Hello", "world", "!"], rng, rate=0.0) == ["Hello", "world", "!"]


def test_spelling_keeps_non_alphabetic_and_short_tokens() -> None:
    clean = "I paid 20 dollars , 3 times , for my e-mail in 2019 ; ok ?".split()
    changed = set()
    for seed in range(60):
        noisy, applied = corrupt(clean, random.Random(seed), only("spelling"))
        assert applied == ["spelling"] and len(noisy) == len(clean)
        for old, new in zip(clean, noisy):
            if not old.isalpha() or len(old) < 3:
                assert new == old
            elif new != old:
                changed.add(old)
    assert changed >= {"paid", "dollars", "times"}


def test_augment_text_scales_the_rates() -> None:
    text = "We went to the beach , and the children played in the sand ."
    assert augment_text(text, random.Random(0), rate=0.0) == text
    noisy = [augment_text(text, random.Random(seed), rate=1.0) for seed in range(20)]
    assert sum(n != text for n in noisy) >= 15
    with pytest.raises(StepwiseError):
        augment_text(text, random.Random(0), rate=-1.0)


def test_run_writes_noisy_tab_clean_rows(tmp_path: Path) -> None:
    source = tmp_path / "clean.txt"
    lines = ["I went to the market , and it was closed .", "", "She has two cats and a dog .",
             "Do you like music ?"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "pairs.tsv"
    summary = run(str(source), str(out), seed=5, copies=3)
    rows = [row.split("\t") for row in out.read_text(encoding="utf-8").splitlines()]
    expected = [line for line in lines if line]
    assert all(len(row) == 2 for row in rows)
    assert [clean for _, clean in rows] == [line for line in expected for _ in range(3)]
    assert all(noisy != clean for noisy, clean in rows)
    assert summary["sentences"] == 3 and summary["pairs"] == 9 and summary["unchanged"] == 0
    assert sum(summary["errors"].values()) >= 9 and list(summary["errors"]) == list(ERROR_TYPES)
    assert [p.name for p in out.parent.iterdir()] == ["pairs.tsv"]  # no temp file left beside it
    run(str(source), str(out), seed=5, copies=3)
    assert [row.split("\t") for row in out.read_text(encoding="utf-8").splitlines()] == rows


def test_run_refuses_empty_input_and_bad_rates_without_writing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    out = tmp_path / "pairs.tsv"
    with pytest.raises(StepwiseError, match="empty"):
        run(str(empty), str(out))
    assert not out.exists()
    good = tmp_path / "clean.txt"
    good.write_text("I like it .\n", encoding="utf-8")
    out.write_text("old\n", encoding="utf-8")
    with pytest.raises(StepwiseError, match="unknown error type"):
        run(str(good), str(out), rates={"grammar": 0.5})
    with pytest.raises(StepwiseError, match="from 0 to 1"):
        run(str(good), str(out), rates={"article": 2.0})
    with pytest.raises(StepwiseError, match="keep_clean"):
        run(str(good), str(out), keep_clean=1.5)
    with pytest.raises(StepwiseError, match="overwrite the input"):
        run(str(good), str(good))
    assert out.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.txt", "empty.txt", "pairs.tsv"]


def test_demo_corpus_is_clean_tokenized_text() -> None:
    raw = CORPUS.read_bytes()
    text = raw.decode("utf-8")
    lines = text.split("\n")
    assert text.endswith("\n") and lines[-1] == ""
    lines = lines[:-1]
    assert 300 <= len(lines) <= 400 and len(set(lines)) == len(lines)
    for number, line in enumerate(lines, 1):
        assert line.strip() and "\t" not in line and "  " not in line and line == line.strip(), number
        tokens = line.split(" ")
        assert 6 <= len(tokens) <= 30, number
        for token in tokens:
            assert token in PUNCT | {";", ":"} or not re.search(r"[,.!?;:]$", token), (number, token)
            # clitics split off as JFLEG does: "do n't", "today 's", "I 'm"
            assert token in {"n't", "'s", "'m", "'re", "'ve", "'ll", "'d", "'", "o'clock"} or "'" not in token, \
                (number, token)
        assert tokens[-1] in {".", "?", "!"}, number
