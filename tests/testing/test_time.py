"""Virtual time: advance fires cron ticks; run_for lets time pass as a live node sees it."""

from __future__ import annotations

from typing import Any

import pytest

from actors.jobs import App, Constant, CronFired, JobContext, Overlap, RuntimeEvent
from actors.testing import DEFAULT_START, ClockMovedBackwards, RunOutcome, open_tester
from transports import JobState

pytestmark = pytest.mark.anyio


def cron_app(*, overlap: Overlap = Overlap.ALLOW, jitter: float = 0.0) -> App:
    app = App()

    @app.task("tick")
    async def tick(ctx: JobContext, payload: Any) -> None:
        pass

    @app.task("nightly")
    async def nightly(ctx: JobContext, payload: Any) -> None:
        pass

    app.schedule("every-10-min", "*/10 * * * *", tick, overlap=overlap, jitter=jitter)
    app.schedule("nightly", "0 3 * * *", nightly, payload={"full": True})
    return app


async def test_time_never_moves_backwards() -> None:
    """A negative advance or a past target is refused, and the clock stays put."""
    async with open_tester(App()) as tester:
        with pytest.raises(ClockMovedBackwards):
            await tester.advance(-1.0)
        with pytest.raises(ClockMovedBackwards):
            await tester.advance_to(DEFAULT_START - 1)
        with pytest.raises(ClockMovedBackwards):
            await tester.run_for(-5.0)
        assert tester.now() == DEFAULT_START
        await tester.advance_to(DEFAULT_START + 5)
        assert tester.now() == DEFAULT_START + 5


async def test_advance_fires_each_crossed_tick_at_its_time() -> None:
    """Each tick crossed enqueues its job, created at the tick, with the schedule's payload;
    a tick not yet reached fires nothing."""
    app = cron_app()
    fired: list[RuntimeEvent] = []
    async with open_tester(app) as tester:
        tester.events.subscribe(fired.append)
        await tester.advance(599.0)
        await tester.refute_enqueued("tick")
        await tester.advance(3 * 3600.0 - 599.0)
        ticks = await tester.jobs("tick")
        assert [job.created_at - DEFAULT_START for job in ticks] == [
            600.0 * n for n in range(1, 19)
        ]
        (nightly,) = await tester.jobs("nightly")
        assert nightly.payload == {"full": True}
        assert nightly.created_at == DEFAULT_START + 3 * 3600.0
        assert all(isinstance(e, CronFired) for e in fired)
        assert len(fired) == 19
        assert tester.now() == DEFAULT_START + 3 * 3600.0


async def test_overlap_skip_folds_into_the_active_job() -> None:
    """Under Overlap.SKIP, ticks crossed while the previous run waits fold into it."""
    app = cron_app(overlap=Overlap.SKIP)
    async with open_tester(app) as tester:
        await tester.advance(3600.0)
        assert len(await tester.jobs("tick")) == 1
        await tester.drain()
        await tester.advance(600.0)
        assert [job.state for job in await tester.jobs("tick")] == [
            JobState.SUCCEEDED,
            JobState.AVAILABLE,
        ]


async def test_cron_can_be_turned_off() -> None:
    """``cron=False``: time passes and no schedule fires."""
    async with open_tester(cron_app(), cron=False) as tester:
        await tester.advance(24 * 3600.0)
        assert await tester.jobs() == []


async def test_jitter_comes_from_the_seed() -> None:
    """Cron jitter delays are drawn from the tester's seeded RNG: one seed, one schedule."""

    async def delays(seed: int) -> list[float]:
        async with open_tester(cron_app(jitter=30.0), seed=seed) as tester:
            await tester.advance(3600.0)
            return [job.run_at - job.created_at for job in await tester.jobs("tick")]

    first, again, other = await delays(1), await delays(1), await delays(2)
    assert first == again
    assert first != other
    assert all(0.0 <= delay <= 30.0 for delay in first + other)
    assert len(set(first)) == len(first)  # drawn per tick


async def test_run_for_runs_retries_and_ticks_as_they_come_due() -> None:
    """run_for walks from one due moment to the next, running what is due at each."""
    app = cron_app()

    @app.task("flaky", max_attempts=4, backoff=Constant(seconds=400.0))
    async def flaky(ctx: JobContext, payload: Any) -> None:
        if ctx.attempt < 3:
            raise RuntimeError("down")

    async with open_tester(app) as tester:
        await tester.enqueue("flaky")
        result = await tester.run_for(1800.0)
        timeline = [(run.started_at - DEFAULT_START, run.kind, run.outcome) for run in result]
        assert timeline == [
            (0.0, "flaky", RunOutcome.RETRIED),
            (400.0, "flaky", RunOutcome.RETRIED),
            (600.0, "tick", RunOutcome.SUCCEEDED),
            (800.0, "flaky", RunOutcome.SUCCEEDED),
            (1200.0, "tick", RunOutcome.SUCCEEDED),
            (1800.0, "tick", RunOutcome.SUCCEEDED),
        ]
        assert tester.now() == DEFAULT_START + 1800.0
