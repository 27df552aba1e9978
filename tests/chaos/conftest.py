"""The chaos suite: short in the normal run, long with ``ACTORQ_CHAOS=long``.

Every chaos test publishes a table (``_report.publish``); the tables are printed as the tests
run (visible with ``-s``), appended to ``$ACTORQ_CHAOS_REPORT`` when set, and summed up in
one line each at the end of the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._report import SUMMARY


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every chaos test is ``serial``: it times real processes (and the long run restarts the
    server), so ``make test`` runs it alone, after the parallel pass."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.serial)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("actorq chaos")
        for line in SUMMARY:
            terminalreporter.write_line(line)
