"""The task boundary: what belongs to one task is spelled inside `stepwise/tasks/` and nowhere else.

Outside it, code asks the registry and the task (its capabilities, its options model, its hooks) instead of
naming a task or one of a task's own options. Checked on the syntax tree; docstrings and comments are prose
for readers and are not checked. Spelled means:

* a task: a string that is a task name, or that says `--task NAME`;
* a task's own option: its flag (`--doc-context`) in a string; the option read from a config or parsed
  arguments (`cfg.doc_context`, `args.pool`); the option passed by keyword to `train`, a config or
  `model_copy`; its name as a string when the name has an underscore (a one-word option such as `pool` is
  also an ordinary word for a variable or a JSON key, and is caught by the three forms above).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from stepwise.tasks import task_class, task_names

PACKAGE = Path(__file__).resolve().parent.parent / "stepwise"
TASKS = PACKAGE / "tasks"


def task_only_options() -> set[str]:
    """Every option some task declares: its training options (the shared TrainConfig fields are not there) and
    its inference knobs."""
    names: set[str] = set()
    for name in task_names():
        for kind in ("options_model", "inference_model"):
            model = getattr(task_class(name), kind, None)
            if model is not None:
                names |= set(model.model_fields)
    return names


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


CONFIGS = {"cfg", "config", "args", "base", "fold_cfg", "train_cfg", "options", "values"}
CONFIG_CALLS = {"train", "TrainConfig", "build_config", "train_config", "model_copy", "run_demo"}


def spelled(source: str, tasks: set[str], options: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each task name or task-only option spelled in `source`."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    flags = sorted(("--" + o.replace("_", "-") for o in options), key=len, reverse=True)
    flag = re.compile("(" + "|".join(map(re.escape, flags)) + r")(?![\w-])") if flags else None
    task_flag = re.compile(r"--task[ =](" + "|".join(map(re.escape, sorted(tasks))) + r")\b")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}  # cfg.items() is a dict's method
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            text = node.value
            if text in tasks or (text in options and "_" in text):
                hits.append((node.lineno, repr(text)))
            elif m := task_flag.search(text) or (flag and flag.search(text)):
                hits.append((node.lineno, m.group()))
        elif isinstance(node, ast.Attribute) and node.attr in options and isinstance(node.value, ast.Name) \
                and node.value.id in CONFIGS and id(node) not in called:
            hits.append((node.lineno, f"{node.value.id}.{node.attr}"))
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in CONFIG_CALLS:
                hits += [(node.lineno, f"{k.arg}=") for k in node.keywords if k.arg in options]
    return hits


def test_no_task_name_or_task_option_outside_tasks():
    tasks, options = set(task_names()), task_only_options()
    assert {"doc_context", "own_outputs", "pool", "keep_bias"} <= options  # it looks for the real options
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if TASKS in path.parents:
            continue
        for line, what in spelled(path.read_text(encoding="utf-8"), tasks, options):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not found, "task names or task-only options outside stepwise/tasks/:\n" + "\n".join(found)


def test_the_check_finds_what_it_forbids():
    """A wrong boundary must fail: each way of spelling a task or its option is caught; prose and ordinary
    words are not."""
    tasks, options = {"tag", "classify"}, {"doc_context", "own_outputs", "pool"}
    bad = '''
def f(cfg, x, pool):
    """Prose may say tag and --doc-context."""
    if cfg.doc_context or cfg.pool:
        train(own_outputs=1)
    return x == "tag" or "--own-outputs 0.5" or "train --task classify" or "doc_context" or "use --pool FILE"
'''
    assert sorted(w for _, w in spelled(bad, tasks, options)) == sorted(
        ["cfg.doc_context", "cfg.pool", "own_outputs=", "'tag'", "--own-outputs", "--task classify", "'doc_context'",
         "--pool"])
    fine = ('def f(pool, cfg):\n    """tag, classify, --doc-context"""\n'
            '    return "tagger", pool.pool, {"pool": 1}, "--pools", cfg.pool_size, cfg.items()\n')
    assert spelled(fine, tasks, options) == []
