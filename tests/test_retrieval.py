"""Retrieval: pairs and pools, ranking metrics, the index, the bi-encoder run, mining, answering, abstaining."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stepwise.cli import main
from stepwise.errors import StepwiseError
from stepwise.tasks.retrieve.data import Passage, read_pairs, read_pool, read_queries
from stepwise.tasks.retrieve.index import Index
from stepwise.tasks.retrieve.metrics import ranking_metrics, ranks


def run_cli(*argv: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- data --------------------------------------------------------------------------------------------


def test_pairs_read_from_jsonl_and_tsv(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": "a1", "category": "roof", "question": "a leak?", "answer": "We fix leaks."}\n\n'
                     '{"query": "cost?", "passage": "It costs 5."}\n')
    pairs = read_pairs(jsonl)
    assert [(p.query, p.passage.id, p.passage.category, p.line) for p in pairs] == [
        ("a leak?", "a1", "roof", 1), ("cost?", pairs[1].passage.id, None, 3)]
    assert pairs[1].passage.id.startswith("p")  # an id from the text
    tsv = tmp_path / "p.tsv"
    tsv.write_text("query\tpassage\nwhat is x\tx is a thing\nwhat is y\tx is a thing\n")
    rows = read_pairs(tsv)
    assert [r.query for r in rows] == ["what is x", "what is y"] and rows[0].passage.id == rows[1].passage.id


@pytest.mark.parametrize("content, message, line", [
    ('{"question": "q"}\n', "no a passage", 1),
    ('{"query": "q", "passage": "p"}\n{"query": "", "passage": "p"}\n', "the query is empty", 2),
    ('{"query": "q", "passage": 5}\n', "must be a string", 1),
    ("[1, 2]\n", "JSON object", 1)])
def test_bad_pair_files_name_the_line(tmp_path: Path, content: str, message: str, line: int) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(StepwiseError) as err:
        read_pairs(path)
    assert message in err.value.problem and err.value.line == line


def test_pools_refuse_duplicate_ids_and_emptiness(tmp_path: Path) -> None:
    dup = tmp_path / "pool.jsonl"
    dup.write_text('{"id": "x", "text": "one"}\n{"id": "x", "text": "two"}\n')
    with pytest.raises(StepwiseError, match="duplicate passage id 'x' \\(first on line 1\\)"):
        read_pool(dup)
    plain = tmp_path / "pool.txt"
    plain.write_text("first passage\nsecond passage\n")
    assert [(p.id, p.text) for p in read_pool(plain)] == [("1", "first passage"), ("2", "second passage")]
    (tmp_path / "empty.tsv").write_text("\n\n")
    with pytest.raises(StepwiseError, match="empty"):
        read_pool(tmp_path / "empty.tsv")


def test_blank_query_lines_are_kept_one_output_each(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("first\n\n  \nlast\n")
    assert read_queries(path) == ["first", "", "", "last"]


# --- metrics and index --------------------------------------------------------------------------------


def test_ranking_metrics_on_known_ranks() -> None:
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8], [0.5, 0.5, 0.1]])
    rank = ranks(scores, [0, 0, 1])  # first; second; tied with another → counted below it
    assert rank.tolist() == [1, 2, 2]
    m = ranking_metrics(rank)
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@5"] == 1.0
    assert m["mrr@10"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 2 / np.log2(3)) / 3)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_index_searches_saves_loads_and_appends(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(50, 8)))
    passages = [Passage(f"id{i}", f"text {i}") for i in range(50)]
    index = Index.build(tmp_path / "ix", passages, vectors, {"fingerprint": "abc"}, "run", "/runs/r")
    scores, rows = index.search(vectors[[3, 7]], 5)
    assert rows[:, 0].tolist() == [3, 7] and np.all(np.diff(scores, axis=1) <= 0)
    index.save()
    again = Index.load(tmp_path / "ix")
    assert again.meta["id"] == index.meta["id"] and np.array_equal(again.search(vectors[[3]], 3)[1], rows[:1, :3])
    with pytest.raises(StepwiseError, match="already in the index"):
        again.add([Passage("id4", "dup")], vectors[:1], "new.jsonl")
    again.add([Passage("new", "a new one")], unit(rng.normal(size=(1, 8))), "new.jsonl")
    assert again.search(again.vectors[[-1]], 1)[1].tolist() == [[50]]
    with pytest.raises(StepwiseError, match="another model"):
        again.check_model("zzz", "runs/other")


def test_large_indexes_use_hnsw_with_the_same_top_hits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faiss")
    import stepwise.tasks.retrieve.index as ix

    monkeypatch.setattr(ix, "ANN_FROM", 100)
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(400, 16)))
    index = Index.build(tmp_path / "ann", [Passage(str(i), f"t{i}") for i in range(400)], vectors,
                        {"fingerprint": "f"}, "run", "/r")
    assert index.meta["search"] == "hnsw" and index.ann is not None
    exact = (vectors[:20] @ vectors.T).argmax(axis=1)
    assert np.array_equal(index.search(vectors[:20], 1)[1][:, 0], exact)
    index.save()
    assert Index.load(tmp_path / "ann").search(vectors[:20], 1)[1][:, 0].tolist() == exact.tolist()


# --- the bi-encoder run and the verbs --------------------------------------------------------------


@pytest.fixture(scope="module")
def retriever(tiny_model: str, faq_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    import stepwise

    out = tmp_path_factory.mktemp("retriever") / "run"
    stepwise.train(task="retrieve", train=str(faq_files["train"]), dev=str(faq_files["dev"]),
                   test=str(faq_files["test"]), pool=str(faq_files["pool"]), model=tiny_model, out=str(out),
                   epochs=10, batch_size=16, lr=3e-3, precision="fp32", threads=1, quiet=True, hard_negatives=3,
                   patience=None)
    return out


def test_the_retriever_learns_to_rank_unseen_questions(retriever: Path) -> None:
    results = json.loads((retriever / "results.json").read_text())
    assert results["task"] == "retrieve" and results["pool"]["passages"] == 24
    chance = sum(1 / r for r in range(1, 11)) / 24  # MRR@10 of a random ranking of 24 passages
    assert results["test"]["mrr@10"] > 2 * chance and results["dev"]["mrr@10"] > 2 * chance
    assert results["hard_negatives"]["k"] == 3 and results["train"]["steps"] == 30
    meta = json.loads((retriever / "model" / "stepwise.json").read_text())
    assert meta["kind"] == "bi-encoder" and len(meta["fingerprint"]) == 16
    assert "mrr@10" in (retriever / "report.txt").read_text()


def test_a_retriever_run_is_refused_by_predict(retriever: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "q.txt").write_text("hello\n")
    code, out, err = run_cli("predict", retriever, "--input", tmp_path / "q.txt", capsys=capsys)
    assert code == 2 and "stepwise index" in err and len(err.strip().splitlines()) == 1


def test_index_mine_rerank_calibrate_answer(retriever: Path, faq_files: dict[str, Path], tiny_model: str,
                                           tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli("index", retriever, "--passages", faq_files["pool"], "--out", tmp_path / "ix",
                           "--threads", 1, "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["passages"] == 24 and json.loads(out)["search"] == "exact"

    code, out, _ = run_cli("mine", retriever, "--pairs", faq_files["train"], "--pool", faq_files["pool"],
                           "--out", tmp_path / "rerank.jsonl", "--negatives", 2, "--json", capsys=capsys)
    lines = [json.loads(x) for x in (tmp_path / "rerank.jsonl").read_text().splitlines()]
    assert code == 0 and len(lines) == 3 * len(read_pairs(faq_files["train"]))
    assert [x["label"] for x in lines[:3]] == ["relevant", "other", "other"] and lines[1]["text_pair"] != \
        lines[0]["text_pair"]
    code, _, err = run_cli("train", "--task", "classify", "--train", tmp_path / "rerank.jsonl", "--pair-column",
                           "text_pair", "--model", tiny_model, "--out", tmp_path / "rerank", "--epochs", 2,
                           "--precision", "fp32", "--threads", 1, "--quiet", capsys=capsys)
    assert code == 0, err

    oos = tmp_path / "oos.txt"
    oos.write_text("what is the capital of france\nsing me a song\ntell me a joke about cats\n"
                   "who won the football match\nwhat time is it in tokyo\nrecommend a good novel\n")
    code, out, err = run_cli("answer", tmp_path / "ix", "--dev", faq_files["dev"], "--oos-dev", oos,
                             "--target-precision", 0.5, "--json", "--threads", 1, capsys=capsys)
    report = json.loads(out)
    assert code == 0 and report["scorer"]["kind"] == "retrieval" and report["dev"]["out_of_scope"] == 6
    assert 0 <= report["dev"]["auroc"] <= 1 and (tmp_path / "ix" / "calibration.json").is_file()
    assert [s["step"] for s in report["dev"]["steps"]] == ["retrieve", "answer or abstain"]
    assert report["dev"]["steps"][0]["recall@1"] == report["dev"]["recall@1"]
    retrieve_only = report["dev"]["recall@1"]

    queries = tmp_path / "queries.txt"
    queries.write_text("how do i roof tiles?\n\nsing me a song\n")
    code, out, err = run_cli("answer", tmp_path / "ix", "--input", queries, "--k", 3, "--threads", 1, capsys=capsys)
    records = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(records) == 3 and records[1] == {"query": "", "answers": [], "abstain": True,
                                                              "reason": "empty query"}
    for record in (records[0], records[2]):
        assert len(record["answers"]) == 3 and record["answers"][0]["score"] >= record["answers"][1]["score"]
        assert record["abstain"] == (record["answers"][0]["score"] < report["threshold"])

    # the threshold was set without the reranker: with it, the stored one does not apply
    code, _, err = run_cli("answer", tmp_path / "ix", "--input", queries, "--rerank", tmp_path / "rerank",
                           capsys=capsys)
    assert code == 2 and "calibrated without --rerank" in err
    code, out, err = run_cli("answer", tmp_path / "ix", "--dev", faq_files["dev"], "--oos-dev", oos,
                             "--rerank", tmp_path / "rerank", "--rerank-k", 5, "--input", queries, capsys=capsys)
    records = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and "calibrated: abstain below" in err and len(records) == 3
    calibration = json.loads((tmp_path / "ix" / "calibration.json").read_text())
    steps = calibration["dev"]["steps"]
    assert [s["step"] for s in steps] == ["retrieve", "rerank", "answer or abstain"]
    # step 1 is the retriever alone, as calibrated before; step 2 is what the reranker made of it
    assert steps[0]["recall@1"] == retrieve_only and steps[1]["recall@1"] == calibration["dev"]["recall@1"]
    assert f"retrieve {100 * retrieve_only:.1f} → rerank" in err
    assert all(0 <= a["score"] <= 1 for a in records[0]["answers"])  # reranker probabilities

    # a calibration copied from another index is refused
    shutil.copytree(tmp_path / "ix", tmp_path / "ix2")
    code, _, _ = run_cli("index", retriever, "--passages", faq_files["pool"], "--out", tmp_path / "ix2",
                         capsys=capsys)
    assert code == 0 and not (tmp_path / "ix2" / "calibration.json").exists()  # a rebuilt index starts uncalibrated
    shutil.copy(tmp_path / "ix" / "calibration.json", tmp_path / "ix2" / "calibration.json")
    code, _, err = run_cli("answer", tmp_path / "ix2", "--input", queries, "--rerank", tmp_path / "rerank",
                           capsys=capsys)
    assert code == 2 and "another index" in err


def test_an_index_refuses_another_models_queries_and_appends(retriever: Path, faq_files: dict[str, Path],
                                                             tiny_model: str, tmp_path: Path, capsys) -> None:
    import stepwise

    other = tmp_path / "other"
    stepwise.train(task="retrieve", train=str(faq_files["train"]), dev=str(faq_files["dev"]), model=tiny_model,
                   out=str(other), max_steps=2, precision="fp32", threads=1, quiet=True)
    assert run_cli("index", retriever, "--passages", faq_files["pool"], "--out", tmp_path / "ix",
                   capsys=capsys)[0] == 0
    code, _, err = run_cli("answer", tmp_path / "ix", "--encoder", other, "--input", faq_files["pool"], capsys=capsys)
    assert code == 2 and "built with another model" in err
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "new-1", "answer": "We also build saunas."}\n')
    code, _, err = run_cli("index", other, "--add", more, "--out", tmp_path / "ix", capsys=capsys)
    assert code == 2 and "built with another model" in err
    code, out, _ = run_cli("index", retriever, "--add", more, "--out", tmp_path / "ix", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["passages"] == 25
    code, _, err = run_cli("index", retriever, "--add", more, "--out", tmp_path / "ix", capsys=capsys)
    assert code == 2 and "already in the index" in err


@pytest.mark.parametrize("case", ["empty pool", "duplicate ids", "no passages", "out is a run"])
def test_bad_index_inputs_write_nothing(retriever: Path, tmp_path: Path, case: str, capsys) -> None:
    pool = tmp_path / "pool.jsonl"
    out = tmp_path / "ix"
    if case == "empty pool":
        pool.write_text("\n")
    elif case == "duplicate ids":
        pool.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    elif case == "no passages":
        pool.write_text('{"id": "a", "question": "only a question"}\n')
    else:
        pool.write_text('{"id": "a", "text": "x"}\n')
        out = retriever
    code, _, err = run_cli("index", retriever, "--passages", pool, "--out", out, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "ix").exists() and (retriever / "model" / "stepwise.json").is_file()


def test_the_int8_export_embeds_for_the_same_index(retriever: Path, faq_files: dict[str, Path], tmp_path: Path,
                                                   capsys) -> None:
    pytest.importorskip("onnxruntime")
    code, out, err = run_cli("export", retriever, "--int8", "--out", tmp_path / "int8", "--json", capsys=capsys)
    assert code == 0, err
    parity = json.loads(out)["parity"]
    assert parity["metric_torch"] - parity["metric_onnx"] <= 0.01 and parity["texts"] == 48
    code, out, _ = run_cli("index", tmp_path / "int8", "--passages", faq_files["pool"], "--out", tmp_path / "ix",
                           "--json", capsys=capsys)
    assert code == 0 and "ONNX int8" in json.loads(out)["model"]
    queries = tmp_path / "q.txt"
    queries.write_text("how do i roof tiles?\n")
    code, via_export, _ = run_cli("answer", tmp_path / "ix", "--input", queries, capsys=capsys)
    code2, via_run, _ = run_cli("answer", tmp_path / "ix", "--input", queries, "--encoder", retriever, capsys=capsys)
    assert code == code2 == 0  # one model, two backends: the index accepts both
    top = [json.loads(x)["answers"][0]["id"] for x in (via_export, via_run)]
    assert top[0] == top[1]


def test_answer_over_http(retriever: Path, faq_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    """`stepwise serve INDEX`: a real server on 127.0.0.1; the records equal the CLI's; bad requests are 4xx."""
    from tests.test_serve import Server, call

    assert run_cli("index", retriever, "--passages", faq_files["pool"], "--out", tmp_path / "ix", capsys=capsys)[0] == 0
    queries = ["how do i roof tiles?", "", "question on kitchen and sink"]
    (tmp_path / "q.txt").write_text("\n".join(queries) + "\n")
    code, out, _ = run_cli("answer", tmp_path / "ix", "--input", tmp_path / "q.txt", "--k", 2, "--threads", 1,
                           capsys=capsys)
    expected = [json.loads(x) for x in out.splitlines()]
    server = Server(tmp_path / "ix", "--k", "2", log=tmp_path / "serve.log")
    try:
        server.wait_ready()
        status, _, body = call(server.url + "/v1/answer", {"queries": queries})
        answers = json.loads(body)["answers"]
        assert status == 200 and [a["query"] for a in answers] == queries
        for got, want in zip(answers, expected):
            assert [a["id"] for a in got["answers"]] == [a["id"] for a in want["answers"]]
            assert [a["score"] for a in got["answers"]] == pytest.approx([a["score"] for a in want["answers"]],
                                                                         abs=2e-3)
        for bad, want, field in [({"queries": []}, 422, "queries"), ({"queries": "one"}, 422, "queries"),
                                 ({"q": ["x"]}, 422, "queries"), ({"queries": ["x" * 5000]}, 413, "queries[0]")]:
            status, _, body = call(server.url + "/v1/answer", bad)
            assert (status, json.loads(body)["field"]) == (want, field)
        status, _, body = call(server.url + "/v1/model")
        info = json.loads(body)
        assert status == 200 and info["task"] == "answer" and info["passages"] == 24 and not info["calibrated"]
        status, _, body = call(server.url + "/v1/predict", {"texts": ["x"]})
        assert status == 404 and "error" in json.loads(body)
        assert fuzz_finds(server.url) == []
    finally:
        assert server.stop() == 0


def fuzz_finds(url: str, examples: int = 40) -> list[str]:
    """Schemathesis on /v1/answer from the server's own schema, valid and invalid bodies: any 5xx, or a 4xx
    that is not one JSON error line, is a finding."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    problems: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().path == "/v1/answer"]
    assert operations, "the schema has no /v1/answer"
    for mode in schemathesis.GenerationMode:

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operations[0].as_strategy(mode))
        def run(case) -> None:
            response = case.call(base_url=url)
            if response.status_code >= 500:
                problems.append(f"{response.status_code}: {response.text[:200]}")
            elif response.status_code >= 400:
                try:
                    ok = isinstance(json.loads(response.text).get("error"), str)
                except (ValueError, AttributeError):
                    ok = False
                if not ok:
                    problems.append(f"{response.status_code} not one JSON error: {response.text[:200]}")

        run()
    return problems
