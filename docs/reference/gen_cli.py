"""Write docs/reference/cli.md from the `stepwise` argparse parser, so the CLI reference never drifts.

    .venv/bin/python docs/reference/gen_cli.py           # rewrite docs/reference/cli.md
    .venv/bin/python docs/reference/gen_cli.py --check   # exit 1 if the committed file is out of date

tests/test_docs.py runs the check. The page is built from the parser's actions (not from `--help`, whose
wrapping depends on the terminal), so the output is the same on every machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "reference" / "cli.md"
#: names the parser-building function has had or may take; the first that exists is used
BUILDERS = ("build_parser", "parser", "make_parser", "_parser")


def build_parser() -> argparse.ArgumentParser:
    sys.path.insert(0, str(ROOT))
    from stepwise import cli

    for name in BUILDERS:
        builder = getattr(cli, name, None)
        if callable(builder):
            return builder()
    raise SystemExit(f"stepwise.cli has none of {', '.join(BUILDERS)}: update BUILDERS in {__file__}")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The verbs of a parser, in the order they were added ({} when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def verb_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%" in text:
        params = {**vars(action), "prog": parser.prog}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        try:
            text = text % params
        except (KeyError, TypeError, ValueError):
            text = text.replace("%%", "%")
    return _cell(text)


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    metavar = action.metavar or action.dest.upper()
    if action.nargs in ("+", "*"):
        return f"{metavar} [{metavar} ...]"
    return str(metavar)


def _default(action: argparse.Action, help_text: str) -> str:
    default = action.default
    if default is None or default is argparse.SUPPRESS or "(default:" in help_text:
        return ""
    if action.nargs == 0 and isinstance(default, bool):
        if isinstance(action, argparse.BooleanOptionalAction):
            return "on" if default else "off"
        return "on" if default and action.const is False else ""
    if default == []:
        return ""
    return f"`{default}`"


def _flags(action: argparse.Action) -> str:
    return ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar or action.dest}`"


def render_parser(parser: argparse.ArgumentParser, title: str, summary: str, level: int,
                  shared: frozenset[str] = frozenset()) -> list[str]:
    """One verb's section; options whose flags are all in `shared` (train's) are summed up in one line."""
    lines = [f"{'#' * level} {title}", ""]
    if summary:
        lines += [_cell(summary[0].upper() + summary[1:]) + ".", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    positionals = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    options = [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS
               and not isinstance(a, argparse._HelpAction)]
    usage = title + "".join(f" {a.metavar or a.dest.upper()}" for a in positionals) + (" [options]" if options else "")
    lines += ["```", usage, "```", ""]
    rows = [(f"`{a.metavar or a.dest.upper()}`", "", "", _help(a, parser)) for a in positionals]
    own = [a for a in options if not set(a.option_strings) <= shared]
    if shared and len(own) < len(options):
        rows.append(("every option of [`stepwise train`](#stepwise-train)", "", "", "the training options, "
                     "with the same values and defaults"))
        options = own
    for action in options:
        text = _help(action, parser)
        required = " **(required)**" if action.required else ""
        rows.append((_flags(action) + required, _cell(_value(action)), _default(action, text), text))
    if rows:
        lines += ["| option | value | default | what it does |", "| --- | --- | --- | --- |"]
        lines += [f"| {flag} | {value} | {default} | {text} |" for flag, value, default, text in rows]
        lines.append("")
    return lines


def render() -> str:
    parser = build_parser()
    lines = ["# Command-line reference", "",
             "<!-- generated by docs/reference/gen_cli.py from the argparse parser: do not edit by hand -->", "",
             "Every verb, every option, its value and default. Options of `train`, `rl`, `distill`, `prune` and "
             "`search` are also keys of a `--config` YAML file (underscores instead of dashes); flags override "
             "the file. Defaults written in the description come from the option model.", "",
             "```", "stepwise [--version] VERB [options]", "```", ""]
    helps = verb_help(parser)
    verbs = subcommands(parser)
    lines += ["| verb | what it does |", "| --- | --- |"]
    lines += [f"| [`{name}`](#stepwise-{name}) | {_cell(helps.get(name, ''))} |" for name in verbs]
    lines.append("")
    train = verbs.get("train")
    shared = frozenset(f for a in train._actions for f in a.option_strings if f not in ("-h", "--help")) if train \
        else frozenset()
    for name, sub in verbs.items():
        mine = set(f for a in sub._actions for f in a.option_strings)
        common = shared if name != "train" and shared <= mine else frozenset()
        lines += render_parser(sub, f"stepwise {name}", helps.get(name, ""), 2, common)
        sub_helps = verb_help(sub)
        for sub_name, subsub in subcommands(sub).items():
            lines += render_parser(subsub, f"stepwise {name} {sub_name}", sub_helps.get(sub_name, ""), 3)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    check = args.parse_args(argv).check
    text = render()
    if check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run .venv/bin/python docs/reference/gen_cli.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
