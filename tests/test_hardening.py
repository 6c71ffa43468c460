"""The hardening table (tests/hardening.py) as tests: every malformed input keeps the CLI's contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hardening import CASES, Case, Workspace, build_workspace, run_case


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(Path(tmp_path_factory.mktemp("hardening")))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_contract(case: Case, workspace: Workspace) -> None:
    ok, detail = run_case(case, workspace)
    assert ok, detail


def test_the_table_covers_every_class_of_the_issue() -> None:
    kinds = {c.kind for c in CASES}
    assert kinds == {"stuck", "traceback", "misleading", "usage", "invisible", "silent"}
    assert len(CASES) >= 40
