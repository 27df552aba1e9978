"""Hypothesis profiles and fixtures of the property tests.

Profiles (choose with ``HYPOTHESIS_PROFILE``):

* ``ci`` (default): sized so the whole of ``property_tests/`` takes a few minutes on two cores
  while other tests run; random, not derandomized, so every run explores new cases.
* ``thorough``: ten times the examples and longer runs (``make test-thorough``).
* ``dev``: a quick look while editing.

Every profile prints the reproduction blob of a failure (``print_blob``); replay it with
``@reproduce_failure`` or by re-running with the printed seed (``--hypothesis-seed``).
Each test reads its own example count through :func:`examples`, scaled by the profile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.conftest import postgres_dsn, postgres_schema, pytest_runtest_call

from .harness import Backend, Harness, MemoryBackend, PostgresBackend, SQLiteBackend

__all__ = [
    "FINDINGS",
    "SCALE",
    "examples",
    "postgres_dsn",
    "postgres_schema",
    "pytest_runtest_call",
]

_COMMON = {
    "deadline": None,  # SQL round trips and thread hops vary; time is virtual anyway
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None,  # no example database: CI machines start clean, and runs stay independent
}
settings.register_profile("ci", max_examples=100, stateful_step_count=50, **_COMMON)
settings.register_profile("thorough", max_examples=1000, stateful_step_count=100, **_COMMON)
settings.register_profile("dev", max_examples=20, stateful_step_count=20, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)

SCALE = {"ci": 1.0, "thorough": 10.0, "dev": 0.2}.get(PROFILE, 1.0)
"""How much the profile multiplies each test's own example count."""


def examples(n: int) -> int:
    """``n`` examples under ``ci``, scaled for the other profiles (at least 2)."""
    return max(2, round(n * SCALE))


FINDINGS: list[tuple[str, str, int, str]] = []
"""(mutant, suite, examples it took, property that caught it), filled by ``test_mutants``."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print which property caught each mutant, and after how many examples."""
    if not FINDINGS:
        return
    terminalreporter.section("mutants caught")
    for mutant, suite, found_after, prop in FINDINGS:
        terminalreporter.write_line(f"{mutant:28} {suite:13} {found_after:4} examples   {prop}")


LOOPS = ["asyncio", "trio"]


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    """Each property test runs on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each transport property runs on every backend."""
    return str(request.param)


@pytest.fixture
def backend(backend_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The named backend, on a store of this test's own."""
    if backend_name == "memory":
        return MemoryBackend()
    if backend_name == "sqlite":
        return SQLiteBackend(str(tmp_path / "jobs.db"))
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    return PostgresBackend(dsn, schema)


@pytest.fixture
def harness(loop: str, backend: Backend) -> Iterator[Harness]:
    """A loop in a thread, a manual clock and three transports over the backend's store."""
    with Harness(loop, backend) as running:
        yield running
