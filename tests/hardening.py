"""The malformed inputs of the hardening issue, as a table run through the CLI in-process.

Each case builds its arguments in a workspace (a tiny model, small files, two tiny trained runs) and
states what must happen: for bad input, exit 2 with one line on stderr naming the problem, no
traceback, and no run directory left behind; for the "silently wrong" cases, the right behaviour.

    .venv/bin/python -m tests.hardening        # runs every case, prints a table and the count
    pytest tests/test_hardening.py             # the same cases as tests
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import make_tiny_model, toy_ner, toy_sentences, write_conll, write_tsv

BAD_REWARDS = '''
import math


def raises(pred, gold):
    raise RuntimeError("boom")


def nan(pred, gold):
    return math.nan


def string(pred, gold):
    return "high"


def out_of_range(pred, gold):
    return 5.0


out_of_range.reward_range = (0.0, 1.0)


def one_arg(pred):
    return 1.0
'''


@dataclass
class Workspace:
    root: Path
    model: str
    cls_train: Path
    cls_dev: Path
    ner_train: Path
    ner_dev: Path
    cls_run: Path
    tag_run: Path

    def path(self, name: str) -> Path:
        return self.root / name


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@dataclass
class Case:
    name: str
    kind: str  # stuck | traceback | misleading | usage | invisible | silent
    argv: Callable[[Workspace], list[str]]
    expect: str = ""  # in stderr (exit 2) — or a check on the outcome for the behaviour cases
    code: int = 2
    stdin: bytes | None = None
    check: Callable[[Workspace, Outcome], bool] | None = None
    out: str | None = "out"  # a run directory that must not exist after a failed command


def build_workspace(root: Path) -> Workspace:
    from stepwise.recipes.finetune import train

    root.mkdir(parents=True, exist_ok=True)
    model = make_tiny_model(root / "tiny-bert")
    ws = Workspace(root, model, write_tsv(root / "reviews.tsv", toy_sentences(60, 1)),
                   write_tsv(root / "reviews_dev.tsv", toy_sentences(20, 2)),
                   write_conll(root / "ner.conll", toy_ner(40, 1)), write_conll(root / "ner_dev.conll", toy_ner(10, 2)),
                   root / "cls_run", root / "tag_run")
    quick = {"model": model, "max_steps": 4, "batch_size": 8, "quiet": True, "precision": "fp32", "threads": 1}
    train(task="classify", train=str(ws.cls_train), dev=str(ws.cls_dev), out=str(ws.cls_run), **quick)
    train(task="tag", train=str(ws.ner_train), dev=str(ws.ner_dev), out=str(ws.tag_run), **quick)
    (root / "badrewards.py").write_text(BAD_REWARDS)
    (root / "a_file.txt").write_text("a regular file\n")
    (root / "a_dir").mkdir()
    for name, damage in (("no_weights", "delete"), ("truncated", "truncate"), ("no_head", "head")):
        import shutil

        broken = root / f"broken_{name}"
        shutil.copytree(ws.cls_run, broken)
        target = broken / "model" / ("head.safetensors" if damage == "head" else "model.safetensors")
        if damage == "truncate":
            target.write_bytes(target.read_bytes()[:1000])
        else:
            target.unlink()
    return ws


def train_args(ws: Workspace, *extra: str, train: Path | None = None) -> list[str]:
    return ["train", "--train", str(train or ws.cls_train), "--out", str(ws.path("out")), "--model", ws.model,
            "--max-steps", "2", "--quiet", "--precision", "fp32", "--threads", "1", *extra]


def rl_args(ws: Workspace, reward: str, run: Path | None = None) -> list[str]:
    run = run or ws.tag_run
    data = ws.ner_train if run == ws.tag_run else ws.cls_train
    dev = ws.ner_dev if run == ws.tag_run else ws.cls_dev
    return ["rl", str(run), "--train", str(data), "--dev", str(dev), "--out", str(ws.path("out")),
            "--reward", reward, "--max-steps", "2", "--quiet", "--threads", "1"]


def _write(ws: Workspace, name: str, data: bytes | str) -> Path:
    path = ws.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _i_tags_only(ws: Workspace) -> list[str]:
    sentences = [(w, [t.replace("B-", "I-") for t in tags]) for w, tags in toy_ner(30, 5)]
    train = write_conll(ws.path("itags.conll"), sentences)
    return train_args(ws, "--task", "tag", "--dev", str(ws.ner_dev), train=train)


def _split_dev_unknown_tag(ws: Workspace) -> list[str]:
    """A tag seen only in a sentence that the seeded split sends to dev: named in the train file."""
    from stepwise.data.split import stratified_split
    from stepwise.example import Example

    rare = (["Maria", "Smith", "met", "Zorblax"], ["B-PER", "I-PER", "O", "B-MISC"])
    sentences = [(["John", "met", "Ann"], ["B-PER", "O", "B-PER"])] * 20 + [rare]
    seed = next(s for s in range(100) if any(ex.label == rare[1] for ex in stratified_split(
        [Example(w, t, i) for i, (w, t) in enumerate(sentences)], s)[1]))
    train = write_conll(ws.path("rare.conll"), sentences, docstart=False)
    return train_args(ws, "--task", "tag", "--seed", str(seed), train=train)


def _wnut_feff(ws: Workspace) -> list[str]:
    text = "-DOCSTART- O\n\n" + "".join(f"{w} {t}\n" + ("\n" if i % 3 == 2 else "") for i, (w, t) in enumerate(
        [("John", "B-PER"), ("visited", "O"), ("Paris\ufeff", "B-LOC")] * 12)) + "\ufeff\n"
    train = _write(ws, "wnut.conll", text)
    return train_args(ws, "--task", "tag", train=train)


def _finished(ws: Workspace, o: Outcome, task: str) -> bool:
    results = ws.path("out") / "results.json"
    return o.code == 0 and results.is_file() and json.loads(results.read_text())["task"] == task


def _records(o: Outcome) -> list[dict]:
    return [json.loads(line) for line in o.out.splitlines() if line.strip()]


def _victim(ws: Workspace, name: str = "victim_run") -> Path:
    """A copy of the finished classifier run that a bad --out must leave intact (made once)."""
    import shutil

    path = ws.path(name)
    if not path.exists():
        shutil.copytree(ws.cls_run, path)
    return path


def _intact(ws: Workspace, name: str = "victim_run") -> bool:
    """The copied run still predicts: its weights and metadata are the run's, not an export's."""
    model = ws.path(name) / "model"
    return ((model / "model.safetensors").is_file() and not (model / "model.onnx").exists()
            and run_cli(["predict", str(ws.path(name)), "--input", "-"], b"good film\n").code == 0)


def _events(ws: Workspace) -> Path:
    good = [{"id": f"g{i}", "time": f"2026-03-02T0{i}:00:00Z", "text": "a good film"} for i in range(3)]
    bad = [{"id": "y0", "time": "0001-01-01T00:30:00+01:00", "text": "year zero in UTC"},
           {"id": "y10000", "time": "9999-12-31T23:30:00-01:00", "text": "year 10000 in UTC"}]
    return _write(ws, "events.jsonl", "".join(json.dumps(e) + "\n" for e in good + bad))


def _monitor_then_report(ws: Workspace, o: Outcome) -> bool:
    """Out-of-range dates are rejected at input, so the database reads back: the report renders."""
    import sqlite3

    db = ws.path("monitor.sqlite")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        rejected = [r[0] for r in conn.execute("SELECT reason FROM rejects")]
    report = run_cli(["monitor", "report", "--db", str(db), "--out", str(ws.path("monitor.html"))])
    return (o.code == 0 and stored == 3 and len(rejected) == 2 and all("bad time" in r for r in rejected)
            and report.code == 0 and ws.path("monitor.html").is_file())


def _fresh(ws: Workspace, name: str) -> str:
    """`name` in the workspace, with any database (and its WAL files) an earlier case left there removed."""
    for leftover in ws.root.glob(f"{name}*"):
        leftover.unlink()
    return name


def _monitor_args(ws: Workspace, *extra: str, db: str = "monitor.sqlite") -> list[str]:
    return ["monitor", "--classifier", str(ws.cls_run), "--input", str(_events(ws)), "--db", str(ws.path(db)),
            "--threads", "1", *extra]


def _search_args(ws: Workspace, space: str) -> list[str]:
    import shutil

    shutil.rmtree(ws.path("search"), ignore_errors=True)
    return ["search", "--trials", "1", "--train", str(ws.cls_train), "--dev", str(ws.cls_dev), "--out",
            str(ws.path("search")), "--model", ws.model, "--space", str(_write(ws, "space.yaml", space)),
            "--max-steps", "2", "--quiet", "--threads", "1", "--precision", "fp32"]


def _search_retry(ws: Workspace, o: Outcome) -> bool:
    """The failed first trial left nothing behind: the corrected command is not refused and finishes."""
    if ws.path("search").exists():
        return False
    retry = run_cli(_search_args(ws, "lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n"))
    return retry.code == 0 and (ws.path("search") / "best.yaml").is_file()


CASES: list[Case] = [
    # --- a run directory that blocked every retry: now validated before the directory exists ---------------
    Case("tag on a TSV", "stuck", lambda ws: train_args(ws, "--task", "tag"), "one label per text, not a tag per word"),
    Case("--metric reward on train", "stuck", lambda ws: train_args(ws, "--metric", "reward"),
         "--metric reward needs a reward"),
    Case("rl: unknown reward", "stuck", lambda ws: rl_args(ws, "nosuch"), "unknown reward 'nosuch'"),
    Case("rl: reward module missing", "stuck", lambda ws: rl_args(ws, "nosuchmodule:f"), "cannot load reward"),
    Case("rl: reward function missing", "stuck", lambda ws: rl_args(ws, "badrewards:nothere"), "cannot load reward"),
    Case("rl: reward raises", "stuck", lambda ws: rl_args(ws, "badrewards:raises"), "raised RuntimeError: boom"),
    Case("rl: reward returns NaN", "stuck", lambda ws: rl_args(ws, "badrewards:nan"), "not a number"),
    Case("rl: reward returns a string", "stuck", lambda ws: rl_args(ws, "badrewards:string"), "not a number"),
    Case("rl: reward leaves its range", "stuck", lambda ws: rl_args(ws, "badrewards:out_of_range"),
         "outside its declared range"),
    Case("rl: reward has the wrong signature", "stuck", lambda ws: rl_args(ws, "badrewards:one_arg"),
         "raised TypeError"),
    # --- tracebacks -------------------------------------------------------------------------------------
    Case("--model is not a model", "traceback",
         lambda ws: train_args(ws, "--model", str(_write(ws, "fake/config.json", '{"model_type": "bert"}').parent)),
         "cannot load"),
    Case("--model does not exist", "traceback", lambda ws: train_args(ws, "--model", str(ws.path("nowhere"))),
         "model directory not found"),
    Case("--model is a file", "traceback", lambda ws: train_args(ws, "--model", str(ws.path("a_file.txt"))),
         "not a transformers model directory"),
    Case("--text-column out of range", "traceback", lambda ws: train_args(ws, "--text-column", "5"),
         "--text-column 5 is out of range"),
    Case("--format conll for a classifier", "traceback",
         lambda ws: train_args(ws, "--task", "classify", "--format", "conll", train=ws.ner_train),
         "add --task tag"),
    Case("non-UTF-8 --config", "traceback",
         lambda ws: train_args(ws, "--config", str(_write(ws, "latin1.yaml", b"lr: 1e-4 # caf\xe9\n"))),
         "not UTF-8"),
    Case("model.safetensors deleted", "traceback",
         lambda ws: ["predict", str(ws.path("broken_no_weights")), "--input", str(ws.cls_dev)],
         "cannot load the run's model", out=None),
    Case("model.safetensors truncated", "traceback",
         lambda ws: ["predict", str(ws.path("broken_truncated")), "--input", str(ws.cls_dev)],
         "cannot load the run's model", out=None),
    Case("head.safetensors deleted", "traceback",
         lambda ws: ["evaluate", str(ws.path("broken_no_head")), "--data", str(ws.cls_dev)],
         "cannot load the run's model", out=None),
    Case("--out under a regular file", "traceback",
         lambda ws: [a if a != str(ws.path("out")) else str(ws.path("a_file.txt/out")) for a in train_args(ws)],
         "is a file, not a directory"),
    Case("--output under a regular file", "traceback",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--output", str(ws.path("a_file.txt/p"))],
         "is a file, not a directory", out=None),
    Case("--plot under a regular file", "traceback",
         lambda ws: ["evaluate", str(ws.cls_run), "--data", str(ws.cls_dev), "--plot", str(ws.path("a_file.txt/p"))],
         "is a file, not a directory", out=None),
    Case("--trace under a regular file", "traceback",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--trace", str(ws.path("a_file.txt/t"))],
         "is a file, not a directory", out=None),
    Case("--output is a directory", "traceback",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--output", str(ws.path("a_dir"))],
         "--output is a directory", out=None),
    # --- misleading messages --------------------------------------------------------------------------------
    Case("I- tags only (repaired before labels are collected)", "misleading", _i_tags_only, code=0,
         check=lambda ws, o: _finished(ws, o, "tag"), out=None),
    Case("unknown tag in the split-off dev set", "misleading", _split_dev_unknown_tag, "rare.conll:"),
    Case("unknown YAML key", "misleading",
         lambda ws: train_args(ws, "--config", str(_write(ws, "typo.yaml", "learning-rate: 1e-4\n"))),
         "unknown option 'learning_rate'", check=lambda ws, o: "--learning-rate" not in o.err),
    Case("--metric unknown", "misleading", lambda ws: train_args(ws, "--metric", "nosuch"),
         "--metric nosuch is not a classifier metric"),
    Case("--metric accuracy for a tagger", "misleading",
         lambda ws: train_args(ws, "--task", "tag", "--metric", "accuracy", train=ws.ner_train),
         "--metric accuracy is not a tagger metric"),
    Case("pydantic wording", "misleading", lambda ws: train_args(ws, "--warmup-ratio", "2"),
         "--warmup-ratio must be less than 1 (got 2.0)",
         check=lambda ws, o: "Value error" not in o.err and "Input should" not in o.err),
    Case("a directory given as a file", "misleading",
         lambda ws: [a if a != str(ws.cls_train) else str(ws.path("a_dir")) for a in train_args(ws)],
         "is a directory, not a file"),
    Case("CoNLL .txt without --task", "misleading",
         lambda ws: train_args(ws, "--dev", str(ws.ner_dev),
                               train=_write(ws, "ner.txt", ws.ner_train.read_text())),
         code=0, check=lambda ws, o: _finished(ws, o, "tag"), out=None),
    Case("tagger run evaluated on classification data", "misleading",
         lambda ws: ["evaluate", str(ws.tag_run), "--data", str(ws.cls_dev)], "this is a tagger run", out=None),
    Case("classifier run evaluated on CoNLL data", "misleading",
         lambda ws: ["evaluate", str(ws.cls_run), "--data", str(ws.ner_dev)], "this is a classifier run", out=None),
    Case("tagger fed plain text on stdin", "misleading",
         lambda ws: ["predict", str(ws.tag_run), "--input", "-"], code=0, stdin=b"John Smith visited Paris\n",
         check=lambda ws, o: [r["tokens"] for r in _records(o)] == [["John", "Smith", "visited", "Paris"]], out=None),
    # --- usage blocks instead of one line ---------------------------------------------------------------
    Case("--lr -1e-4", "usage", lambda ws: train_args(ws, "--lr", "-1e-4"), "--lr must be greater than 0"),
    Case("evaluate without --data", "usage", lambda ws: ["evaluate", str(ws.cls_run)], "missing required option",
         out=None),
    Case("--keep worst", "usage",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--keep", "worst"], "invalid choice",
         out=None),
    Case("--format xml", "usage",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--format", "xml"], "invalid choice",
         out=None),
    # --- invisible characters ---------------------------------------------------------------------------
    Case("U+FEFF line and token (WNUT-17)", "invisible", _wnut_feff, code=0,
         check=lambda ws, o: _finished(ws, o, "tag") and json.loads(
             (ws.path("out") / "results.json").read_text())["cleaned"]["train"]["invisible_characters"] >= 12,
         out=None),
    # --- silently wrong -----------------------------------------------------------------------------------
    Case("rl --reward entity_f1 on a classifier", "silent", lambda ws: rl_args(ws, "entity_f1", ws.cls_run),
         "does not apply to classifier runs"),
    Case("predict keeps a blank input line", "silent", lambda ws: ["predict", str(ws.cls_run), "--input", "-"],
         code=0, stdin=b"good film\n\nawful film\n",
         check=lambda ws, o: len(_records(o)) == 3 and _records(o)[1]["label"] is None, out=None),
    Case("--steps on a single-step model", "silent",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--steps", "3"], code=0,
         check=lambda ws, o: o.err.strip().count("\n") == 0 and "has no effect" in o.err, out=None),
    Case("--time-budget-ms=-5", "silent",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--time-budget-ms=-5"],
         "--time-budget-ms must be greater than 0", out=None),
    Case("--output equal to --input", "silent",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--output", str(ws.cls_dev)],
         "is the input file", out=None),
    Case("--strict for a classifier", "silent", lambda ws: train_args(ws, "--strict"), "--strict is for taggers"),
    Case("--own-outputs for a tagger", "silent",
         lambda ws: train_args(ws, "--task", "tag", "--own-outputs", "0.5", train=ws.ner_train),
         "--own-outputs is for editors"),
    Case("--rl-passes on supervised training", "silent", lambda ws: train_args(ws, "--rl-passes", "3"),
         "--rl-passes is for editors"),
    # --- round 3: outputs that would land in a run or an export --------------------------------------------
    Case("export --out RUN/model", "silent", lambda ws: ["export", str(_victim(ws)), "--out",
                                                          str(_victim(ws) / "model")],
         "a run's model directory", check=lambda ws, o: _intact(ws), out=None),
    Case("export --out RUN", "silent", lambda ws: ["export", str(_victim(ws)), "--out", str(_victim(ws))],
         "the run this command starts from", check=lambda ws, o: _intact(ws), out=None),
    Case("export --out inside another run", "silent",
         lambda ws: ["export", str(ws.cls_run), "--out", str(_victim(ws) / "onnx")], "is inside a run directory",
         check=lambda ws, o: _intact(ws) and not (_victim(ws) / "onnx").exists(), out=None),
    Case("train --out RUN/model", "silent", lambda ws: train_args(ws, "--out", str(_victim(ws) / "model")),
         "a run's model directory", check=lambda ws, o: _intact(ws)),
    Case("rl --out the run it starts from, --overwrite", "silent",
         lambda ws: [*rl_args(ws, "accuracy", _victim(ws)), "--out", str(_victim(ws)), "--overwrite"],
         "the run this command starts from", check=lambda ws, o: _intact(ws)),
    Case("noise --out RUN/results.json", "silent",
         lambda ws: ["noise", "--input", str(ws.cls_train), "--out", str(_victim(ws) / "results.json")],
         "is inside a run directory", check=lambda ws, o: _intact(ws), out=None),
    Case("search --out inside a run", "silent",
         lambda ws: ["search", "--trials", "1", "--train", str(ws.cls_train), "--dev", str(ws.cls_dev), "--out",
                     str(_victim(ws) / "search"), "--model", ws.model],
         "is inside a run directory", check=lambda ws, o: not (_victim(ws) / "search").exists(), out=None),
    Case("predict --output inside a run's model", "silent",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--output",
                     str(_victim(ws) / "model" / "config.json")], "a run's model directory",
         check=lambda ws, o: _intact(ws), out=None),
    Case("monitor --db under a regular file", "traceback",
         lambda ws: _monitor_args(ws, db="a_file.txt/m.sqlite"), "is a file, not a directory", out=None),
    # --- round 3: non-finite numbers -------------------------------------------------------------------
    Case("serve --timeout-s nan", "silent", lambda ws: ["serve", str(ws.cls_run), "--timeout-s", "nan"],
         "--timeout-s must be a finite number", out=None),
    Case("predict --llm-timeout inf", "traceback",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--llm", "http://127.0.0.1:9",
                     "--llm-timeout", "inf"], "--llm-timeout must be a finite number", out=None),
    Case("train --epochs inf", "silent", lambda ws: train_args(ws, "--epochs", "inf"), "--epochs must be a finite"),
    Case("YAML lr: .nan", "silent",
         lambda ws: train_args(ws, "--config", str(_write(ws, "nan.yaml", "lr: .nan\n"))), "--lr must be a finite"),
    Case("noise --rate spelling=inf", "silent",
         lambda ws: ["noise", "--input", str(ws.cls_train), "--out", str(ws.path("pairs.tsv")), "--rate",
                     "spelling=inf"], "--rate spelling must be a finite number",
         check=lambda ws, o: not ws.path("pairs.tsv").exists(), out=None),
    Case("monitor --min-shift nan", "silent", lambda ws: _monitor_args(ws, "--min-shift", "nan"),
         "--min-shift must be a finite number", check=lambda ws, o: not ws.path("monitor.sqlite").exists(), out=None),
    Case("predict --confidence nan", "silent",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.cls_dev), "--confidence", "nan"],
         "--confidence must be a finite number", out=None),
    # --- round 3: values stored only if they read back -------------------------------------------------
    Case("monitor events dated year 0 and 10000", "silent",
         lambda ws: _monitor_args(ws, db=_fresh(ws, "monitor.sqlite")), code=0,
         check=_monitor_then_report, out=None),
    # --- round 3: a search whose first trial fails -------------------------------------------------------
    Case("search: space option wrong for the task, then corrected", "stuck",
         lambda ws: _search_args(ws, "lr: {low: 1.0e-5, high: 1.0e-3, log: true}\ndoc_context: {choices: [model]}\n"),
         "space.yaml:2: trial 0", check=_search_retry, out=None),
    # --- round 3: silent acceptance, misleading lines, environment -------------------------------------
    Case("NUL-byte training file", "misleading",
         lambda ws: train_args(ws, train=_write(ws, "nul.tsv", b"\x00" * 64 + b"\n")), "nul.tsv:1: a NUL byte"),
    Case("noise input with control bytes", "silent",
         lambda ws: ["noise", "--input", str(_write(ws, "ctl.txt", b"a good film\nan aw\x01ful film\n")), "--out",
                     str(ws.path("pairs.tsv"))], "ctl.txt:2: a control character (U+0001)",
         check=lambda ws, o: not ws.path("pairs.tsv").exists(), out=None),
    Case("classifier run predicting a CoNLL file", "silent",
         lambda ws: ["predict", str(ws.cls_run), "--input", str(ws.ner_dev)], "this is a classifier run", out=None),
    Case("unterminated CSV quote", "misleading",
         lambda ws: train_args(ws, train=_write(ws, "quote.csv", "text,label\na good film,pos\n\"an awful film,neg\n"
                                                "a fine film,pos\nbad,neg\n")),
         "quote.csv:3: a quote opened on this line is never closed", check=lambda ws, o: "stray tab" not in o.err),
]


def run_cli(argv: list[str], stdin: bytes | None = None) -> Outcome:
    from stepwise.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = saved_stdin
    return Outcome(code, out.getvalue(), err.getvalue())


def run_case(case: Case, ws: Workspace) -> tuple[bool, str]:
    """(passed, what happened): exit code, one line, the expected words, nothing left behind."""
    import shutil

    shutil.rmtree(ws.path("out"), ignore_errors=True)
    sys.path.insert(0, str(ws.root))
    try:
        outcome = run_cli(case.argv(ws), case.stdin)
    finally:
        sys.path.remove(str(ws.root))
    err = outcome.err.strip()
    problems = []
    if outcome.code != case.code:
        problems.append(f"exit {outcome.code}, expected {case.code}")
    if "Traceback" in outcome.err:
        problems.append("traceback")
    if case.code == 2:
        if "\n" in err or not err:
            problems.append(f"{err.count(chr(10)) + 1 if err else 0} lines on stderr")
        if case.expect not in err:
            problems.append(f"message lacks {case.expect!r}")
        if case.out and ws.path(case.out).exists():
            problems.append("left a run directory")
    if case.check is not None and not case.check(ws, outcome):
        problems.append("behaviour check failed")
    return not problems, "; ".join(problems) or (err.splitlines()[-1] if err else "ok")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        ws = build_workspace(Path(tmp))
        passed = 0
        for case in CASES:
            ok, detail = run_case(case, ws)
            passed += ok
            print(f"{'PASS' if ok else 'FAIL'}  {case.kind:<10} {case.name:<52} {detail[:150]}")
        print(f"\n{passed} of {len(CASES)} cases keep the contract")
        return 0 if passed == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
