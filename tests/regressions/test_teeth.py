"""Regression tests with teeth: each one fails when the bug it guards is put back.

For every bug in ``_bugs.py`` this runs the bug's tests in a fresh pytest process with its
mutant active, and fails unless every one of those tests fails. A regression test that no
longer notices its bug is a comment, not a test.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._bugs import BUGS, Bug

ROOT = Path(__file__).resolve().parents[2]

_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED)\s+(\S+)", re.MULTILINE)


def _run(bug: Bug, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACTORQ_MUTANT": bug.name}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.regressions._plugin",
            "-p",
            "no:randomly",
            "-q",
            "-rA",
            "--no-header",
            "-o",
            "addopts=",
            *extra,
            *bug.tests,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_every_regression_test_fails_when_its_bug_is_back(
    bug: Bug, request: pytest.FixtureRequest
) -> None:
    """With the bug's mutant active, each of its tests runs and fails (none passes or skips;
    a bug that shows through a real race may take up to ``Bug.runs`` runs to show in each)."""
    if any("test_postgres" in t for t in bug.tests):
        request.getfixturevalue("postgres_dsn")  # skips without the server, fails in CI
    survivors: set[str] | None = None
    for _ in range(bug.runs):
        done = _run(bug)
        outcomes = _OUTCOME.findall(done.stdout)
        assert outcomes, f"nothing ran:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        alive = {node for status, node in outcomes if status != "FAILED"}
        survivors = alive if survivors is None else survivors & alive
        if not survivors:
            break
    assert not survivors, (
        f"with bug {bug.name!r} back, these did not fail in {bug.runs} run(s): "
        f"{sorted(survivors)}\n{done.stdout[-3000:]}"
    )


def _regression_tests() -> list[str]:
    found = []
    for path in sorted((ROOT / "tests" / "regressions").glob("test_*.py")):
        if path.name == "test_teeth.py":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                found.append(f"{path.relative_to(ROOT).as_posix()}::{node.name}")
    return found


def test_every_regression_test_guards_a_named_bug() -> None:
    """Each test in tests/regressions is listed under a bug, with a story and a mutant."""
    guarded = {t for bug in BUGS for t in bug.tests}
    unguarded = [t for t in _regression_tests() if t not in guarded]
    assert not unguarded, f"regression tests without a bug and mutant: {unguarded}"
    for bug in BUGS:
        assert bug.story
        assert bug.tests
        assert (bug.patch is None) != (bug.sql is None), bug.name


def test_bug_names_are_unique() -> None:
    """``ACTORQ_MUTANT`` picks exactly one bug."""
    names = [bug.name for bug in BUGS]
    assert len(names) == len(set(names))
