"""Every example in ``examples/`` runs end to end and exits 0, and so does ``actorq demo``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    """At least the documented examples exist (a glob that finds nothing tests nothing)."""
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.py", "custom_topology.py", "maintenance_node.py"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path) -> None:
    """The example exits 0 within a minute, without a traceback."""
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=90, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_demo_runs() -> None:
    """``actorq demo`` processes its whole mix on SQLite and prints the summary."""
    result = subprocess.run(
        [sys.executable, "-m", "actors.cli", "demo", "--jobs", "300"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jobs succeeded" in result.stdout
    assert "poison payload" in result.stdout
