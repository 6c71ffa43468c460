"""Recommendation data: reading and validating logs and item files, the leave-last-out split, full-ranking metrics."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from stepwise.errors import StepwiseError
from stepwise.tasks.recommend.data import Interaction, read_interactions, read_items, split_leave_last_out
from stepwise.tasks.recommend.metrics import rank_metrics

ITEMS_TSV = ("item_id\ttitle\tyear\tgenres\n"
             "1\tToy Story\t1995\tAnimation|Children's|Comedy\n"
             "2\tGoldenEye\t1995\tAction\n"
             "3\tFour Rooms\t\tThriller\n"
             "4\tCopycat\t1995\tCrime\n")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- reading ------------------------------------------------------------------------------------------


def test_items_text_is_every_field_with_the_year_after_the_title(tmp_path: Path) -> None:
    items = read_items(write(tmp_path, "items.tsv", ITEMS_TSV))
    assert items == {"1": "Toy Story (1995). Animation, Children's, Comedy", "2": "GoldenEye (1995). Action",
                     "3": "Four Rooms. Thriller", "4": "Copycat (1995). Crime"}
    jsonl = read_items(write(tmp_path, "items.jsonl", '{"id": 7, "title": "Heat", "tags": ["crime", "la"]}\n'))
    assert jsonl == {"7": "Heat. crime, la"}
    csv_items = read_items(write(tmp_path, "movies.csv", 'movieId,title,genres\n1,"Toy Story, The (1995)",A|B\n'))
    assert csv_items == {"1": "Toy Story, The (1995). A, B"}


def test_interactions_read_from_tsv_csv_and_jsonl_with_their_column_names(tmp_path: Path) -> None:
    tsv = write(tmp_path, "r.tsv", "user_id\titem_id\trating\ttimestamp\n196\t242\t3\t881250949\n186\t302\t\t8\n")
    rows, skipped = read_interactions(tsv)
    assert rows == [Interaction("196", "242", 881250949.0, 3.0), Interaction("186", "302", 8.0, None)]
    assert [r.line for r in rows] == [2, 3] and skipped == {"duplicate": 0, "below_min_rating": 0}
    csv_rows, _ = read_interactions(write(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n1,31,2.5,12\n"))
    assert csv_rows == [Interaction("1", "31", 12.0, 2.5)]
    jsonl = write(tmp_path, "r.jsonl", '{"user": "a", "item": 1, "time": "1970-01-01T00:01:00"}\n')
    assert read_interactions(jsonl)[0] == [Interaction("a", "1", 60.0, None)]


def test_duplicates_and_low_ratings_are_skipped_and_counted(tmp_path: Path) -> None:
    log = write(tmp_path, "r.tsv", "user\titem\ttimestamp\trating\n"
                                   "u\t1\t50\t5\n"   # kept until line 4 shows the same pair earlier in time
                                   "u\t2\t20\t1\n"   # below 3
                                   "u\t1\t10\t4\n"   # the earliest time u had item 1: kept
                                   "u\t1\t10\t5\n"   # same pair, same time, later in the file: skipped
                                   "v\t1\t30\t3\n")
    rows, skipped = read_interactions(log, min_rating=3)
    assert [(r.user, r.item, r.timestamp, r.line) for r in rows] == [("u", "1", 10.0, 4), ("v", "1", 30.0, 6)]
    assert skipped == {"duplicate": 2, "below_min_rating": 1}
    rows, skipped = read_interactions(log)
    assert len(rows) == 3 and skipped == {"duplicate": 2, "below_min_rating": 0}


@pytest.mark.parametrize("content, message, line", [
    ("user\titem\n1\t2\n", "no timestamp column (found: user, item)", 1),
    ("1\t2\t3\t881250949\n", "the first line must be a header", 1),
    ("user\titem\ttimestamp\n1\t2\t3\n\t4\t5\n", "empty user id", 3),
    ("user\titem\ttimestamp\n1\t2\t3\n1\t\t5\n", "empty item id", 3),
    ("user\titem\ttimestamp\n1\t2\tyesterday\n", "the timestamp 'yesterday' is not a number", 2),
    ("user\titem\ttimestamp\n1\t2\tnan\n", "the timestamp 'nan' is not a number", 2),
    ("user\titem\ttimestamp\trating\n1\t2\t3\tgood\n", "the rating 'good' is not a number", 2),
    ("user\titem\ttimestamp\n1\t2\t3\t4\n", "expected 3 columns, found 4", 2),
    ("user\titem\ttimestamp\n", "a header but no interactions", None),
    ("", "the file is empty", None),
])
def test_bad_logs_are_one_error_naming_the_line(tmp_path: Path, content: str, message: str, line: int | None) -> None:
    with pytest.raises(StepwiseError) as err:
        read_interactions(write(tmp_path, "r.tsv", content))
    assert message in err.value.problem and err.value.line == line


@pytest.mark.parametrize("name, content, kwargs, message, line", [
    ("r.tsv", "user\titem\ttimestamp\n1\t1\t3\n1\t9\t4\n", {"items": {"1": "a"}}, "item '9' is not in the item", 3),
    ("r.tsv", "user\titem\ttimestamp\n1\t1\t3\n", {"min_rating": 3}, "needs a rating on every row", 2),
    ("r.tsv", "user\titem\ttimestamp\trating\n1\t1\t3\t1\n", {"min_rating": 3}, "every interaction is below", None),
    ("r.jsonl", '{"user": 1, "item": 2, "timestamp": 3}\n[1]\n', {}, "not a JSON object", 2),
    ("r.jsonl", '{"user": 1, "item": 2}\n', {}, "no timestamp column", 1),
    ("r.jsonl", '{"user": 1, "item": 2, "timestamp": true}\n', {}, "is not a number", 1),
    ("r.parquet", "x", {}, "cannot tell the format", None),
])
def test_log_validation_cases(tmp_path: Path, name: str, content: str, kwargs: dict, message: str,
                              line: int | None) -> None:
    with pytest.raises(StepwiseError) as err:
        read_interactions(write(tmp_path, name, content), **kwargs)
    assert message in err.value.problem and err.value.line == line


@pytest.mark.parametrize("content, message, line", [
    ("item_id\ttitle\n1\tA\n1\tB\n", "duplicate item id '1' (first on line 2)", 3),
    ("item_id\ttitle\tyear\n1\tA\t1990\n2\t\t\n", "item '2' has no text", 3),
    ("name\ttitle\n1\tA\n", "no item id column (found: name, title)", 1),
    ("item_id\ttitle\n\tA\n", "empty item id", 2),
])
def test_bad_item_files_name_the_line(tmp_path: Path, content: str, message: str, line: int) -> None:
    with pytest.raises(StepwiseError) as err:
        read_items(write(tmp_path, "items.tsv", content))
    assert message in err.value.problem and err.value.line == line


def test_a_directory_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(StepwiseError, match="is a directory"):
        read_interactions(tmp_path)


# --- the split ----------------------------------------------------------------------------------------

CATALOGUE = {str(i): f"item {i}" for i in range(20)}


def log(*rows: tuple[str, str, float]) -> list[Interaction]:
    return [Interaction(u, i, t, None, n) for n, (u, i, t) in enumerate(rows, 1)]


def test_leave_last_out_by_time_with_ties_in_the_given_order() -> None:
    rows = log(("a", "5", 40), ("a", "1", 10), ("a", "2", 30), ("a", "3", 30), ("a", "4", 20),
               ("b", "7", 2), ("b", "6", 1),   # two interactions: a test target, no dev
               ("c", "9", 5))                   # one: skipped
    split = split_leave_last_out(rows, CATALOGUE)
    assert split.items == list(CATALOGUE)
    assert split.train == {"a": ["1", "4", "2"], "b": ["6"]}
    assert split.dev == {"a": "3"} and split.test == {"a": "5", "b": "7"}
    assert split.skipped == {"duplicate": 0, "user_one_interaction": 1}
    assert split.history("a", "dev") == ["1", "4", "2"] and split.history("a", "test") == ["1", "4", "2", "3"]
    assert split.seen("a", "test") == {"1", "2", "3", "4"} and split.seen("b", "test") == {"6"}
    assert split.cold_items == frozenset()
    with pytest.raises(KeyError, match="user 'b' has no dev target"):
        split.history("b", "dev")
    reordered = split_leave_last_out([rows[i] for i in (0, 1, 3, 2, 4)], CATALOGUE)  # the tie the other way
    assert reordered.dev == {"a": "2"} and reordered.train["a"] == ["1", "4", "3"]


def test_cold_items_leave_training_but_stay_targets() -> None:
    rng = np.random.default_rng(1)
    rows = [Interaction(f"u{u}", str(i), float(t), None)
            for u in range(30) for t, i in enumerate(rng.choice(20, size=6, replace=False))]
    split = split_leave_last_out(rows, CATALOGUE, cold_fraction=0.1, seed=3)
    assert len(split.cold_items) == 2 and split.cold_items <= set(CATALOGUE)
    assert split.cold_items == split_leave_last_out(rows, CATALOGUE, cold_fraction=0.1, seed=3).cold_items
    assert split.cold_items != split_leave_last_out(rows, CATALOGUE, cold_fraction=0.1, seed=4).cold_items
    assert not any(split.cold_items & set(items) for items in split.train.values())
    for user in split.test:
        assert not split.cold_items & set(split.history(user, "test"))
        assert not split.cold_items & set(split.history(user, "dev"))
    full = split_leave_last_out(rows, CATALOGUE)
    assert split.test == full.test and split.dev == full.dev  # targets kept, cold or not
    cold_targets = [u for u, item in split.test.items() if item in split.cold_items]
    assert cold_targets  # the fixture has users whose test item is cold
    had_cold = [u for u in split.test if split.cold_items & full.seen(u, "test")]
    assert had_cold and all(split.seen(u, "test") == full.seen(u, "test") for u in had_cold)
    assert all(len(split.history(u, "test")) < len(full.history(u, "test")) for u in had_cold)


def test_split_refuses_an_item_not_in_the_catalogue() -> None:
    with pytest.raises(StepwiseError, match=r"user 'a' has item 'x' \(line 2\), which is not in the items"):
        split_leave_last_out(log(("a", "1", 1), ("a", "x", 2)), CATALOGUE)
    with pytest.raises(StepwiseError, match="no user has two interactions"):
        split_leave_last_out(log(("a", "1", 1), ("b", "2", 2)), CATALOGUE)


# --- metrics ------------------------------------------------------------------------------------------


def test_metrics_by_hand_with_a_pessimistic_tie_and_exclusion() -> None:
    scores = np.array([[0.9, 0.5, 0.5, 0.1, 0.0],    # target 2 ties item 1: rank 3 (1-based), not 2
                       [0.9, 0.8, 0.7, 0.6, 0.5],    # target 3; items 0 and 1 excluded: rank 2, not 4
                       [0.1, 0.2, 0.3, 0.4, 0.5]])   # target 0: last of 5
    result = rank_metrics(scores, [2, 3, 0], [[], [0, 1], [4]], k=2)
    # ranks 3, 2, 4 (item 4 excluded for user 2): hits only user 1 at rank 2
    assert result["hr@2"] == pytest.approx(1 / 3)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 3)
    assert result["mrr"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 4) / 3)
    # top-2: user 0 {0, 1 or 2}, user 1 {2, 3}, user 2 {3, 2}: items 0, 2, 3 and one of 1/2 -> 3 or 4 of 5
    assert result["coverage@2"] in (pytest.approx(3 / 5), pytest.approx(4 / 5))
    assert set(rank_metrics(scores, [0, 0, 0], [[], [], []])) == {"hr@10", "ndcg@10", "mrr", "coverage@10"}


def test_a_constant_scorer_gets_no_credit_and_coverage_counts_distinct_items() -> None:
    flat = rank_metrics(np.zeros((4, 50)), [0, 1, 2, 3], [[], [], [], []])
    assert flat["hr@10"] == 0.0 and flat["mrr"] == pytest.approx(1 / 50)
    same = np.tile(np.arange(50.0), (4, 1))   # every user the same list: coverage 10/50
    assert rank_metrics(same, [49, 48, 40, 0], [[], [], [], []])["coverage@10"] == pytest.approx(0.2)
    shifted = rank_metrics(same, [40, 40, 40, 40], [[49], [48], [47], [46]])  # each user loses one top item
    assert shifted["coverage@10"] == pytest.approx(11 / 50) and shifted["hr@10"] == 1.0
    # excluded items never fill a top k: 3 items, 2 excluded -> one item shown
    assert rank_metrics(np.array([[3.0, 2.0, 1.0]]), [2], [[0, 1]])["coverage@10"] == pytest.approx(1 / 3)


def test_metrics_refuse_what_cannot_be_ranked() -> None:
    with pytest.raises(ValueError, match="among the excluded"):
        rank_metrics(np.ones((1, 3)), [1], [[1]])
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.array([[np.nan, 1.0]]), [1], [[]])
    with pytest.raises(ValueError, match="targets for"):
        rank_metrics(np.ones((2, 3)), [1], [[], []])


def test_full_ranking_of_movielens_size_takes_milliseconds() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((943, 1682), dtype=np.float32)
    exclude = [rng.choice(1682, size=100, replace=False) for _ in range(943)]
    targets = [int(np.setdiff1d(np.arange(1682), row)[0]) for row in exclude]
    start = time.perf_counter()
    rank_metrics(scores, targets, exclude)
    assert time.perf_counter() - start < 0.5  # ~50 ms on 2 cores; a per-user Python loop takes seconds
