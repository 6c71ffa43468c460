"""`stepwise serve` as a real server process on 127.0.0.1: predictions, batching, limits, auth, SIGTERM, fuzzing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import stepwise
from tests.conftest import tiny_options, toy_ner, toy_sentences, toy_splits, write_conll

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`stepwise serve RUN ...` in its own process; stops with SIGTERM."""

    def __init__(self, run: Path, *flags: str, env: dict[str, str] | None = None, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stepwise", "serve", str(run), "--port", str(self.port), "--threads", "1", *flags],
            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})

    def wait_ready(self, headers: dict[str, str] | None = None, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if call(self.url + "/readyz", headers=headers)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready: {self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def call(url: str, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
         method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})},
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def predict(server: Server, body: Any, **kw: Any) -> tuple[int, Any]:
    status, _, content = call(server.url + "/v1/predict", body, **kw)
    return status, json.loads(content)


def predict_when_loaded(server: Server, body: Any, timeout: float = 90) -> tuple[int, Any]:
    """As a client of several workers should: a 503 with Retry-After (a worker still loading) is retried."""
    deadline = time.monotonic() + timeout
    while True:
        status, headers, content = call(server.url + "/v1/predict", body)
        if status != 503 or "retry-after" not in {k.lower() for k in headers} or time.monotonic() > deadline:
            return status, json.loads(content)
        time.sleep(0.2)


def burst(server: Server, n: int = 8) -> None:
    """n simultaneous one-text requests (their answers are not looked at)."""
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda t: predict(server, {"texts": [t]}), ["good"] * n))


def make_concurrent(server: Server) -> None:
    """Bursts of simultaneous requests until one burst was served by a single merged batch.

    That batch was the server's last, so from then on a batch waits its window. (A burst that merged
    some of its requests but ended in a lone one leaves the server in its no-wait mode.)
    """
    def counts() -> tuple[float, float]:
        text = call(server.url + "/metrics")[2].decode()
        return metric(text, "stepwise_batch_requests_sum"), metric(text, "stepwise_batch_requests_count")

    for _ in range(20):
        before = counts()
        burst(server)
        after = counts()
        if (after[0] - before[0], after[1] - before[1]) == (8, 1):
            return
    raise AssertionError("no burst of 8 simultaneous requests was served in one batch")


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples (all label values)."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.fixture(scope="module")
def cls_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("serve_cls")
    files = toy_splits(tmp)
    return stepwise.train(**tiny_options(tiny_model, files, tmp / "run", epochs=4)).path


@pytest.fixture(scope="module")
def server(cls_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default server, with a long batching window so concurrent requests surely meet."""
    srv = Server(cls_run, "--max-wait-ms", "150", "--max-items", "16", "--max-text-chars", "500",
                 "--max-body-bytes", "20000", log=tmp_path_factory.mktemp("serve") / "server.log")
    srv.wait_ready()
    yield srv
    assert srv.stop() == 0, srv.log.read_text()


def test_predictions_equal_the_cli(server: Server, cls_run: Path, tmp_path: Path) -> None:
    texts = [t for t, _ in toy_sentences(12, 5)] + ["   "]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    cli = subprocess.run([sys.executable, "-m", "stepwise", "predict", str(cls_run), "--input",
                          str(tmp_path / "in.txt"), "--format", "jsonl", "--threads", "1"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    status, got = predict(server, {"texts": texts})
    assert status == 200
    records = got["predictions"]
    assert [r["label"] for r in records] == [r["label"] for r in expected]
    assert records[-1] == {"text": "   ", "label": None, "note": "no text"}
    for mine, theirs in zip(records[:-1], expected[:-1]):
        assert mine["text"] == theirs["text"]
        assert mine["probs"] == pytest.approx(theirs["probs"], abs=1e-4)


def test_concurrent_requests_share_batches(server: Server) -> None:
    before = call(server.url + "/metrics")[2].decode()
    texts = [t for t, _ in toy_sentences(16, 6)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda t: predict(server, {"texts": [t]}), texts))
    assert all(status == 200 and len(body["predictions"]) == 1 for status, body in results)
    assert [body["predictions"][0]["text"] for _, body in results] == texts  # each got its own answer back
    after = call(server.url + "/metrics")[2].decode()
    batches = metric(after, "stepwise_batch_requests_count") - metric(before, "stepwise_batch_requests_count")
    merged = metric(after, "stepwise_batch_requests_sum") - metric(before, "stepwise_batch_requests_sum")
    assert merged == 16
    assert batches <= 8, f"16 concurrent requests ran in {batches} batches: not merged"
    assert metric(after, "stepwise_batch_items_sum") - metric(before, "stepwise_batch_items_sum") == 16
    assert 'stepwise_requests_total{endpoint="/v1/predict",status="200"}' in after
    assert "stepwise_request_latency_seconds_bucket" in after and "stepwise_queue_depth" in after


@pytest.mark.parametrize("body, raw, status, field", [
    ({"texts": []}, None, 422, "texts"),
    ({"texts": [3]}, None, 422, "texts[0]"),
    ({"texts": "one text"}, None, 422, "texts"),
    ({"texts": ["x"], "steps": 0}, None, 422, "steps"),
    ({"texts": ["x"], "keep": "worst"}, None, 422, "keep"),
    ({"texts": ["x"], "color": "red"}, None, 422, "color"),
    ({"texts": ["x"], "pairs": ["y"]}, None, 422, "pairs"),  # not a text-pair model
    (None, b'{"texts": ["x"', 422, "body"),
    (None, b"\xff\xfe not json", 422, "body"),
    ({}, None, 422, "texts"),
    ({"texts": ["x"] * 17}, None, 413, "texts"),
    ({"texts": ["word " * 101]}, None, 413, "texts[0]"),
    ({"texts": ["a" * 100] * 16 + ["b"] * 0, "pad": "z" * 20000}, None, 413, "body"),
])
def test_bad_requests_get_one_json_line(server: Server, body: Any, raw: bytes | None, status: int, field: str) -> None:
    got, headers, content = call(server.url + "/v1/predict", body, raw=raw)
    assert got == status, content
    assert b"\n" not in content.strip()
    error = json.loads(content)
    assert error["field"] == field and error["error"].startswith(field)


def test_form_encoded_curl_style_body_is_read_as_json(server: Server) -> None:
    status, body = predict(server, None, raw=b'{"texts": ["a good film"]}',
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and body["predictions"][0]["text"] == "a good film"


def test_model_health_and_unknown_paths(server: Server) -> None:
    status, _, content = call(server.url + "/v1/model")
    info = json.loads(content)
    assert status == 200 and info["task"] == "classify" and info["labels"] == ["neg", "pos"]
    assert info["backend"] == "torch" and info["version"] == stepwise.__version__ and info["multi_step"] is False
    assert call(server.url + "/healthz")[0] == 200
    assert json.loads(call(server.url + "/openapi.json")[2])["paths"]["/v1/predict"]
    status, _, content = call(server.url + "/nowhere")
    assert status == 404 and json.loads(content)["error"]
    status, _, content = call(server.url + "/healthz", method="DELETE")
    assert status == 405 and json.loads(content)["error"]


def test_guide_curl_example(server: Server, cls_run: Path) -> None:
    """The serve guide's curl commands, pointed at this server, return exactly what the run predicts and says."""
    guide = (ROOT / "docs" / "guides" / "serve.md").read_text()
    match = re.search(r"<!-- serve-example[^>]*-->\s*```bash\n(.*?)```", guide, re.S)
    assert match, "docs/guides/serve.md lost its serve example"
    commands = [line for line in match.group(1).splitlines() if line.startswith("curl")]
    assert [re.search(r"localhost:8000(\S*)", c).group(1) for c in commands] == ["/v1/predict", "/v1/model", "/healthz"]
    predictor = stepwise.load(cls_run, backend="torch", threads=1)
    for command in commands:
        command = command.replace("localhost:8000", f"127.0.0.1:{server.port}")
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout
        body = json.loads(out)
        if "/v1/predict" in command:
            texts = json.loads(re.search(r"-d '(.*)'", command).group(1))["texts"]
            records = body["predictions"]
            assert [r["text"] for r in records] == texts
            assert [r["label"] for r in records] == predictor.predict(texts)
            for record, probs in zip(records, predictor.predict_proba(texts)):
                assert set(record) == {"text", "label", "probs"}
                assert record["probs"] == pytest.approx(dict(zip(predictor.labels, probs.tolist())), abs=1e-4)
        elif "/v1/model" in command:
            assert body["task"] == "classify" and body["labels"] == ["neg", "pos"], body
        else:
            assert body == {"status": "alive"}, body


def test_fuzzing_the_openapi_schema_finds_no_server_error(server: Server) -> None:
    """Schemathesis generates valid and invalid requests from the schema: no 5xx, every 4xx one JSON error."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    problems: list[str] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    strategies = [(op.as_strategy(mode), 100) for op in operations if op.method.upper() == "POST"
                  for mode in schemathesis.GenerationMode]  # valid and invalid bodies
    strategies += [(op.as_strategy(), 5) for op in operations if op.method.upper() != "POST"]
    for strategy, examples in strategies:

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            nonlocal calls
            response = case.call(base_url=server.url)
            calls += 1
            if response.status_code >= 500:
                problems.append(f"{case.method} {case.path}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400:
                try:
                    body = json.loads(response.text)
                    ok = isinstance(body, dict) and isinstance(body.get("error"), str) and "\n" not in response.text
                except ValueError:
                    ok = False
                if not ok:
                    problems.append(f"{case.method} {case.path}: {response.status_code} not one JSON error: "
                                    f"{response.text[:200]}")

        run()
    assert calls >= 200
    assert not problems, problems[:5]
    metrics_text = call(server.url + "/metrics")[2].decode()
    assert metric(metrics_text, "stepwise_errors_total") > 0  # the fuzzer did send bad requests
    assert not re.search(r'status="5\d\d"', metrics_text)


def test_api_key(cls_run: Path, tmp_path: Path) -> None:
    key = "s3cret-key-for-tests"
    srv = Server(cls_run, "--api-key-env", "STEPWISE_TEST_KEY", env={"STEPWISE_TEST_KEY": key}, log=tmp_path / "log")
    try:
        srv.wait_ready(headers={"Authorization": f"Bearer {key}"})
        assert call(srv.url + "/healthz")[0] == 200  # open without the key
        for path in ("/readyz", "/metrics", "/v1/model", "/openapi.json"):
            assert call(srv.url + path)[0] == 401, path
        status, body = predict(srv, {"texts": ["good"]})
        assert status == 401 and body["field"] == "api_key"
        assert predict(srv, {"texts": ["good"]}, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert predict(srv, {"texts": ["good"]}, headers={"X-API-Key": key[:-1]})[0] == 401
        assert predict(srv, {"texts": ["good"]}, headers={"Authorization": f"Bearer {key}"})[0] == 200
        assert predict(srv, {"texts": ["good"]}, headers={"X-API-Key": key})[0] == 200
    finally:
        assert srv.stop() == 0
    assert key not in (tmp_path / "log").read_text()


def test_missing_key_variable_and_bad_run_fail_in_one_line(cls_run: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY_VAR"}
    for args in (["--api-key-env", "NO_SUCH_KEY_VAR"], ["--max-batch", "0"]):
        out = subprocess.run([sys.executable, "-m", "stepwise", "serve", str(cls_run), "--port", str(free_port()),
                              *args], capture_output=True, text=True, cwd=ROOT, env=env)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "error" in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "stepwise", "serve", str(tmp_path / "nothing")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = subprocess.run([sys.executable, "-m", "stepwise", "serve", str(cls_run), "--port",
                              str(taken.getsockname()[1])], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "cannot listen" in out.stderr


def test_sigterm_finishes_in_flight_requests(cls_run: Path, tmp_path: Path) -> None:
    """Requests waiting in a 2-second batching window when SIGTERM arrives are all answered; exit 0."""
    srv = Server(cls_run, "--max-wait-ms", "2000", log=tmp_path / "log")
    srv.wait_ready()
    make_concurrent(srv)  # so the next batch waits its full window
    texts = [t for t, _ in toy_sentences(6, 8)]
    answers: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=lambda t=t: answers.append(predict(srv, {"texts": [t]}))) for t in texts]
    for thread in threads:
        thread.start()
    time.sleep(0.6)  # all six are in the queue, none answered yet
    assert not answers
    srv.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert srv.proc.wait(timeout=60) == 0, srv.log.read_text()
    assert sorted(status for status, _ in answers) == [200] * 6
    assert sorted(body["predictions"][0]["text"] for _, body in answers) == sorted(texts)
    with pytest.raises(OSError):
        call(srv.url + "/healthz")


def test_request_timeout_is_503_with_retry_after(cls_run: Path, tmp_path: Path) -> None:
    srv = Server(cls_run, "--max-wait-ms", "1500", "--timeout-s", "0.2", log=tmp_path / "log")
    try:
        srv.wait_ready()
        for _ in range(20):  # bursts until the server waits its window (the bursts themselves may time out)
            burst(srv)
            status, headers, content = call(srv.url + "/v1/predict", {"texts": ["good"]})
            if status != 200:
                break
        assert status == 503 and headers.get("retry-after") == "1" and "timed out" in json.loads(content)["error"]
    finally:
        assert srv.stop() == 0


@pytest.fixture(scope="module")
def tag_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("serve_tag")
    files = {"train": write_conll(tmp / "train.conll", toy_ner(160, 1)),
             "dev": write_conll(tmp / "dev.conll", toy_ner(30, 2)),
             "test": write_conll(tmp / "test.conll", toy_ner(30, 3))}
    return stepwise.train(**tiny_options(tiny_model, files, tmp / "run", task="tag", epochs=4, refine_steps=2)).path


def test_tagger_takes_token_lists_and_refiner_options(tag_run: Path, tmp_path: Path) -> None:
    srv = Server(tag_run, "--workers", "2", log=tmp_path / "log")
    try:
        srv.wait_ready()
        words = ["John", "Smith", "visited", "Paris", "with", "Acme", "Corp"]
        # readyz answered from one worker; the other may still be loading (503 + Retry-After until it is)
        status, body = predict_when_loaded(srv, {"texts": [words, " ".join(words)], "steps": 2, "keep": "best"})
        assert status == 200
        first, second = body["predictions"]
        assert first["tokens"] == words and len(first["tags"]) == len(words) and "entities" in first
        assert first["tags"] == second["tags"]  # a token list and its joined text are the same input
        local = stepwise.load(tag_run, precision="fp32").predict_records(
            [words], stepwise.PredictOptions(steps=2, keep="best"))
        assert first["tags"] == local[0]["tags"]
        info = json.loads(call(srv.url + "/v1/model")[2])
        assert info["task"] == "tag" and info["multi_step"] is True and info["default_steps"] == 2
        assert predict(srv, {"texts": [words], "steps": 21})[0] == 422
        for token in ("", " ", "\u200b", "\ufeff\u200d"):  # nothing visible: refused, not tagged as an entity
            status, body = predict(srv, {"texts": [words, ["John", token, "visited"]]})
            assert status == 422 and body["field"] == "texts[1][1]", (token, body)
    finally:
        assert srv.stop() == 0, srv.log.read_text()


def test_a_document_heads_context_comes_from_each_requests_documents(head_run: Path, doc_files: dict,
                                                                     tmp_path: Path) -> None:
    from stepwise.example import Example
    from stepwise.tasks.tag.conll import read_conll

    examples = read_conll(doc_files["test"])
    texts = [ex.text for ex in examples[:30]]
    names = [f"doc-{ex.doc}" for ex in examples[:30]]
    local = stepwise.load(head_run, precision="fp32")
    with_docs = local.predict_records([Example(t, None, i + 1, None, d) for i, (t, d) in enumerate(zip(texts, names))])
    alone = local.predict_records(texts)
    assert [r["tags"] for r in with_docs] != [r["tags"] for r in alone]  # the documents change step 2 here
    srv = Server(head_run, "--max-wait-ms", "100", log=tmp_path / "log")
    try:
        srv.wait_ready()
        status, body = predict(srv, {"texts": texts, "documents": names})
        assert status == 200 and [r["tags"] for r in body["predictions"]] == [r["tags"] for r in with_docs]
        status, body = predict(srv, {"texts": texts})
        assert status == 200 and [r["tags"] for r in body["predictions"]] == [r["tags"] for r in alone]
        # two requests in one batch, a document split between them: each request's half is its own document
        def apart(cut: int) -> list:
            return [r["tags"] for r in local.predict_records(
                [Example(t, None, i + 1, None, (i < cut, d)) for i, (t, d) in enumerate(zip(texts, names))])]

        cut = next(c for c in range(1, len(texts)) if apart(c) != [r["tags"] for r in with_docs])
        make_concurrent(srv)
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda body: predict(srv, body), [
                {"texts": texts[:cut], "documents": names[:cut]}, {"texts": texts[cut:], "documents": names[cut:]}]))
        assert [r["tags"] for _, b in both for r in b["predictions"]] == apart(cut)
        status, body = predict(srv, {"texts": texts[:2], "documents": ["a"]})
        assert status == 422 and body["field"] == "documents"
        info = json.loads(call(srv.url + "/v1/model")[2])
        assert info["multi_step"] is True and info["default_steps"] == 2
    finally:
        assert srv.stop() == 0, srv.log.read_text()


def test_an_exported_directory_is_served_on_onnx_runtime(server: Server, cls_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from stepwise.cli import main

    assert main(["export", str(cls_run), "--out", str(tmp_path / "onnx")]) == 0
    srv = Server(tmp_path / "onnx", log=tmp_path / "log")
    try:
        srv.wait_ready()
        assert json.loads(call(srv.url + "/v1/model")[2])["backend"] == "onnx"
        texts = [t for t, _ in toy_sentences(10, 11)]
        onnx_records = predict(srv, {"texts": texts})[1]["predictions"]
        torch_records = predict(server, {"texts": texts})[1]["predictions"]
        assert [r["label"] for r in onnx_records] == [r["label"] for r in torch_records]
    finally:
        assert srv.stop() == 0
