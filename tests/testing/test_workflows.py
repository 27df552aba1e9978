"""The test kit drains workflows inline: groups with a fan-in, chains, durable steps that
sleep or wait for a signal, on both loops."""

from __future__ import annotations

from typing import Any

import pytest

from actors.jobs import App, JobContext
from actors.testing import open_tester
from transports import JobState

pytestmark = pytest.mark.anyio


def album_app(calls: dict[str, int]) -> App:
    """Thumbnails fanned out, a zip fanned in; an order job that charges once, sleeps a day
    and waits for its shipment."""
    app = App()

    @app.task("thumb")
    async def thumb(ctx: JobContext, payload: int) -> int:
        return payload * 10

    @app.task("zip")
    async def zip_(ctx: JobContext, payload: Any) -> list[Any]:
        return list((await ctx.parent_results()).values())

    def charge() -> str:
        calls["charge"] = calls.get("charge", 0) + 1
        return "ch_1"

    @app.task("order")
    async def order(ctx: JobContext, payload: Any) -> dict[str, Any]:
        charged = await ctx.step("charge", charge)
        await ctx.sleep_for(86_400.0)
        carrier = await ctx.wait_for("order:1:shipped", timeout=7 * 86_400.0)
        return {"charge": charged, "carrier": carrier}

    return app


async def test_a_drain_runs_a_group_and_then_its_fan_in() -> None:
    """The members run, then the callback, which reads their results, in one drain."""
    app = album_app({})
    async with open_tester(app) as tester:
        members = [app.request("thumb", n) for n in (1, 2, 3)]
        results = await app.group(members, then=app.request("zip"), workflow="album-1")
        drained = await tester.drain()
        assert [run.kind for run in drained] == ["thumb", "thumb", "thumb", "zip"]
        job = await tester.transport.get(results[-1].job_id)
        assert job.state is JobState.SUCCEEDED
        assert job.result == [10, 20, 30]


async def test_a_drain_follows_a_chain_link_by_link() -> None:
    app = album_app({})
    async with open_tester(app) as tester:
        await app.chain(app.request("thumb", 1), app.request("thumb", 2), app.request("zip"))
        drained = await tester.drain()
        assert [(run.kind, run.payload) for run in drained] == [
            ("thumb", 1),
            ("thumb", 2),
            ("zip", None),
        ]


async def test_a_drain_resumes_a_job_that_sleeps_and_waits_without_charging_twice() -> None:
    """Time moves on to the sleep's end, the job suspends on its event; a signal resumes it,
    and the recorded step is not run again."""
    calls: dict[str, int] = {}
    app = album_app(calls)
    async with open_tester(app) as tester:
        queued = await app.enqueue("order", None)
        await tester.drain()  # charges, then sleeps a day
        assert (await tester.transport.get(queued.job_id)).state is JobState.SCHEDULED
        await tester.run_for(86_400.0)  # wakes, then waits for the shipment
        assert (await tester.transport.get(queued.job_id)).state is JobState.SUSPENDED
        await tester.signal("order:1:shipped", "DHL")
        await tester.drain()
        job = await tester.transport.get(queued.job_id)
        assert job.state is JobState.SUCCEEDED
        assert job.result == {"charge": "ch_1", "carrier": "DHL"}
        assert calls == {"charge": 1}
