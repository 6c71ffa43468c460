"""One exception type for every problem the user can fix; the CLI turns it into one line and exit 2."""

from __future__ import annotations

from pathlib import Path


class StepwiseError(Exception):
    """A user-fixable problem: names the file and line, says what is wrong and how to fix it."""

    def __init__(self, problem: str, *, path: str | Path | None = None, line: int | None = None,
                 fix: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        text = f"{where}{self.problem}"
        if self.fix:
            text += f" — {self.fix}"
        return text
