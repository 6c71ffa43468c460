"""The README's Python example runs as written, on the real bundled MiniLM (one short epoch)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its executed example"
    monkeypatch.chdir(tmp_path)
    exec(compile(match.group(1), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert float(out[0]) > 0.5  # one epoch of real MiniLM beats chance (1/3) on the headlines
    assert out[1] == "['negative', 'neutral', 'positive']"
    assert out[2] == "['positive']"  # a dividend raised after a record year is good news
    assert (tmp_path / "runs" / "readme" / "report.txt").exists()


@pytest.mark.slow
def test_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from stepwise.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "confusion matrix" in out and "run written to" in out
    assert (tmp_path / "demo" / "model" / "stepwise.json").exists()


@pytest.mark.slow
def test_answer_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`stepwise demo --app answer`: the real MiniLM trained as a retriever on the bicycle-shop FAQ, indexed,
    calibrated and asked four questions: the three in scope get their answers, each record says why."""
    import json

    from stepwise.cli import main

    assert main(["demo", "--app", "answer", "--out", str(tmp_path / "demo"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["retriever"]["dev"]["recall@1"] >= 0.7  # the frozen MiniLM gets 0.6 of these paraphrases
    answers = result["answers"]
    assert [a["answers"][0]["id"] for a in answers[:3]] == ["repair-2", "ship-1", "return-2"]
    assert answers[3]["abstain"] and not any(a["abstain"] for a in answers[:3])  # the pizza place is not ours
    assert result["calibration"]["dev"]["auroc"] > 0.9
    assert all(a["abstain"] == (a["answers"][0]["score"] < result["calibration"]["threshold"]) for a in answers)
    assert (tmp_path / "demo" / "index" / "calibration.json").is_file()
