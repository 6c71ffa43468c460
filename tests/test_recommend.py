"""Recommendation (engineer B's half): the two towers, the sampled softmax, the co-occurrence step, the recipe,
`stepwise recommend`, `POST /v1/recommend` and the demo. Data and metrics are tested in test_recommend_data.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from stepwise.cli import main

GENRES = {"space": ["rocket", "orbit", "astronaut", "planet", "galaxy", "comet"],
          "cooking": ["bread", "pasta", "cheese", "spice", "noodle", "pastry"],
          "horror": ["ghost", "curse", "haunted", "cellar", "fog", "crow"]}


def run_cli(*argv: object, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_shop(tmp: Path, users: int = 36, seed: int = 0) -> dict[str, Path]:
    """18 items in 3 themes and a new one nobody has had; each user stays (mostly) in one theme."""
    rng = random.Random(seed)
    items = tmp / "items.tsv"
    lines = ["item_id\ttitle\tgenre"]
    for g, words in GENRES.items():
        lines += [f"{g[:2]}{n}\tThe {w} story\t{g}" for n, w in enumerate(words)]
    lines.append("new1\tThe comet and the rocket\tspace")
    items.write_text("\n".join(lines) + "\n")
    log = ["user\titem\ttimestamp\trating"]
    themes = list(GENRES)
    for u in range(users):
        g = themes[u % 3]
        picks = rng.sample(range(6), 5)
        for t, n in enumerate(picks):
            log.append(f"u{u}\t{g[:2]}{n}\t{1000 * u + t}\t{rng.choice([2, 4, 5])}")
    interactions = tmp / "log.tsv"
    interactions.write_text("\n".join(log) + "\n")
    return {"items": items, "interactions": interactions}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_shop(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def recommender_run(tiny_model: str, shop: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "rec"
    code = main(["train", "--task", "recommend", "--interactions", str(shop["interactions"]), "--items",
                 str(shop["items"]), "--out", str(out), "--model", tiny_model, "--epochs", "3", "--batch-size", "8",
                 "--sampled-negatives", "4", "--threads", "1", "--quiet"])
    assert code == 0
    return out


# --- the parts ---------------------------------------------------------------------------------------------


def test_history_text_is_newest_first_and_truncation_drops_the_oldest(tiny_model: str) -> None:
    from stepwise.model import load_tokenizer
    from stepwise.tasks.recommend.towers import history_text, recent

    assert recent(["a", "b", "c", "d"], 2) == ["d", "c"] and recent(["a"], 5) == ["a"]
    text = history_text(["newest film", "middle film", "oldest film"])
    assert text.index("newest") < text.index("middle") < text.index("oldest")
    tokenizer = load_tokenizer(tiny_model)
    ids = tokenizer(text, truncation=True, max_length=6)["input_ids"]
    kept = tokenizer.decode(ids, skip_special_tokens=True)
    assert "newest" in kept and "oldest" not in kept


def two_tower(tiny_model: str, id_rows: int):
    from stepwise.tasks.recommend.towers import TwoTower
    from stepwise.tasks.retrieve.model import BiEncoder

    torch.manual_seed(0)
    return TwoTower(BiEncoder.from_encoder(tiny_model), id_rows)


def test_hybrid_item_tower_adds_ids_only_for_items_seen_in_training(tiny_model: str) -> None:
    model = two_tower(tiny_model, 3)
    ids = torch.tensor([[101, 2000, 102], [101, 2001, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        model.ids.weight[2] = 0.01
        text = model.bi(ids, mask)
        both = model.items(ids, mask, torch.tensor([0, 2]))  # a cold item (row 0), a trained one
    assert torch.allclose(both[0], text[0])
    from stepwise.tasks.recommend.towers import ID_GAIN

    turned = text[1] + ID_GAIN * 0.01
    assert torch.allclose(both[1], turned / turned.norm(), atol=1e-6)  # turned, not lengthened
    assert torch.allclose(both.norm(dim=1), torch.ones(2), atol=1e-6)
    assert model.id_vectors()[0].abs().sum() == 0  # row 0 stays "no id"


def test_sampled_softmax_subtracts_log_q_and_masks_the_users_own_items(tiny_model: str) -> None:
    from stepwise.data.batching import collate
    from stepwise.tasks.recommend.objective import SampledSoftmax, features

    model = two_tower(tiny_model, 0)
    item_ids = [[101, 2000 + j, 102] for j in range(5)]
    counts = np.array([8.0, 1.0, 1.0, 0.0, 0.0])
    objective = SampledSoftmax(item_ids, [0] * 5, counts, 0, "fp32", sampled=0, batch_size=2)
    assert objective.log_q[0] > objective.log_q[1]  # the popular item is corrected down the most
    assert np.allclose(objective.log_q[:3], np.log(2 * counts[:3] / 10))
    batch = collate(features([[101, 2003, 102], [101, 2004, 102]], [0, 1], [[1, 2], [4]], item_ids), 0)
    loss, logs = objective(model, batch)
    with torch.no_grad():
        users = model.users(batch["input_ids"], batch["attention_mask"])
        items = collate([{"input_ids": item_ids[j]} for j in (0, 1)], 0)
        logits = model.scale * users @ model.items(items["input_ids"], items["attention_mask"]).T
        logits = logits - torch.from_numpy(objective.log_q[[0, 1]])
        logits[0, 1] = -1e4  # user 0 had item 1: not a negative for them
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert logs["candidates"] == 2


def test_cooccurrence_scores_and_fusion() -> None:
    from stepwise.tasks.recommend.cooccur import collaborative_scores, fuse, item_similarity, known_items, standardise

    histories = [[0, 1], [0, 1], [0, 2], [3]]
    sim = item_similarity(histories, 5).toarray()
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(3 * 2)) and sim[0, 2] == pytest.approx(1 / np.sqrt(3))
    assert sim[0, 0] == 0 and sim[4].sum() == 0 and sim[3, :3].sum() == 0  # no self, nothing for a cold item
    cut = item_similarity(histories, 5, neighbours=1).toarray()
    assert (cut[0] > 0).sum() == 1 and cut[0, 1] == pytest.approx(sim[0, 1])
    # recency: the newest item weighs 1, the one before `decay`
    scores = collaborative_scores([[2, 1]], item_similarity(histories, 5), 0.5)
    assert scores[0, 0] == pytest.approx(sim[1, 0] + 0.5 * sim[2, 0])
    text = np.array([[3.0, 1.0, 2.0]])
    assert fuse(text, np.ones((1, 3)), 0.0) is text
    assert np.allclose(fuse(text, np.array([[0.0, 2.0, 1.0]]), 1.0), standardise(text) + standardise(
        np.array([[0.0, 2.0, 1.0]])))
    # a cold item's missing collaborative score is the average, not the lowest: its text places it
    known = known_items(item_similarity(histories, 5))
    assert known.tolist() == [True, True, True, False, False]
    collab = np.array([[1.0, 3.0, 2.0, 0.0, 0.0]])
    fused = fuse(np.zeros((1, 5)), collab, 1.0, known)
    assert fused[0, 3] == 0 and fused[0, 0] < 0 < fused[0, 1]


def test_a_cold_item_borrows_the_cooccurrence_of_the_items_it_reads_like() -> None:
    from stepwise.tasks.recommend.cooccur import impute_cold, item_similarity

    sim = item_similarity([[0, 1], [0, 1], [0, 2]], 4)
    vectors = np.eye(4, dtype=np.float32)
    vectors[3] = [0.8, 0.0, 0.6, 0.0]  # item 3 (never interacted with) reads like items 0 and 2
    filled = impute_cold(sim, vectors, neighbours=2).toarray()
    before = sim.toarray()
    assert np.allclose(filled[:, :3], before[:, :3])  # known items keep their columns
    assert np.allclose(filled[:, 3], (0.8 * before[:, 0] + 0.6 * before[:, 2]) / 1.4, atol=1e-6)
    assert filled[1, 3] > 0 and filled[3].sum() == 0  # a user of item 1 now scores item 3; its row stays empty


# --- the recipe, the verb, the server --------------------------------------------------------------------


def test_recommender_run_reports_each_step(recommender_run: Path) -> None:
    results = json.loads((recommender_run / "results.json").read_text())
    assert results["task"] == "recommend"
    assert set(results["steps"]) == {"two_tower", "collaborative", "fused"}
    for step in results["steps"].values():
        assert set(step["test"]) >= {"hr@10", "ndcg@10", "mrr", "coverage@10"} and step["test"]["n"] == 36
    fusion = results["second_step"]
    assert results["test"] == results["steps"]["fused"]["test"] and fusion["weight"] in fusion["weights_tried"]
    # the fused dev score is the best of the grid, so never below the two towers alone
    assert results["steps"]["fused"]["dev"]["ndcg@10"] >= results["steps"]["two_tower"]["dev"]["ndcg@10"]
    assert results["data"] == {"interactions": 180, "users": 36, "items": 19, "cold_items": 0,
                               "skipped": {"duplicate": 0, "below_min_rating": 0, "user_one_interaction": 0}}
    assert results["examples"]["train"] == 36  # the default budget: each user's most recent training prefix
    report = (recommender_run / "report.txt").read_text()
    assert "co-occurrence alone" in report and "== test (36 users) ==" in report
    # the collaborative step learnt the themes: within-theme co-occurrence carries the test item into the top 10
    assert results["steps"]["collaborative"]["test"]["hr@10"] > 0.5


def test_recommend_verb(recommender_run: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli("recommend", recommender_run, "--user", "u0", "--k", 5, "--threads", 1, capsys=capsys)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 5 and set(records[0]) == {"item", "text", "score"}
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    log = (recommender_run / "model" / "recommend" / "users.jsonl").read_text()
    seen = next(json.loads(x)["items"] for x in log.splitlines() if json.loads(x)["user"] == "u0")
    code, out, _ = run_cli("recommend", recommender_run, "--user", "u0", "--k", 19, "--exclude-seen", "--threads", 1,
                           capsys=capsys)
    kept = [json.loads(line)["item"] for line in out.splitlines()]
    assert code == 0 and len(kept) == 19 - len(seen) and not set(kept) & set(seen)
    # a user is their history: --user and --history of the same items agree
    code, out2, _ = run_cli("recommend", recommender_run, "--history", ",".join(seen), "--k", 19, "--exclude-seen",
                            "--threads", 1, capsys=capsys)
    assert out2 == out
    from stepwise.tasks.recommend.recommender import Recommender

    rec = Recommender.open(recommender_run, threads=1)
    assert [r["item"] for r in rec.recommend(history=seen, k=19, exclude_seen=True)] == kept
    assert rec.recommend(history=[rec.items[0]], k=3) != rec.recommend(history=[rec.items[-2]], k=3)


@pytest.mark.parametrize("flags, message", [
    (["--user", "nobody"], "unknown user 'nobody'"),
    (["--history", "sp0,zzz"], "unknown item 'zzz'"),
    (["--history", "sp0,,sp1"], "empty item id"),
    (["--user", "u0", "--k", "0"], "--k must be at least 1"),
    ([], "give --user U or --history"),
    (["--user", "u0", "--history", "sp0"], "not allowed with argument --user")])
def test_recommend_verb_bad_input_is_one_line(recommender_run: Path, flags: list[str], message: str,
                                              capsys: pytest.CaptureFixture) -> None:
    try:
        code, _, err = run_cli("recommend", recommender_run, *flags, capsys=capsys)
    except SystemExit as exited:  # argparse's own refusals exit from the parser
        code, err = exited.code, capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_recommend_refuses_other_runs_and_predict_refuses_a_recommender(recommender_run: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli("recommend", tmp_path / "missing", "--user", "u0", capsys=capsys)
    assert code == 2 and "not found" in err
    (tmp_path / "q.txt").write_text("a film\n")
    code, _, err = run_cli("predict", recommender_run, "--input", tmp_path / "q.txt", capsys=capsys)
    assert code == 2 and "a recommender has no labels to predict" in err and "stepwise recommend" in err


@pytest.mark.parametrize("extra, message", [
    (["--dev", "x.tsv"], "--dev is not available for recommender runs"),
    (["--hard-negatives", "3"], "--hard-negatives is not available for recommender runs"),
    (["--no-items"], "--items is required for --task recommend"),
    (["--metric", "accuracy"], "not a recommendation metric")])
def test_train_bad_options_are_one_line(shop: dict[str, Path], tiny_model: str, tmp_path: Path, extra: list[str],
                                        message: str, capsys: pytest.CaptureFixture) -> None:
    items = [] if "--no-items" in extra else ["--items", str(shop["items"])]
    extra = [e for e in extra if e != "--no-items"]
    code, _, err = run_cli("train", "--task", "recommend", "--interactions", shop["interactions"], *items, "--out",
                           tmp_path / "r", "--model", tiny_model, *extra, capsys=capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_train_refuses_an_item_the_catalogue_lacks(shop: dict[str, Path], tiny_model: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    log = tmp_path / "log.tsv"
    log.write_text(shop["interactions"].read_text() + "u1\tghost-item\t99999\t5\n")
    code, _, err = run_cli("train", "--task", "recommend", "--interactions", log, "--items", shop["items"], "--out",
                           tmp_path / "r", "--model", tiny_model, capsys=capsys)
    assert code == 2 and "item 'ghost-item' is not in the item file" in err and not (tmp_path / "r").exists()


def test_the_item_index_is_a_stepwise_index(recommender_run: Path, shop: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    from stepwise.tasks.retrieve.index import Index

    index = Index.load(recommender_run / "model" / "recommend" / "items")
    assert [p.id for p in index.passages][-1] == "new1" and index.vectors.shape[0] == 19
    # the run's encoder is a retrieval bi-encoder: `stepwise index` embeds new item texts with it
    (tmp_path / "more.tsv").write_text("id\ttext\nx1\tThe haunted cellar story\n")
    code, _, err = run_cli("index", recommender_run, "--passages", tmp_path / "more.tsv", "--out", tmp_path / "ix",
                           "--threads", 1, capsys=capsys)
    assert code == 0, err
    assert Index.load(tmp_path / "ix").fingerprint == index.fingerprint


def test_recommend_over_http(recommender_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`stepwise serve RUN` of a recommender: a real server on 127.0.0.1; records equal the CLI's; bad → 4xx."""
    from tests.test_serve import Server, call

    code, out, _ = run_cli("recommend", recommender_run, "--user", "u3", "--k", 4, "--threads", 1, capsys=capsys)
    expected = [json.loads(line) for line in out.splitlines()]
    server = Server(recommender_run, log=tmp_path / "serve.log")
    try:
        server.wait_ready()
        status, _, body = call(server.url + "/v1/recommend", {"user": "u3", "k": 4})
        got = json.loads(body)["recommendations"]
        assert status == 200 and [r["item"] for r in got] == [r["item"] for r in expected]
        assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-4)
        status, _, body = call(server.url + "/v1/recommend", {"history": ["sp1", "sp2"], "k": 3, "exclude_seen": True})
        assert status == 200 and {"sp1", "sp2"}.isdisjoint(r["item"] for r in json.loads(body)["recommendations"])
        for bad, want in [({"user": "nobody"}, 404), ({"history": ["sp1", "nope"]}, 404), ({}, 422),
                          ({"user": "u3", "history": ["sp1"]}, 422), ({"history": []}, 422), ({"user": 5}, 422),
                          ({"user": "u3", "k": 0}, 422), ({"user": "u3", "extra": 1}, 422), ({"history": "sp1"}, 422),
                          ([1, 2], 422), ({"user": "\ud800"}, 422)]:
            status, _, body = call(server.url + "/v1/recommend", raw=json.dumps(bad).encode())
            assert status == want, (bad, body)
            assert json.loads(body)["error"]
        status, _, body = call(server.url + "/v1/model")
        info = json.loads(body)
        assert status == 200 and info["task"] == "recommend" and info["items"] == 19 and info["users"] == 36
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_recommend_demo_finds_the_new_film_by_its_text(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`stepwise demo --app recommend` on the real MiniLM: the science-fiction fan gets science fiction, the new
    film (no viewings) among their first five by its text, and not among the food-documentary fan's ten."""
    assert main(["demo", "--app", "recommend", "--out", str(tmp_path / "demo"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    space = result["recommendations"]["u001"]
    assert all("Science fiction" in r["text"] for r in space[:3])
    assert result["new_item_rank"]["u001"] <= 5 and result["new_item_rank"]["u002"] > 10
    assert result["run"]["steps"]["fused"]["test"]["hr@10"] > 0.6
