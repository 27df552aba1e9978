"""Fault injection: the plan of faults a seed implies, and the faulty transport of each node.

Each node incarnation talks to the shared store through a :class:`FaultyTransport`. It keeps
the transport contract while breaking the connection: a call that fails before reaching the
store wrote nothing; a call whose reply is lost did all its work and then raises
``ConnectionLost`` (the contract's "whole or absent"). It also reports what the store really
did to the invariant checker, lost replies included, and hands out wake-ups itself, in arrival
order, so that which worker wakes first never depends on set iteration order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import attrs

from actors.core import VirtualClock
from transports import (
    ConnectionLost,
    EnqueueRequest,
    EnqueueResult,
    JobState,
    JsonValue,
    MemoryTransport,
    QueueConfig,
    Transport,
    TransportClosed,
)
from transports.lowlevel import (
    FinalizeRequest,
    FinalizeResult,
    ForwardingTransport,
    LeaderLease,
    Lease,
    Reclaimed,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Snooze,
    StepResult,
    Suspend,
)

from ._clock import NodeClock
from ._config import FaultKind, SimConfig
from ._rng import derive_rng
from ._trace import StorageCallFailed, Trace

if TYPE_CHECKING:
    from ._invariants import Checker

T = TypeVar("T")

__all__ = ["Fault", "FaultyTransport", "NodeLink", "WakeHub", "plan_faults"]

#: Seconds a crashed node stays down before it restarts: uniform in this range.
CRASH_DOWNTIME = (5.0, 90.0)
#: A pause lasts this many lease TTLs (uniform): mostly longer than a lease, sometimes not.
PAUSE_TTLS = (0.8, 3.0)
#: Seconds a storage fault lasts (uniform).
STORAGE_FAULT = (5.0, 60.0)
#: Share of storage faults that fail calls (the others make them slow).
STORAGE_FAIL_SHARE = 0.7
#: Seconds a partition lasts: uniform from 5 s to this many lease TTLs.
PARTITION_TTLS = 4.0
#: Largest clock step, and largest offset a node's clock ever reaches, in seconds.
SKEW_STEP = 10.0
MAX_SKEW = 30.0
#: A partitioned node's storage call fails after up to this many seconds (its client timeout).
PARTITION_TIMEOUT = 2.0
#: Probability that a storage call yields once more before reaching the store: a scheduling
#: choice the seed makes at every storage await.
SCHEDULING_JITTER = 0.15


class Observed(MemoryTransport):
    """The simulator's memory transport: tells the fair-share check which partitions each
    fair claim found eligible (``eligible[queue]``, taken by the caller after the claim)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eligible: dict[str, list[str]] = {}

    def _eligible(self, queue: str, active: list[Any]) -> list[Any]:
        self.eligible[queue] = [name for name, _ in active]
        return active


@attrs.frozen(kw_only=True)
class Fault:
    """One planned fault: what strikes which node when, for how long."""

    index: int  # position in the plan; ``SimConfig.keep_faults`` selects by it
    at: float  # seconds after the run's start
    node: int  # node slot
    kind: FaultKind
    duration: float  # seconds (0 for a clock step)
    level: float  # storage: fail probability or longest latency; skew: the step, seconds
    mode: str = ""  # storage: "fail" or "slow"

    def describe(self) -> str:
        """A one-line description for reports."""
        extra = f" {self.mode} {self.level:.3f}" if self.kind is FaultKind.STORAGE else ""
        if self.kind is FaultKind.SKEW:
            extra = f" step {self.level:+.3f}s"
        return f"#{self.index} t={self.at:.3f} n{self.node} {self.kind.value}{extra} for {self.duration:.3f}s"


def plan_faults(config: SimConfig) -> list[Fault]:
    """Every fault the seed schedules during the faulty phase, in time order.

    Each node and fault kind is a Poisson process at the kind's rate; the draws come from one
    stream per node and kind, so turning a kind off leaves the others' timing unchanged.
    ``keep_faults`` is not applied here: indexes stay stable when a plan is shrunk.
    """
    planned: list[tuple[float, int, FaultKind, float, float, str]] = []
    for node in range(config.nodes):
        for kind in FaultKind:
            if kind is FaultKind.HANG or kind not in config.faults:
                continue
            rate = config.rates.of(kind) / 3600.0
            if rate <= 0:
                continue
            rng = derive_rng(config.seed, "faults", node, kind.value)
            t = rng.expovariate(rate)
            while t < config.duration:
                duration, level, mode = _shape(kind, rng, config)
                planned.append((t, node, kind, duration, level, mode))
                t += rng.expovariate(rate)
    planned.sort(key=lambda p: (p[0], p[1], p[2].value))
    return [
        Fault(index=i, at=at, node=node, kind=kind, duration=duration, level=level, mode=mode)
        for i, (at, node, kind, duration, level, mode) in enumerate(planned)
    ]


def _shape(kind: FaultKind, rng: Random, config: SimConfig) -> tuple[float, float, str]:
    if kind is FaultKind.CRASH:
        return rng.uniform(*CRASH_DOWNTIME), 0.0, ""
    if kind is FaultKind.PAUSE:
        return rng.uniform(*PAUSE_TTLS) * config.lease_ttl, 0.0, ""
    if kind is FaultKind.STORAGE:
        duration = rng.uniform(*STORAGE_FAULT)
        if rng.random() < STORAGE_FAIL_SHARE:
            return duration, rng.uniform(0.2, 1.0), "fail"
        return duration, rng.uniform(0.1, config.lease_ttl / 2), "slow"
    if kind is FaultKind.PARTITION:
        return rng.uniform(5.0, max(5.0, PARTITION_TTLS * config.lease_ttl)), 0.0, ""
    return 0.0, rng.uniform(-SKEW_STEP, SKEW_STEP), ""  # SKEW


@attrs.frozen(kw_only=True)
class StorageFault:
    """An active storage fault of one node."""

    mode: str  # "fail" or "slow"
    level: float


class NodeLink:
    """A node slot's connection to the store: partitions and storage faults, by depth.

    It outlives the node's incarnations: a node that restarts during a partition is still cut
    off.
    """

    def __init__(self) -> None:
        self.partitioned = 0  # active partitions (they may overlap)
        self.storage: list[StorageFault] = []  # active storage faults; the latest rules

    def heal(self) -> None:
        """End every partition and storage fault."""
        self.partitioned = 0
        self.storage.clear()


class WakeHub:
    """``wait_for_work`` wake-ups for every node of a run, delivered in arrival order.

    The memory store keeps its waiters in sets, whose order follows object ids; these lists
    keep the order waiters arrived in, which the seed decides. A notification for ``n`` new
    jobs wakes the ``n + 1`` longest-waiting workers rather than all of them: the contract
    lets wake-ups be missed (the others poll), and a herd of a hundred idle workers racing for
    each job would cost most of a run's time while testing nothing new; the one extra waiter
    keeps claim races in play.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[anyio.Event]] = {}

    async def wait(self, queues: Sequence[str]) -> None:
        """Wait until one of ``queues`` may have work (or a spurious wake-up)."""
        event = anyio.Event()
        waiters = self._waiters
        for queue in queues:
            waiters.setdefault(queue, []).append(event)
        try:
            await event.wait()
        finally:
            for queue in queues:
                registered = waiters.get(queue)
                if registered is not None and event in registered:
                    registered.remove(event)

    def notify(self, jobs: Mapping[str, int | None]) -> None:
        """Wake waiters of each queue (sorted), in arrival order: ``n + 1`` for ``n`` jobs,
        all of them for None."""
        for queue in sorted(jobs):
            waiters = self._waiters.get(queue)
            if not waiters:
                continue
            count = jobs[queue]
            limit = len(waiters) if count is None else count + 1
            woken = 0
            while waiters and woken < limit:
                event = waiters.pop(0)
                if not event.is_set():
                    event.set()
                    woken += 1


class FaultyTransport(ForwardingTransport):
    """One node incarnation's view of the store, through the faults of its link and clock.

    Every operation passes the fault gate on its way to the store and back (``_forward``);
    the operations the checker watches also report what the store did.

    Args:
        inner: the node's transport to the shared store (its clock is the store's clock).
        node: the incarnation's node id, for the trace.
        link: the node slot's link (partitions, storage faults).
        clock: the incarnation's clock (paused: calls wait; dead: calls fail).
        base: the store's clock (latency and timeouts run on it).
        rng: this incarnation's storage RNG.
        hub: the run's wake-up hub.
        checker: told what the store did on every call.
        trace: where injected failures are recorded.
    """

    def __init__(
        self,
        inner: Transport,
        *,
        node: str,
        link: NodeLink,
        clock: NodeClock,
        base: VirtualClock,
        rng: Random,
        hub: WakeHub,
        checker: Checker,
        trace: Trace,
    ) -> None:
        super().__init__(inner)
        self.node = node
        self._link = link
        self._clock = clock
        self._base = base
        self._rng = rng
        self._hub = hub
        self._checker = checker
        self._trace = trace
        self._closed = False
        #: Calls that raised ConnectionLost by the simulator's hand (lost replies included).
        self.failed_calls = 0

    # --- the fault gate -------------------------------------------------------------------

    def _fail(self, call: str, applied: bool) -> ConnectionLost:
        self.failed_calls += 1
        self._trace.add(self.node, StorageCallFailed(node=self.node, call=call, applied=applied))
        what = "the reply to" if applied else ""
        return ConnectionLost(f"simulated: {self.node} lost {what} {call}".replace("  ", " "))

    async def _before(self, call: str, *, writes: bool) -> bool:
        """Pass the faults on the way to the store; True when the reply is to be lost."""
        clock = self._clock
        await clock.wait_running()
        if self._closed:
            raise TransportClosed(f"{self.node}: the transport is closed")
        if clock.dead:
            await anyio.lowlevel.checkpoint()
            raise ConnectionLost(f"simulated: {self.node} is dead")
        rng = self._rng
        if rng.random() < SCHEDULING_JITTER:
            await anyio.lowlevel.checkpoint()
        link = self._link
        if link.partitioned:
            await self._base.sleep(rng.uniform(0.0, PARTITION_TIMEOUT))
            raise self._fail(call, False)
        if link.storage:
            fault = link.storage[-1]
            if fault.mode == "slow":
                await self._base.sleep(rng.uniform(0.0, fault.level))
            elif rng.random() < fault.level:
                if writes and rng.random() < 0.5:
                    return True
                await anyio.lowlevel.checkpoint()
                raise self._fail(call, False)
        if clock.dead:
            raise ConnectionLost(f"simulated: {self.node} is dead")
        return False

    async def _after(self, call: str, lose: bool) -> None:
        """The way back: a lost reply raises; a paused node gets its reply on resume."""
        if lose:
            raise self._fail(call, True)
        clock = self._clock
        await clock.wait_running()
        if clock.dead:
            raise ConnectionLost(f"simulated: {self.node} died during {call}")

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        lose = await self._before(name, writes=name not in _READS)
        result = await call(self.inner)
        await self._after(name, lose)
        return result

    # --- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        await self.inner.aclose()

    # --- what the checker watches ---------------------------------------------------------

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        async def observed(inner: Transport) -> list[EnqueueResult]:
            results = await inner.enqueue_many(requests)
            now = self._base.now()
            self._checker.enqueued(self.node, requests, results, now)
            self._hub.notify(due_jobs(requests, results, now))
            return results

        return await self._forward("enqueue_many", observed)

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        async def observed(inner: Transport) -> list[Lease]:
            leases = await inner.claim(queue, owner=owner, limit=limit, ttl=ttl)
            now = self._base.now()
            self._checker.claim_made(self.node, queue, limit, len(leases), now)
            if leases:
                self._checker.claimed(self.node, leases, now)
            eligible = inner.eligible.pop(queue, None) if isinstance(inner, Observed) else None
            self._checker.fair_claimed(queue, eligible, leases, now)
            return leases

        return await self._forward("claim", observed)

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        async def observed(inner: Transport) -> list[RenewResult]:
            results = await inner.renew(requests, ttl=ttl)
            self._checker.renewed(self.node, requests, results, ttl, self._base.now())
            return results

        return await self._forward("renew", observed)

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        async def observed(inner: Transport) -> list[FinalizeResult]:
            results = await inner.finalize(requests)
            now = self._base.now()
            self._checker.finalized(self.node, requests, results, now)
            woken: dict[str, int | None] = {}
            for request, result in zip(requests, results, strict=True):
                if result is FinalizeResult.APPLIED and _available_now(request, now):
                    queue = self._checker.queue_of(request.job_id)
                    woken[queue] = (woken.get(queue) or 0) + 1
            self._hub.notify(woken)
            return results

        return await self._forward("finalize", observed)

    async def record_step(
        self, job_id: int, *, token: int, name: str, value: JsonValue
    ) -> StepResult:
        async def observed(inner: Transport) -> StepResult:
            result = await inner.record_step(job_id, token=token, name=name, value=value)
            self._checker.stepped(self.node, job_id, token, name, result, self._base.now())
            return result

        return await self._forward("record_step", observed)

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        async def observed(inner: Transport) -> list[Reclaimed]:
            reclaimed = await inner.reap(limit=limit)
            if reclaimed:
                self._checker.reaped(self.node, reclaimed, self._base.now())
                woken: dict[str, int | None] = {}
                for r in reclaimed:
                    if r.state is JobState.AVAILABLE:
                        woken[r.queue] = (woken.get(r.queue) or 0) + 1
                self._hub.notify(woken)
            return reclaimed

        return await self._forward("reap", observed)

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        async def observed(inner: Transport) -> LeaderLease | None:
            lease = await inner.acquire_leader(name, holder=holder, ttl=ttl)
            self._checker.leader(self.node, name, holder, lease, self._base.now())
            return lease

        return await self._forward("acquire_leader", observed)

    async def release_leader(self, name: str, *, holder: str) -> bool:
        async def observed(inner: Transport) -> bool:
            released = await inner.release_leader(name, holder=holder)
            if released:
                self._checker.leader_released(name, holder)
            return released

        return await self._forward("release_leader", observed)

    async def set_queue_config(self, config: QueueConfig) -> None:
        async def observed(inner: Transport) -> None:
            await inner.set_queue_config(config)
            self._checker.configured(config.name)
            if not config.paused:
                self._hub.notify({config.name: None})

        await self._forward("set_queue_config", observed)

    async def cleanup(
        self, *, finished_before: float, queue: str | None = None, limit: int = 10_000
    ) -> int:
        async def observed(inner: Transport) -> int:
            deleted = await inner.cleanup(finished_before=finished_before, queue=queue, limit=limit)
            self._checker.cleaned += deleted
            return deleted

        return await self._forward("cleanup", observed)

    # --- waiting: the run's wake-up hub, not the store ------------------------------------

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        clock = self._clock
        await clock.wait_running()
        link = self._link
        if clock.dead or link.partitioned or self._closed:
            await anyio.lowlevel.checkpoint()
            raise ConnectionLost(f"simulated: {self.node} cannot listen")
        fault = link.storage[-1] if link.storage else None
        if fault is not None and fault.mode == "fail" and self._rng.random() < fault.level:
            await anyio.lowlevel.checkpoint()
            raise self._fail("wait_for_work", False)
        await self._hub.wait(queues)


# Operations that only read: a fault fails them, never loses their reply.
_READS = frozenset(
    {"get_cursor", "get_queue_config", "list_queue_configs", "counts", "get", "list_jobs"}
)


def due_jobs(
    requests: Sequence[EnqueueRequest], results: Sequence[EnqueueResult], now: float
) -> dict[str, int | None]:
    """How many jobs claimable at ``now`` this enqueue added, per queue."""
    due: dict[str, int | None] = {}
    for request, result in zip(requests, results, strict=True):
        if result.deduplicated:
            continue
        run_at = request.run_at if request.run_at is not None else now + request.delay
        if run_at <= now:
            due[request.queue] = (due.get(request.queue) or 0) + 1
    return due


def _available_now(request: FinalizeRequest, now: float) -> bool:
    outcome = request.outcome
    if isinstance(outcome, Release):
        return True
    if isinstance(outcome, Retry | Snooze | Suspend):
        return outcome.run_at <= now
    return False
