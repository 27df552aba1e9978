"""A drain ends every job as a running node does: same states, attempts and errors."""

from __future__ import annotations

from random import Random
from typing import Any

import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import App, Constant, Drop, JobContext, RetryLater, SnoozeUntil, Topology
from actors.testing import DEFAULT_START, open_tester
from tests.jobs._support import wait_final
from transports import EnqueueRequest, Job, MemoryTransport, Transport

pytestmark = pytest.mark.anyio


@attrs.frozen(kw_only=True)
class Typed:
    n: int


def build_app() -> App:
    """One task per way a job can end; their state lives in the App (one per run)."""
    app = App()
    snoozed: list[int] = []

    @app.task("flaky", max_attempts=5, backoff=Constant(seconds=10.0))
    async def flaky(ctx: JobContext, payload: Any) -> None:
        if ctx.attempt < 3:
            raise RuntimeError(f"failure {ctx.attempt}")

    @app.task("exhausted", max_attempts=2, backoff=Constant(seconds=3.0))
    async def exhausted(ctx: JobContext, payload: Any) -> None:
        raise ValueError("always")

    @app.task("drop")
    async def drop(ctx: JobContext, payload: Any) -> Drop:
        return Drop(reason="bad input")

    @app.task("snooze")
    async def snooze(ctx: JobContext, payload: Any) -> SnoozeUntil | None:
        snoozed.append(ctx.job_id)
        return SnoozeUntil(at=ctx.clock.now() + 30.0) if len(snoozed) == 1 else None

    @app.task("later", max_attempts=3)
    async def later(ctx: JobContext, payload: Any) -> RetryLater | None:
        return RetryLater(delay=5.0, reason="not yet") if ctx.attempt == 1 else None

    @app.task("slow", timeout=5.0, max_attempts=2, backoff=Constant(seconds=1.0))
    async def slow(ctx: JobContext, payload: Any) -> None:
        if ctx.attempt == 1:
            await ctx.clock.sleep(10.0)

    @app.task("typed")
    async def typed(ctx: JobContext, payload: Typed) -> None:
        pass

    @app.task("parent")
    async def parent(ctx: JobContext, payload: Any) -> None:
        await app.enqueue(flaky, {"from": ctx.job_id})

    return app


def requests(app: App) -> list[EnqueueRequest]:
    kinds = ["flaky", "exhausted", "drop", "snooze", "later", "slow", "parent"]
    made = [app.request(kind) for kind in kinds]
    poison = attrs.evolve(app.request("typed", Typed(n=1)), payload={"n": "x"})
    ghost = attrs.evolve(app.request("drop"), kind="ghost")  # no handler anywhere
    return [*made, poison, ghost]


def outcome(jobs: list[Job]) -> list[tuple[Any, ...]]:
    return [(j.id, j.kind, j.state, j.attempt, j.last_error) for j in jobs]


async def on_a_node() -> list[tuple[Any, ...]]:
    clock = VirtualClock(DEFAULT_START)
    transport: Transport = MemoryTransport(clock=clock)
    app = build_app()
    app.transport = transport
    ids = [r.job_id for r in await transport.enqueue_many(requests(app))]
    topology = Topology.default(app, transport, concurrency=1, clock=clock, rng=Random(0))
    async with clock.autojump(), topology.run():
        await wait_final(transport, clock, ids)
        await wait_final(transport, clock, [ids[-1] + 1])  # the job "parent" enqueued
    return outcome(await transport.list_jobs())


async def in_a_tester() -> list[tuple[Any, ...]]:
    app = build_app()
    async with open_tester(app) as tester:
        await tester.transport.enqueue_many(requests(app))
        await tester.drain(with_scheduled=True)
        return outcome(await tester.jobs())


async def test_a_drain_ends_jobs_as_a_running_node_does() -> None:
    """Retries, exhaustion, drops, snoozes, RetryLater, timeouts, poison payloads, unknown
    kinds and follow-up jobs: the tester's store ends exactly as a real node's."""
    production = await on_a_node()
    tested = await in_a_tester()
    assert tested == production
    assert {state for _, _, state, _, _ in production} == {"succeeded", "dead"}


def cron_app() -> App:
    app = App()

    @app.task("report")
    async def report(ctx: JobContext, payload: Any) -> None:
        pass

    app.schedule("every-10-min", "*/10 * * * *", report, payload={"full": False})
    return app


def fired(jobs: list[Job]) -> list[tuple[Any, ...]]:
    return [(j.kind, j.payload, j.dedupe_key, j.created_at, j.state) for j in jobs]


async def test_cron_ticks_fire_as_the_cron_leader_fires_them() -> None:
    """An hour of a node's Cron and an hour of ``run_for`` enqueue the same jobs, with the
    same dedupe keys, at the same times."""
    clock = VirtualClock(DEFAULT_START)
    transport = MemoryTransport(clock=clock)
    app = cron_app()
    topology = Topology.default(app, transport, concurrency=1, clock=clock, rng=Random(0))
    async with clock.autojump(), topology.run():
        await clock.sleep_until(DEFAULT_START + 3600.0 + 1.0)
    production = fired(await transport.list_jobs())

    async with open_tester(cron_app()) as tester:
        await tester.run_for(3600.0 + 1.0)
        tested = fired(await tester.jobs())

    assert len(production) == 6
    assert tested == production
