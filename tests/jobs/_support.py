"""Helpers shared by the job runtime tests: nodes on a virtual clock, events, injected faults."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from random import Random
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from actors.core import VirtualClock
from actors.jobs import App, CronSchedule, Node, RuntimeEvent, Topology, WorkerConfig
from actors.jobs.lowlevel import EventBus
from transports import (
    ConnectionLost,
    EnqueueRequest,
    EnqueueResult,
    InvalidRequest,
    Job,
    JobState,
    Transport,
)
from transports.lowlevel import (
    ForwardingTransport,
    TimeSource,
)

E = TypeVar("E")
R = TypeVar("R")

#: Where every test's virtual clock starts: a whole minute, so cron ticks fall on round times.
START = 1_699_999_980.0

#: Worker settings for tests: the defaults, spelled out so tests can reason about them.
WORKER = WorkerConfig(lease_ttl=30.0, batch_size=10, poll_interval=1.0, drain_timeout=10.0)


def topology(
    app: App,
    transport: Transport,
    clock: VirtualClock,
    *,
    node_id: str = "n1",
    seed: int = 0,
    concurrency: int = 2,
    worker: WorkerConfig = WORKER,
    schedules: Sequence[CronSchedule] = (),
    queues: Sequence[str] | None = None,
    reaper_interval: float = 1.0,
) -> Topology:
    """The default topology of one test node, seeded and on the virtual clock."""
    return Topology.default(
        app,
        transport,
        queues=queues,
        concurrency=concurrency,
        worker=worker,
        schedules=schedules,
        reaper_interval=reaper_interval,
        node_id=node_id,
        clock=clock,
        rng=Random(seed),
    )


class Recorder:
    """An ``EventBus`` subscriber keeping every event it is given, in order."""

    def __init__(self) -> None:
        self.events: list[RuntimeEvent] = []

    def __call__(self, event: RuntimeEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        """The recorded events of one class, in order."""
        return [e for e in self.events if isinstance(e, kind)]


@asynccontextmanager
async def running(
    topology: Topology, *, shutdown_timeout: float = 30.0
) -> AsyncIterator[tuple[Node, Recorder]]:
    """Run ``topology``, recording every event of the node from its very first one."""
    events = EventBus()
    recorder = Recorder()
    events.subscribe(recorder)
    async with topology.run(events=events, shutdown_timeout=shutdown_timeout) as node:
        yield node, recorder


class RunningNode:
    """A node running in a background task, so that several can stop in any order."""

    def __init__(self, node: Node, events: Recorder, stop: anyio.Event, done: anyio.Event) -> None:
        self.node = node
        self.events = events
        self._stop = stop
        self._done = done

    async def stop(self) -> None:
        """Leave ``topology.run()`` (a graceful shutdown) and wait until the node is gone."""
        self._stop.set()
        await self._done.wait()


async def start_node(
    tg: anyio.abc.TaskGroup, topology: Topology, *, shutdown_timeout: float = 30.0
) -> RunningNode:
    """Run ``topology`` in a task of ``tg`` until its ``stop()`` (or the group ends)."""
    stop = anyio.Event()
    done = anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[RunningNode]) -> None:
        try:
            async with running(topology, shutdown_timeout=shutdown_timeout) as (node, events):
                task_status.started(RunningNode(node, events, stop, done))
                await stop.wait()
        finally:
            done.set()

    started: RunningNode = await tg.start(run)
    return started


async def wait_until(
    clock: VirtualClock,
    predicate: Callable[[], object | Awaitable[object]],
    *,
    timeout: float = 120.0,
    step: float = 0.25,
    what: str = "the condition",
) -> None:
    """Poll ``predicate`` every ``step`` virtual seconds until it is true.

    Raises:
        AssertionError: it was still false after ``timeout`` virtual seconds.
    """
    deadline = clock.now() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if clock.now() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout} virtual seconds")
        await clock.sleep(step)


async def wait_final(
    transport: Transport, clock: VirtualClock, job_ids: Sequence[int], *, timeout: float = 120.0
) -> dict[int, Job]:
    """Wait until every job is final and return them by id."""
    jobs: dict[int, Job] = {}

    async def all_final() -> bool:
        for job_id in job_ids:
            jobs[job_id] = await transport.get(job_id)
        return all(job.state.is_final for job in jobs.values())

    await wait_until(clock, all_final, timeout=timeout, what=f"jobs {list(job_ids)} ending")
    return jobs


async def wait_state(
    transport: Transport, clock: VirtualClock, job_id: int, state: JobState, **kw: Any
) -> Job:
    """Wait until job ``job_id`` is in ``state`` and return it."""
    found: list[Job] = []

    async def reached() -> bool:
        found[:] = [await transport.get(job_id)]
        return found[0].state is state

    await wait_until(clock, reached, what=f"job {job_id} becoming {state}", **kw)
    return found[0]


class FaultyTransport(ForwardingTransport):
    """Delegates every call to ``inner``, failing or stalling chosen calls on demand.

    Attributes:
        down: while true, every call raises ``ConnectionLost`` (the store is unreachable).
        failing: method names that raise ``ConnectionLost`` while listed.
        crash_once: method names whose next call raises ``RuntimeError`` (a bug, not storage).
        invalid_once: method names whose next call raises ``InvalidRequest`` (the store
            refusing a malformed request: a bug of the caller, not the store's weather).
        gates: method name -> event; calls wait for it to be set before going through.
        calls: how often each method was called.
        hold_time: a virtual clock held (:meth:`VirtualClock.hold`) while a call other than
            ``wait_for_work`` or ``wait_for_jobs`` is in flight, so autojump does not move time.
            A SQL backend's call waits for a thread or a socket, which autojump counts as
            blocked: without this, virtual time races through every pending timer while a
            query runs. The two waits may last for ever, so time runs while they wait; it is
            held only while a cancelled wait unwinds (a bridged wait stops its asyncio side
            in real time, and the timer that cancelled it must not be followed by others).
    """

    def __init__(self, inner: Transport, *, hold_time: VirtualClock | None = None) -> None:
        super().__init__(inner)
        self.hold_time = hold_time
        self.down = False
        self.failing: set[str] = set()
        self.crash_once: set[str] = set()
        self.invalid_once: set[str] = set()
        self.gates: dict[str, anyio.Event] = {}
        self.calls: Counter[str] = Counter()

    async def _before(self, name: str) -> None:
        self.calls[name] += 1
        await anyio.lowlevel.checkpoint()
        gate = self.gates.get(name)
        if gate is not None:
            await gate.wait()
        if name in self.crash_once:
            self.crash_once.discard(name)
            raise RuntimeError(f"injected bug in {name}")
        if name in self.invalid_once:
            self.invalid_once.discard(name)
            raise InvalidRequest(f"injected invalid request in {name}")
        if self.down or name in self.failing:
            raise ConnectionLost(f"injected outage in {name}")

    @property  # type: ignore[override]
    def clock(self) -> TimeSource | None:
        """The inner transport's clock (a bridged one knows it only once open)."""
        return self.inner.clock

    @property  # type: ignore[override]
    def max_payload_bytes(self) -> int:
        """The inner transport's payload limit."""
        return self.inner.max_payload_bytes

    @property  # type: ignore[override]
    def max_result_bytes(self) -> int:
        """The inner transport's result limit."""
        return self.inner.max_result_bytes

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[R]]) -> R:
        await self._before(name)
        if self.hold_time is None:
            return await call(self.inner)
        if name in ("wait_for_work", "wait_for_jobs"):
            return await self._wait(self.hold_time, call)
        with self.hold_time.hold():
            return await call(self.inner)

    async def _wait(self, clock: VirtualClock, call: Callable[[Transport], Awaitable[R]]) -> R:
        """Run a wait with time running, and hold time from the moment it is cancelled.

        The wait runs in a task of its own so that the cancellation reaches this task, which
        takes the hold before the wait's unwinding (a thread round trip when bridged) can
        leave every task blocked.
        """
        outcome: list[R] = []
        failure: list[Exception] = []
        done = anyio.Event()
        unwinding = ExitStack()

        async def wait() -> None:
            try:
                outcome.append(await call(self.inner))
            except Exception as exc:  # re-raised by the caller, not as an exception group
                failure.append(exc)
            done.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                try:
                    await done.wait()
                except BaseException:
                    unwinding.enter_context(clock.hold())
                    raise
        finally:
            unwinding.close()
        if failure:
            raise failure[0]
        return outcome[0]

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], **extra: Any
    ) -> list[EnqueueResult]:
        # PostgreSQL's enqueue_many takes the caller's connection: pass it through.
        return await self._forward("enqueue_many", lambda t: t.enqueue_many(requests, **extra))
