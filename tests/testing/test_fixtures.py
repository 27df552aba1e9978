"""The plugin's fixtures in this suite's own run: both loops, under the blocking detector."""

from __future__ import annotations

from random import Random

import pytest

from actors.jobs import App
from actors.sim import SimReport
from actors.testing import JobTester, RunOutcome
from actors.testing.pytest_plugin import AppSimulation
from tests.sim._broken import eager_reaper
from transports import EnqueueRequest


@pytest.mark.anyio
async def test_job_tester_holds_the_app(actorq_app: App, job_tester: JobTester) -> None:
    """The fixture is an open tester of ``actorq_app``: enqueueing lands in its store."""
    assert actorq_app.transport is job_tester.transport
    await actorq_app.enqueue("hello", {"n": 1})
    result = await job_tester.drain()
    assert [(run.kind, run.queue, run.outcome) for run in result] == [
        ("hello", "default", RunOutcome.SUCCEEDED),
        ("bye", "second", RunOutcome.SUCCEEDED),
    ]


@pytest.mark.trio
async def test_job_tester_under_pytest_trio(actorq_app: App, job_tester: JobTester) -> None:
    """In this suite's own run (its config, filterwarnings = error), pytest-trio runs the same
    fixture as anyio's plugin does."""
    await actorq_app.enqueue("hello", {"n": 2})
    assert (await job_tester.drain()).counts() == {"succeeded": 2}
    await job_tester.assert_enqueued("bye", payload={"n": 2}, state="succeeded")


@pytest.mark.anyio
async def test_without_autojump_a_sleeping_handler_waits_for_the_test(actorq_app: App) -> None:
    """``autojump=False``: virtual time moves only when the test moves it."""
    async with JobTester(actorq_app, autojump=False) as tester:
        await tester.enqueue("bye", None)
        (run,) = (await tester.drain()).runs
        assert run.outcome is RunOutcome.SUCCEEDED
        assert run.finished_at == run.started_at


def _make_job(app: App) -> object:
    def make_job(rng: Random, n: int) -> EnqueueRequest:
        return app.request("hello", {"n": n, "x": rng.random()})

    return make_job


def test_actorq_sim_returns_the_report(actorq_app: App, actorq_sim: AppSimulation) -> None:
    """A passing simulation returns its report and keeps it in ``reports``."""
    report = actorq_sim(_make_job(actorq_app), seed=2, nodes=2, jobs=30, duration="2m")  # type: ignore[arg-type]
    assert isinstance(report, SimReport)
    assert report.passed
    assert report.config.seed == 2
    assert actorq_sim.reports == [report]


def test_a_forced_seed_overrides_the_tests_seeds(actorq_app: App) -> None:
    """``--actorq-seed`` (``forced_seed``) replaces every seed a test gives, sweeps included."""
    sim = AppSimulation(actorq_app, nodeid="t.py::test", forced_seed=9)
    reports = sim.sweep(_make_job(actorq_app), range(3), nodes=1, jobs=5, duration="30s")  # type: ignore[arg-type]
    assert [r.config.seed for r in reports] == [9]


def test_a_violation_fails_the_test_with_both_replays(actorq_app: App) -> None:
    """A broken invariant fails through ``pytest.fail``: the simulator's report, its replay
    call, then the pytest command for this test and seed."""
    sim = AppSimulation(actorq_app, nodeid="tests/t.py::test_x")
    with pytest.raises(pytest.fail.Exception) as caught:
        sim.sweep(
            _make_job(actorq_app),  # type: ignore[arg-type]
            range(1, 201),
            transport_factory=eager_reaper,
            nodes=3,
            jobs=150,
            duration="10m",
            rates="crash=5,pause=20,storage=10,partition=10,skew=10",
        )
    message = str(caught.value)
    assert "VIOLATION of reap_only_expired" in message
    assert "simulate_app(app, make_job, seed=" in message
    last = message.rstrip().splitlines()[-1]
    assert last.startswith("replay this test with: pytest tests/t.py::test_x --actorq-seed=")
