"""The task boundary: what belongs to one task is spelled inside `stepwise/tasks/` and nowhere else.

Outside it, code asks the registry and the task (its capabilities, its options model, its hooks) instead of
naming a task or one of a task's own options. Checked on the syntax tree (docstrings and comments are prose
for readers and are not checked): a string that is a task name or says `--task NAME`, and a name, attribute,
keyword or string that is a task's own option (as `opt_name` or `--opt-name`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from stepwise.tasks import task_class, task_names

PACKAGE = Path(__file__).resolve().parent.parent / "stepwise"
TASKS = PACKAGE / "tasks"


def task_only_options() -> set[str]:
    """Every option some task declares in its options model (the shared TrainConfig fields are not there)."""
    names: set[str] = set()
    for name in task_names():
        model = getattr(task_class(name), "options_model", None)
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


def spelled(source: str, tasks: set[str], options: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each task name or task-only option spelled in `source`."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    flags = {"--" + o.replace("_", "-"): o for o in options}
    task_flag = re.compile(r"--task[ =](" + "|".join(map(re.escape, sorted(tasks))) + r")\b")
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            text = node.value
            if text in tasks or text in options:
                hits.append((node.lineno, f"{text!r}"))
            elif (m := task_flag.search(text)) or (m := re.search(r"--[a-z][a-z0-9-]*", text)) and m.group() in flags:
                hits.append((node.lineno, m.group()))
            elif any(re.search(re.escape(f) + r"(?![\w-])", text) for f in flags):
                hits.append((node.lineno, next(f for f in flags if re.search(re.escape(f) + r"(?![\w-])", text))))
        elif isinstance(node, ast.Attribute) and node.attr in options:
            hits.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Name) and node.id in options:
            hits.append((node.lineno, node.id))
        elif isinstance(node, ast.keyword) and node.arg in options:
            hits.append((node.value.lineno, f"{node.arg}="))
    return hits


def test_no_task_name_or_task_option_outside_tasks():
    tasks, options = set(task_names()), task_only_options()
    assert {"doc_context", "own_outputs", "pool"} <= options  # the check looks for the real options
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if TASKS in path.parents:
            continue
        for line, what in spelled(path.read_text(encoding="utf-8"), tasks, options):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not found, "task names or task-only options outside stepwise/tasks/:\n" + "\n".join(found)


def test_the_check_finds_what_it_forbids():
    """A wrong boundary must fail: each way of spelling a task or its option is caught; prose is not."""
    tasks, options = {"tag", "classify"}, {"doc_context", "own_outputs"}
    bad = '''
def f(cfg, x):
    """Prose may say tag and --doc-context."""
    if cfg.doc_context:
        g(own_outputs=1)
    return x == "tag" or "--own-outputs 0.5" or "train --task classify" or "doc_context"
'''
    whats = [w for _, w in spelled(bad, tasks, options)]
    assert whats == [".doc_context", "own_outputs=", "'tag'", "--own-outputs", "--task classify", "'doc_context'"] \
        or sorted(whats) == sorted([".doc_context", "own_outputs=", "'tag'", "--own-outputs", "--task classify",
                                    "'doc_context'"])
    assert spelled('def f():\n    """tag, classify, --doc-context"""\n    return "tagger"\n', tasks, options) == []
