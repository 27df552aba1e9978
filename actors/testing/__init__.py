"""Testing your own jobs: an App on a memory store and a virtual clock, run by your test.

The kit mirrors what Oban.Testing and River's ``rivertest`` give their users::

    from actors.testing import open_tester

    async def test_an_order_sends_its_receipt() -> None:
        async with open_tester(app) as tester:
            await app.enqueue(place_order, Order(id=1, cents=500))
            await tester.assert_enqueued(place_order, payload={"id": 1})
            result = await tester.drain()  # the order, then the receipt it enqueued
            assert result.counts() == {"succeeded": 2}
            await tester.advance(3600)  # retries, snoozes and cron ticks come due

* :class:`JobTester` / :func:`open_tester`: the harness. :meth:`JobTester.drain` runs every
  due job inline through the runtime's own Worker code and returns a :class:`DrainResult`;
  :meth:`JobTester.assert_enqueued` and :meth:`JobTester.refute_enqueued` check the store;
  :meth:`JobTester.advance` and :meth:`JobTester.run_for` move virtual time.
* :mod:`actors.testing.pytest_plugin`: fixtures (``job_tester``, ``actorq_sim``), enabled by
  ``pytest_plugins = ["actors.testing.pytest_plugin"]`` in your ``conftest.py``; they work
  under anyio's pytest plugin and under pytest-trio.

Every failure the kit reports is a :class:`TestingError`, an ``AssertionError``.
"""

from ._errors import (
    ClockMovedBackwards,
    DrainDidNotSettle,
    NotEnqueued,
    TestingError,
    UnexpectedlyEnqueued,
)
from ._results import DrainResult, JobRun, RunOutcome
from ._tester import DEFAULT_START, JobTester, open_tester

__all__ = [
    "DEFAULT_START",
    "ClockMovedBackwards",
    "DrainDidNotSettle",
    "DrainResult",
    "JobRun",
    "JobTester",
    "NotEnqueued",
    "RunOutcome",
    "TestingError",
    "UnexpectedlyEnqueued",
    "open_tester",
]
