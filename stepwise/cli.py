"""`stepwise` command line: each verb maps to a recipe. Bad input → one line on stderr, exit 2;
an unexpected bug → one line and the path of a log holding the traceback, exit 1.

Only argparse and the option model load at start-up; torch and transformers load inside the verbs,
so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError

NUMBER = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (what, and where to look) instead of a usage block."""

    def error(self, message: str) -> typing.NoReturn:
        message = message.replace("the following arguments are required:", "missing required option")
        print(f"{self.prog}: error: {message} — see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it says something: not None, not an on/off switch's (a `--no-x` flag
    stores False: "default: True" would read backwards), and not when the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, argparse.SUPPRESS, False) or action.nargs == 0:
            return text
        return super()._get_help_string(action)


#: the verb groups, in the order `stepwise --help` lists them; each module has add_parsers(sub, fmt) and HANDLERS
COMMANDS = ("stepwise.commands.training", "stepwise.commands.inference", "stepwise.commands.deploy",
            "stepwise.commands.data", "stepwise.commands.monitor", "stepwise.commands.runs")
TRAINING = ("train", "rl", "distill", "prune")


def _modules() -> list[Any]:
    """The verb groups, then each registered task's own verbs (`Task.cli`: retrieval's index/mine/answer)."""
    import importlib

    from stepwise.tasks import task_class, task_names

    own = [m for name in task_names() if (m := getattr(task_class(name), "cli", None))]
    return [importlib.import_module(m) for m in (*COMMANDS, *dict.fromkeys(own))]


def _parser() -> argparse.ArgumentParser:
    from stepwise import __version__

    parser = Parser(prog="stepwise", description="Fine-tune, evaluate and serve text classifiers and taggers "
                    "through multi-step optimization.")
    parser.add_argument("--version", action="version", version=f"stepwise {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in _modules():
        module.add_parsers(sub, HelpFormatter)
    return parser


#: a verb's handler set here is used instead of its group's (a test injects a failing one)
HANDLERS: dict[str, Any] = {}


def _handler(command: str) -> Any:
    if command in HANDLERS:
        return HANDLERS[command]
    return next(m.HANDLERS[command] for m in _modules() if command in m.HANDLERS)


def join_negative_values(argv: list[str]) -> list[str]:
    """`--lr -1e-4` → `--lr=-1e-4`: argparse would take a negative number in e-notation for a flag."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NUMBER.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local directories only
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    previous = _sigterm_as_interrupt()
    try:
        from stepwise.numbers import check_finite

        check_finite(vars(args))  # every float option of every verb: NaN and ±inf never reach a range check
        return _handler(args.command)(args)
    except StepwiseError as err:
        print(f"stepwise: error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "continue with the same command plus --resume" if args.command in TRAINING else "nothing written"
        if args.command == "search":
            hint = "finished trials are kept; rerun the same command to continue the study"
        print(f"stepwise: interrupted — {hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stepwise predict ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as err:  # noqa: BLE001 — the last resort: a bug, reported in one line with its log
        log = _crash_log(argv)
        print(f"stepwise: internal error: {type(err).__name__}: {str(err)[:200]} — this is a bug in stepwise; "
              f"the traceback is in {log}", file=sys.stderr)
        return 1
    finally:
        _restore_sigterm(previous)


def _crash_log(argv: Sequence[str]) -> str:
    """Write the current exception's traceback to a log file; returns its path."""
    import tempfile
    import time
    import traceback

    base = Path(os.environ.get("STEPWISE_LOG_DIR") or Path(tempfile.gettempdir()) / "stepwise-logs")
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"stepwise {' '.join(argv)}\n\n{traceback.format_exc()}", encoding="utf-8")
        return str(path)
    except OSError:
        return "(no log: the log directory is not writable)"


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (a scheduler, `kill`) stops a run the way Ctrl-C does: cleanly, resumable."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
