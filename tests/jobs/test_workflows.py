"""Dependencies end to end: chains, groups with a fan-in callback, a failed member, on every
backend and both loops; the test kit drains a workflow inline."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core import VirtualClock
from actors.jobs import App, ConfigInvalid, Drop, JobContext, JobFailed
from actors.testing import open_tester
from transports import JobFilter, JobState, Transport

from ._support import running, topology

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


def _app(transport: Transport | None, clock: VirtualClock | None, seen: list[str]) -> App:
    app = App(transport, clock=clock)

    @app.task("step")
    async def step(ctx: JobContext, payload: str) -> str:
        seen.append(payload)
        return payload.upper()

    @app.task("email")
    async def email(ctx: JobContext, payload: int) -> int:
        if payload < 0:
            return Drop(reason="bounced")  # type: ignore[return-value]
        return payload * 10

    @app.task("receipt")
    async def receipt(ctx: JobContext, payload: Any) -> dict[str, Any]:
        parents = await ctx.parent_results()
        return {"parents": len(parents), "sum": sum(v for v in parents.values() if v)}

    return app


async def test_chains_and_fan_ins_run_in_order_on_every_backend(
    transport: Transport, clock: VirtualClock
) -> None:
    """A chain runs its links one after the other; a group's callback runs once, after every
    member, with their results; a failed member cancels the callback (JobFailed, cancelled)."""
    seen: list[str] = []
    app = _app(transport, clock, seen)
    links = await app.chain(
        app.request("step", "a"), app.request("step", "b"), app.request("step", "c"),
        workflow="order-1",
    )  # fmt: skip
    fan = await app.group(
        [app.request("email", n) for n in (1, 2, 3)], then=app.request("receipt"), workflow="o-2"
    )
    failed = await app.group(
        [app.request("email", n) for n in (1, -1)], then=app.request("receipt")
    )
    assert (await transport.get(links[2].job_id)).state is JobState.PENDING
    async with clock.autojump(), running(topology(app, transport, clock, concurrency=4)):
        assert await app.result(links[-1], timeout=60.0) == "C"
        assert await app.result(fan[-1], timeout=60.0) == {"parents": 3, "sum": 60}
        with pytest.raises(JobFailed) as cancelled:
            await app.result(failed[-1], timeout=60.0)
    assert seen == ["a", "b", "c"]
    assert cancelled.value.state is JobState.CANCELLED
    assert cancelled.value.last_error == f"parent {failed[1].job_id} ended dead"
    (summary,) = await transport.list_workflows(workflow="o-2")
    assert dict(summary.by_state) == {JobState.SUCCEEDED: 4}
    assert len(await transport.list_jobs(JobFilter(workflow="order-1"))) == 3


async def test_the_test_kit_drains_a_workflow_inline() -> None:
    """JobTester runs each dependent as soon as its parents succeeded, in one drain."""
    seen: list[str] = []
    app = _app(None, None, seen)
    async with open_tester(app) as tester:
        await app.chain(app.request("step", "x"), app.request("step", "y"))
        fan = await app.group([app.request("email", 4)], then=app.request("receipt"))
        result = await tester.drain()
        order = [(run.kind, run.payload) for run in result]
        assert sorted(order, key=str) == sorted(
            [("step", "x"), ("step", "y"), ("email", 4), ("receipt", None)], key=str
        )
        assert order.index(("step", "x")) < order.index(("step", "y"))
        assert order.index(("email", 4)) < order.index(("receipt", None))
        assert seen == ["x", "y"]
        (receipt,) = [run for run in result if run.kind == "receipt"]
        assert receipt.result == {"parents": 1, "sum": 40}
        assert await app.result(fan[-1], transport=tester.transport, timeout=0) == {
            "parents": 1,
            "sum": 40,
        }


async def test_chains_and_groups_refuse_bad_arguments() -> None:
    """An empty chain or group, a bad policy or parent is a ConfigInvalid, before writing."""
    app = _app(None, None, [])
    async with open_tester(app) as tester:
        with pytest.raises(ConfigInvalid):
            await app.chain()
        with pytest.raises(ConfigInvalid):
            await app.group([])
        with pytest.raises(ConfigInvalid):
            await app.chain(app.request("step", "a"), on_failure="maybe")
        with pytest.raises(ConfigInvalid):
            await app.enqueue("step", "a", after=["seven"])  # type: ignore[list-item]
        assert await tester.jobs() == []
