"""Flow control in the runtime: concurrency keys from the App, limits held by running nodes."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    ConfigInvalid,
    JobContext,
    PayloadInvalid,
    SnoozeUntil,
    WorkerConfig,
)
from transports import InvalidRequest, JobState, Transport

from ._support import START, start_node, topology, wait_final

pytestmark = pytest.mark.anyio


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None


async def test_the_key_is_the_tasks_filled_in_or_the_callers(transport: Transport) -> None:
    """A static key, a template filled in from the payload, and a per-call key reach storage."""
    app = App(transport)
    app.register("charge", _noop, concurrency_key="stripe")
    app.register("sync", _noop, concurrency_key="tenant:{tenant_id}/{region}")
    app.register("plain", _noop)
    charge = await app.enqueue("charge", {"amount": 5})
    sync = await app.enqueue("sync", {"tenant_id": 42, "region": "eu"})
    override = await app.enqueue("sync", {"tenant_id": 1, "region": "us"}, concurrency_key="x")
    plain = await app.enqueue("plain", None)
    keys = [(await transport.get(r.job_id)).concurrency_key for r in (charge, sync, override)]
    assert keys == ["stripe", "tenant:42/eu", "x"]
    assert (await transport.get(plain.job_id)).concurrency_key is None


@pytest.mark.parametrize(
    "template", ["", "tenant:{}", "{0}", "{a.b}", "{a[0]}", "{a!r}", "{a:>5}", "{a", "nl\n", 5]
)
def test_a_bad_key_template_is_refused_at_registration(template: object) -> None:
    """A template that is not a label of plain payload fields raises ConfigInvalid."""
    app = App()
    with pytest.raises(ConfigInvalid, match="concurrency_key"):
        app.register("k", _noop, concurrency_key=template)  # type: ignore[arg-type]
    assert "k" not in app.tasks


@pytest.mark.parametrize(
    "payload", [None, [1], {"other": 1}, {"tenant_id": None}, {"tenant_id": [1]}]
)
async def test_a_payload_that_cannot_fill_the_key_is_refused(
    transport: Transport, payload: object
) -> None:
    """A payload lacking the template's field (or holding no string or integer there) raises
    PayloadInvalid and writes nothing."""
    app = App(transport)
    app.register("sync", _noop, concurrency_key="tenant:{tenant_id}")
    with pytest.raises(PayloadInvalid, match="tenant_id"):
        await app.enqueue("sync", payload)
    assert await transport.counts() == []


async def test_a_key_filled_in_too_long_is_refused(transport: Transport) -> None:
    """A filled-in key must still be a label: too long raises InvalidRequest, nothing written."""
    app = App(transport)
    app.register("sync", _noop, concurrency_key="tenant:{tenant_id}")
    with pytest.raises(InvalidRequest):
        await app.enqueue("sync", {"tenant_id": "x" * 300})
    assert await transport.counts() == []


async def test_two_nodes_hold_a_key_limit_and_finish_every_job(
    transport: Transport, clock: VirtualClock
) -> None:
    """Two nodes of four Workers each run at most the key's limit at once, cluster-wide, while
    jobs of other keys run beside them, and every job ends succeeded."""
    app = App(transport)
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    async def work(ctx: JobContext, payload: Any) -> None:
        key = payload["api"]
        running[key] = running.get(key, 0) + 1
        most[key] = max(most.get(key, 0), running[key])
        await clock.sleep(5.0)
        running[key] -= 1

    app.register("call", work, concurrency_key="api:{api}")
    await transport.set_limit("api:slow", concurrency=2)
    ids = [(await app.enqueue("call", {"api": "slow"})).job_id for _ in range(10)]
    ids += [(await app.enqueue("call", {"api": "fast"})).job_id for _ in range(6)]
    async with clock.autojump(), anyio.create_task_group() as tg:
        nodes = [
            await start_node(tg, topology(app, transport, clock, node_id=f"n{n}", concurrency=4))
            for n in (1, 2)
        ]
        jobs = await wait_final(transport, clock, ids, timeout=600.0)
        for node in nodes:
            await node.stop()
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert most["slow"] == 2
    assert most["fast"] > 2  # an unlimited key is not held back by the limited one
    assert all(job.attempt == 1 for job in jobs.values())  # passing over spends no attempt
    # Ten 5 s jobs two at a time take 25 s, give or take the polls of the claimers.
    assert max(job.finished_at or 0.0 for job in jobs.values()) - START < 60.0


async def test_a_node_starts_a_rate_limited_key_as_its_window_reopens(
    transport: Transport, clock: VirtualClock
) -> None:
    """A key of 2 starts per 10 s: the jobs start in pairs 10 s apart, each as the window
    reopens, though the claimers poll only every 1000 s: they wait for ``reopens_in``."""
    app = App(transport)
    started: list[float] = []

    async def work(ctx: JobContext, payload: Any) -> None:
        started.append(clock.now())

    app.register("call", work, concurrency_key="api")
    await transport.set_limit("api", rate=2, per=10.0)
    ids = [(await app.enqueue("call", {})).job_id for _ in range(6)]
    slow_polls = WorkerConfig(lease_ttl=30.0, batch_size=10, poll_interval=1000.0)
    async with clock.autojump(), anyio.create_task_group() as tg:
        node = await start_node(tg, topology(app, transport, clock, worker=slow_polls))
        jobs = await wait_final(transport, clock, ids, timeout=600.0)
        await node.stop()
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    offsets = sorted(round(at - started[0], 3) for at in started)
    assert offsets == [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]
    assert all(job.attempt == 1 for job in jobs.values())


@pytest.mark.parametrize("cool", [30.0, 0.3])
async def test_cool_down_snoozes_the_job_and_holds_its_key(
    transport: Transport, clock: VirtualClock, cool: float
) -> None:
    """A handler answering ``SnoozeUntil(now + 30, cool_down=True)`` gets its job snoozed (attempt given back) and no
    job of its key starts for 30 s, on any node; jobs of other keys run meanwhile. The key's
    jobs start again as it reopens, however soon (no wake-up says so: the Claimers wait no
    longer than the store says the key needs)."""
    app = App(transport)
    started: dict[str, list[float]] = {}
    told = False

    async def work(ctx: JobContext, payload: Any) -> SnoozeUntil | None:
        nonlocal told
        started.setdefault(payload["api"], []).append(clock.now())
        if payload["api"] == "busy" and not told:
            told = True  # "429 Too Many Requests, Retry-After: 30"
            return SnoozeUntil(at=ctx.clock.now() + cool, cool_down=True)
        return None

    app.register("call", work, concurrency_key="api:{api}")
    await transport.set_limit("api:busy", concurrency=1)  # one at a time: the first is told
    ids = [(await app.enqueue("call", {"api": "busy"})).job_id for _ in range(3)]
    ids += [(await app.enqueue("call", {"api": "calm"})).job_id for _ in range(2)]
    slow_polls = WorkerConfig(lease_ttl=30.0, batch_size=10, poll_interval=1000.0)
    async with clock.autojump(), anyio.create_task_group() as tg:
        nodes = [
            await start_node(
                tg, topology(app, transport, clock, node_id=f"n{n}", worker=slow_polls)
            )
            for n in (1, 2)
        ]
        jobs = await wait_final(transport, clock, ids, timeout=600.0)
        for node in nodes:
            await node.stop()
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    first, *rest = started["busy"]
    assert len(rest) == 3  # the told job ran again, and the two others
    assert min(rest) - first == pytest.approx(cool, abs=0.01)
    assert max(started["calm"]) - first < 1.0  # not held
    assert sorted(job.attempt for job in jobs.values()) == [1] * 5  # the snooze spent none


async def test_the_partition_is_the_tasks_filled_in_or_the_callers(transport: Transport) -> None:
    """A partition template is filled in from the payload like a concurrency key; a per-call
    partition replaces it; a bad template is refused at registration."""
    app = App(transport)
    app.register("sync", _noop, partition_key="tenant:{tenant_id}")
    sync = await app.enqueue("sync", {"tenant_id": 7})
    override = await app.enqueue("sync", {"tenant_id": 7}, partition_key="vip")
    assert [(await transport.get(r.job_id)).partition_key for r in (sync, override)] == [
        "tenant:7",
        "vip",
    ]
    with pytest.raises(PayloadInvalid, match="partition key"):
        await app.enqueue("sync", {"other": 1})
    with pytest.raises(ConfigInvalid, match="partition_key"):
        app.register("bad", _noop, partition_key="{a.b}")


async def test_a_small_tenant_runs_beside_a_big_backlog(
    transport: Transport, clock: VirtualClock
) -> None:
    """One slot, a tenant with 30 jobs waiting and then one with 3: the small tenant's jobs run
    every other job, not after the big backlog."""
    app = App(transport)
    ran: list[str] = []

    async def work(ctx: JobContext, payload: Any) -> None:
        ran.append(payload["tenant"])
        await clock.sleep(1.0)

    app.register("report", work, partition_key="{tenant}")
    ids = [(await app.enqueue("report", {"tenant": "big"})).job_id for _ in range(30)]
    ids += [(await app.enqueue("report", {"tenant": "small"})).job_id for _ in range(3)]
    one_slot = WorkerConfig(lease_ttl=30.0, batch_size=1)
    async with clock.autojump(), anyio.create_task_group() as tg:
        node = await start_node(tg, topology(app, transport, clock, worker=one_slot, concurrency=1))
        jobs = await wait_final(transport, clock, ids, timeout=600.0)
        await node.stop()
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert ran[:6] == ["big", "small"] * 3
