"""`--help` says each default once, and only when there is one: no "(default: None)", no default repeated,
and no "(default: True)" on a `--no-x` switch (which stores False: the text read backwards)."""

from __future__ import annotations

import re

import pytest

from stepwise.cli import _parser, main


def _verbs() -> list[list[str]]:
    parser = _parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    verbs = [[name] for name in sub.choices]
    return verbs + [["monitor", "report"], ["monitor", "stream"]]


@pytest.mark.parametrize("verb", _verbs(), ids=" ".join)
def test_help_states_real_defaults_once(verb: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main([*verb, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare on single spaces
    assert "(default: None)" not in text
    assert not re.search(r"\(default: [^)]*\) \(default:", text)
    for switch in re.findall(r"(?<!, )(--no-[a-z-]+)(?![a-z-])((?:(?!--).)*)", text):  # not of a --x/--no-x pair
        assert "(default:" not in switch[1], switch


def test_serve_help_keeps_real_defaults(capsys: pytest.CaptureFixture) -> None:
    main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 32)" in text and "(default: 127.0.0.1)" in text  # --max-batch, --host
    assert re.search(r"--no-access-log no line per request(?! \(default)", text)
