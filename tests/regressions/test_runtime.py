"""Regression tests of the runtime: each guards one bug that once shipped (see ``_bugs.py``,
where each is paired with the mutant that puts the bug back, and ``test_teeth.py``)."""

from __future__ import annotations

from random import Random
from typing import Any

import anyio
import pytest

from actors.core import VirtualClock, WhichChildren, open_actor_system
from actors.jobs import App, JobContext, SnoozeUntil, Topology, WorkerConfig
from actors.jobs.lowlevel import EventBus, LeasesLost, QueueSupervisor
from transports import JobState, MemoryTransport

from ..jobs._support import START, wait_state

pytestmark = pytest.mark.anyio


async def test_a_stale_lost_lease_notice_spares_a_newer_claim() -> None:
    """Bug ``lost-lease-notice-without-token``: a worker snoozed a job, a renewal of the old
    token came back lost, the worker claimed the job again, and the late notice about the old
    token cancelled the new claim; the job then ran forever (its lease kept being renewed).
    A notice names the token it means, and the Worker spares a newer claim of the same job."""
    clock = VirtualClock(start=START)
    async with MemoryTransport(clock=clock) as transport:
        app = App(transport)
        tokens: list[int] = []
        second_run = anyio.Event()
        finish = anyio.Event()
        cancelled: list[int] = []

        @app.task("flaky.snooze")
        async def handler(ctx: JobContext, payload: Any) -> SnoozeUntil | None:
            tokens.append(ctx.lease.token)
            if len(tokens) == 1:
                return SnoozeUntil(at=ctx.clock.now())  # gives this claim's token back
            second_run.set()
            try:
                await finish.wait()
            except BaseException:
                cancelled.append(ctx.lease.token)
                raise
            return None

        job_id = (await app.enqueue(handler, None)).job_id
        config = WorkerConfig(lease_ttl=30.0, poll_interval=0.5, batch_size=1)
        async with clock.autojump(), open_actor_system(clock=clock) as system:
            queue = await system.spawn(
                QueueSupervisor(
                    node_id="n1",
                    queue="default",
                    app=app,
                    transport=transport,
                    events=EventBus(),
                    rng=Random(0),
                    concurrency=1,
                    worker_config=config,
                )
            )
            with anyio.fail_after(60):
                await second_run.wait()
            children = await queue.ask(lambda r: WhichChildren(reply_to=r), timeout=10.0)
            (worker,) = [c.ref for c in children if c.id == "n1/default/1"]
            assert worker is not None
            first, newer = tokens
            assert first != newer
            # The late notice about the first claim arrives while the newer claim runs.
            await worker.tell(LeasesLost(job_ids=(job_id,), tokens=(first,)))
            await clock.sleep(1.0)
            finish.set()
            job = await wait_state(transport, clock, job_id, JobState.SUCCEEDED, timeout=120.0)
    assert cancelled == []
    assert job.attempt == 1  # the snooze gave its attempt back


class _PausedAfterClaim(MemoryTransport):
    """A node stopped (SIGSTOP) just as the store answered its first claim, resumed after
    ``pause`` seconds: it sees that claim only then."""

    def __init__(self, *, clock: VirtualClock, store: Any, pause: float) -> None:
        super().__init__(clock=clock, store=store)
        self.node_clock = clock
        self.pause = pause

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Any]:
        leases = await super().claim(queue, owner=owner, limit=limit, ttl=ttl)
        if leases and self.pause:
            pause, self.pause = self.pause, 0.0
            await self.node_clock.sleep(pause)
        return leases


async def test_a_node_resumed_past_its_lease_never_starts_what_it_claimed_before() -> None:
    """Bug ``start-on-an-expired-lease``: a worker resumed after a pause longer than the lease
    started the handlers it had claimed before the pause, although other nodes had run those
    jobs meanwhile. A Worker starts a job only while the node's clock says its lease (measured
    from when the claim was sent) has more than ``start_margin`` of its TTL left, and gives it
    back otherwise: the job runs once, on the node that claimed it afterwards."""
    clock = VirtualClock(start=START)
    async with MemoryTransport(clock=clock) as live:
        paused = _PausedAfterClaim(clock=clock, store=live.store, pause=12.0)
        app = App(live)
        runs: list[str] = []

        @app.task("once")
        async def once(ctx: JobContext, payload: Any) -> None:
            runs.append(ctx.lease.owner)

        job_id = (await app.enqueue(once, None)).job_id
        config = WorkerConfig(lease_ttl=5.0, poll_interval=0.5)
        resumed = Topology(
            app, paused, node_id="resumed", clock=clock, rng=Random(0), config=config
        )
        other = Topology.default(
            app, live, node_id="other", clock=clock, rng=Random(1), worker=config
        )
        async with clock.autojump(), resumed.queue("default").run():
            await clock.sleep(1.0)  # the resumed node's claim is answered, then it stops
            async with other.run():
                await wait_state(live, clock, job_id, JobState.SUCCEEDED, timeout=60.0)
            await clock.sleep(20.0)  # the resumed node wakes and sees its old claim
    assert runs == ["other/default"]
