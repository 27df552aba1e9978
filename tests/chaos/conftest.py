"""The chaos suite: short in the normal run, long with ``ACTORQ_CHAOS=long``.

Every chaos test publishes a table (``_report.publish``); the tables are printed as the tests
run (visible with ``-s``), appended to ``$ACTORQ_CHAOS_REPORT`` when set, and summed up in
one line each at the end of the session.
"""

from __future__ import annotations

import pytest

from ._report import SUMMARY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("actorq chaos")
        for line in SUMMARY:
            terminalreporter.write_line(line)
