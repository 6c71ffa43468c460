"""The user documentation stays true: README length, documented flags exist, runnable blocks run, CLI reference current.

* every `--flag` on a `stepwise VERB ...` line of a shell block in README.md or docs/guides/ is accepted by that
  verb's parser, and every `--flag` written in prose there exists in some verb;
* every shell block marked runnable (```` ```bash runnable ````) runs in a fresh temporary directory (only the
  package's own demo files next to it, no ../shared) and exits 0;
* docs/reference/cli.md is what docs/reference/gen_cli.py writes from the parser today.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
SHELL = {"bash", "sh", "shell", "console", ""}
#: flags in the guides that belong to other programs (torchrun's rendezvous, pip, llama.cpp's server)
FOREIGN = {"--standalone", "--nproc-per-node", "--nnodes", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id",
           "--model", "--host", "--port", "--help", "--version"}


def _gen_cli():
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "reference" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """'train', 'monitor', 'monitor report', ... -> its parser."""
    gen = _gen_cli()
    top = gen.build_parser()
    parsers = {}
    for name, sub in gen.subcommands(top).items():
        parsers[name] = sub
        for sub_name, subsub in gen.subcommands(sub).items():
            parsers[f"{name} {sub_name}"] = subsub
    return parsers


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def shell_blocks(path: Path) -> list[tuple[str, str, bool]]:
    """(info string, body, runnable) of every shell-like fenced block."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group(1).strip()
        words = info.split()
        if (words[0] if words else "") not in SHELL:
            continue
        before = text[:match.start()].rstrip().splitlines()[-1:] or [""]
        runnable = "runnable" in words[1:] or "<!-- runnable" in before[0]
        blocks.append((info, match.group(2), runnable))
    return blocks


def commands(body: str) -> list[str]:
    """The shell lines of a block, continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in body.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    if current:
        lines.append(current)
    out = []
    for line in lines:
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line.startswith("$ "):
            line = line[2:]
        if line:
            out.append(" ".join(line.split()))
    return out


def stepwise_calls(line: str) -> list[list[str]]:
    """Each `stepwise ...` (or `-m stepwise ...`) call in a shell line, as words after `stepwise`."""
    try:
        words = shlex.split(line, comments=False)
    except ValueError:
        words = line.split()
    calls, current = [], None
    for i, word in enumerate(words):
        if word in ("|", "&&", ";", "&", "||") or word.endswith(";"):
            current = None
            continue
        is_cmd = Path(word).name == "stepwise" and (i == 0 or words[i - 1] in ("|", "&&", ";", "-m", "||")
                                                       or words[i - 1].endswith(";"))
        if is_cmd:
            current = []
            calls.append(current)
        elif current is not None:
            current.append(word)
    return calls


def documented_calls() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in DOCS:
        for _, body, _ in shell_blocks(path):
            for line in commands(body):
                # a pipe inside a quoted argument is not a pipe: split on the shell operators shlex keeps apart
                for call in stepwise_calls(line.replace("|", " | ")):
                    found.append((path.relative_to(ROOT).as_posix(), line, call))
    return found


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move detail into docs/guides/"


def test_every_guide_exists_and_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("classify", "tag", "edit", "refine-and-rl", "llm", "export", "serve", "monitor",
                 "search-and-torchrun"):
        assert (ROOT / "docs" / "guides" / f"{name}.md").is_file(), name
        assert f"docs/guides/{name}.md" in readme, name
    for page in ("docs/results.md", "docs/reference/cli.md", "docs/reference/run-directory.md",
                 "docs/reference/python-api.md", "docs/contributing.md", "CHANGELOG.md"):
        assert (ROOT / page).is_file() and page in readme, page


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_relative_links_in_the_docs_resolve() -> None:
    pages = [*DOCS, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "CHANGELOG.md", ROOT / "bench" / "NOTES.md"]
    broken = []
    for page in dict.fromkeys(pages):
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or not (target or anchor):
                continue
            path = page.parent / target if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, broken


def test_every_documented_flag_exists_for_its_verb() -> None:
    parsers = _parsers()
    calls = documented_calls()
    assert len(calls) > 40, "the docs lost their command examples (or the parser of them broke)"
    problems = []
    for page, line, words in calls:
        if not words or words[0].startswith("-"):  # `stepwise --version`
            continue
        verb = words[0]
        if verb not in parsers:
            problems.append(f"{page}: unknown verb {verb!r} in: {line}")
            continue
        if len(words) > 1 and f"{verb} {words[1]}" in parsers:
            verb = f"{verb} {words[1]}"
        known = _flags(parsers[verb])
        for word in words[1:]:
            flag = word.split("=", 1)[0]
            if re.fullmatch(r"--[a-z][a-z0-9-]*", flag) and flag not in known:
                problems.append(f"{page}: `stepwise {verb}` has no {flag}: {line}")
    assert not problems, "\n".join(problems)


def test_every_flag_in_the_prose_exists_somewhere() -> None:
    """A flag named in the text (not on a command line) must still be one of stepwise's, e.g. not a bench script's."""
    known = set(FOREIGN)
    for parser in _parsers().values():
        known |= _flags(parser)
    problems = []
    for path in DOCS:
        text = FENCE.sub("", path.read_text())
        for span in re.findall(r"`([^`]+)`", text):
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span):
                if flag not in known:
                    problems.append(f"{path.relative_to(ROOT)}: {flag} (in `{span}`)")
    assert not problems, "\n".join(problems)


def test_the_flag_checker_catches_a_wrong_flag() -> None:
    """The checker itself: a bench-only flag on a CLI line is found, a real one passes."""
    parsers = _parsers()
    (call,) = stepwise_calls("stepwise noise --input a.txt --out b.tsv --noise-scale 2.5")
    assert call[0] == "noise" and "--noise-scale" not in _flags(parsers["noise"]) and "--scale" in _flags(
        parsers["noise"])
    (call,) = stepwise_calls("echo hi | stepwise predict runs/a --input - # a comment")
    assert call[:2] == ["predict", "runs/a"]
    (call,) = stepwise_calls("torchrun --standalone --nproc-per-node 2 -m stepwise train --train t.tsv")
    assert call[0] == "train" and "--standalone" not in call
    assert commands("stepwise train --train a \\\n    --out b   # note\n") == ["stepwise train --train a --out b"]


def runnable_blocks() -> list[tuple[str, str]]:
    return [(f"{path.relative_to(ROOT).as_posix()}:{i}", body) for path in DOCS
            for i, (_, body, runnable) in enumerate(shell_blocks(path)) if runnable]


def test_there_are_runnable_blocks() -> None:
    assert len(runnable_blocks()) >= 3


@pytest.mark.parametrize("where,body", runnable_blocks(), ids=[w for w, _ in runnable_blocks()])
def test_runnable_block_runs(where: str, body: str, tmp_path: Path) -> None:
    """Run in an empty directory that sees only the package's own files as `stepwise/` (what a fresh clone has)."""
    (tmp_path / "stepwise").symlink_to(ROOT / "stepwise")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + body], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{where} failed:\n{body}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_cli_reference_is_up_to_date() -> None:
    gen = _gen_cli()
    committed = gen.OUT.read_text()
    assert committed == gen.render(), \
        "docs/reference/cli.md is out of date: run .venv/bin/python docs/reference/gen_cli.py"
