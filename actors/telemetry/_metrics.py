"""Prometheus metrics of one node, fed from its event stream by an actor of their own.

:class:`NodeMetrics` holds the metric families in a registry of its own (never the process's
default one, so several nodes in one process, and tests, don't clash). ``install`` wires it
into a :class:`~actors.jobs.Topology`: every transport of the node is wrapped in a
:class:`MeteredTransport` (storage calls by operation) and a :class:`MetricsActor` runs beside
the runtime's actors. The actor subscribes to the node's events with a plain list append, so a
Worker publishing an event pays for one append; it folds the events into the counters and
histograms in batches, and every ``interval`` samples the gauges: slots busy and free per
queue, the mailbox depth of the runtime's actors and, on the node holding the ``metrics``
leader lease only, the jobs of every queue by state (one count per cluster, not one per node).
A scrape reads the registry in the HTTP server's thread and never waits on a Worker.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import anyio
import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from transports import (
    ConnectionLost,
    EnqueueRequest,
    EnqueueResult,
    JobState,
    Transport,
    TransportClosed,
)
from transports.lowlevel import ForwardingTransport

from ..core import Actor, Clock, ExitReason, Reply
from ..jobs import (
    ConfigInvalid,
    CronFired,
    FinalizeRefused,
    JobCancelled,
    JobClaimed,
    JobDead,
    JobLeaseLost,
    JobReclaimed,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    NodeContext,
    RuntimeEvent,
    Topology,
    WorkerCrashed,
)
from ..jobs.lowlevel import LeasesRenewed

__all__ = [
    "DEFAULT_SAMPLE_INTERVAL",
    "METRICS_LEADER",
    "MeteredTransport",
    "MetricsActor",
    "MetricsMessage",
    "NodeMetrics",
    "Pending",
    "Sample",
]

_log = logging.getLogger("actorq.metrics")
T = TypeVar("T")

#: Seconds between two samples of the gauges (slots, mailboxes, queue depth).
DEFAULT_SAMPLE_INTERVAL = 5.0
#: The leader lease whose holder samples the queue depth for the whole cluster.
METRICS_LEADER = "metrics"
#: Events buffered for the metrics actor at most; beyond, they are dropped (and counted).
_MAX_BUFFERED = 100_000

_STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RUN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_LATENCY_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_RECLAIM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Operations that wait by design: their latency says nothing about the store.
_WAITING_OPERATIONS = frozenset({"wait_for_work"})
#: The children of a queue supervisor that are not Workers.
_QUEUE_ACTORS = frozenset({"claimer", "leases"})


class NodeMetrics:
    """The Prometheus metrics of one node, in a registry of their own.

    Every metric is named ``actorq_*`` and labelled by ``queue`` (and ``kind`` for jobs, and
    ``operation`` for storage), never by job id. Counters count from the node's start.

    Args:
        registry: where the metrics are registered (default: a new ``CollectorRegistry``).
        namespace: the metric name prefix.
    """

    def __init__(
        self, *, registry: CollectorRegistry | None = None, namespace: str = "actorq"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg, ns = self.registry, namespace

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, namespace=ns, registry=reg)

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(name, doc, labels, namespace=ns, registry=reg)

        job = ("queue", "kind")
        self.claimed = counter("jobs_claimed", "Job runs started (one per attempt).", job)
        self.succeeded = counter("jobs_succeeded", "Jobs that succeeded.", job)
        self.retried = counter("jobs_retried", "Failed attempts that will run again.", job)
        self.snoozed = counter("jobs_snoozed", "Runs that snoozed (no attempt spent).", job)
        self.dead = counter("jobs_dead", "Jobs that ended dead.", job)
        self.cancelled = counter("jobs_cancelled", "Running jobs cancelled on request.", job)
        self.reclaimed = counter(
            "jobs_reclaimed", "Expired leases the Reaper of this node took back.", job
        )
        self.run_duration = Histogram(
            "job_run_duration_seconds",
            "How long a handler ran, by its run's end (succeeded, retried, dead; 0 for a job "
            "dead unrun: an unknown kind, a poison payload).",
            job,
            namespace=ns,
            registry=reg,
            buckets=_RUN_BUCKETS,
        )
        self.start_latency = Histogram(
            "job_start_latency_seconds",
            "From when a job was due (its enqueue, for an immediate job) to its run's start.",
            job,
            namespace=ns,
            registry=reg,
            buckets=_LATENCY_BUCKETS,
        )
        self.reclaim_delay = Histogram(
            "job_reclaim_delay_seconds",
            "From a lapsed lease's expiry to the Reaper taking the job back.",
            ("queue",),
            namespace=ns,
            registry=reg,
            buckets=_RECLAIM_BUCKETS,
        )
        self.lease_renewals = counter(
            "lease_renewals", "Job leases extended by the node's LeaseKeeper.", ()
        )
        self.leases_lost = counter(
            "leases_lost", "Running jobs whose lease was lost (their handler was stopped).", job
        )
        self.finalizes_refused = counter(
            "finalizes_refused", "Finalizes the store refused for a stale lease token.", job
        )
        self.worker_restarts = counter(
            "worker_restarts", "Workers that crashed and were restarted.", ("queue",)
        )
        self.cron_fired = counter("cron_ticks", "Cron ticks this node enqueued.", ("schedule",))
        self.events_dropped = counter(
            "metrics_events_dropped", "Events the metrics actor could not keep up with.", ()
        )
        self.slots_busy = gauge("slots_busy", "Workers running a job, by queue.", ("queue",))
        self.slots_free = gauge("slots_free", "Workers waiting for a job, by queue.", ("queue",))
        self.mailbox_depth = gauge(
            "mailbox_depth",
            "Messages waiting in the mailboxes of the node's actors (Workers summed).",
            ("actor",),
        )
        self.queue_jobs = gauge(
            "queue_jobs",
            "Jobs by queue and state (sampled by the metrics leader only).",
            ("queue", "state"),
        )
        self.leader = gauge(
            "metrics_leader", "1 while this node samples the queue depth for the cluster.", ()
        )
        self.storage_duration = Histogram(
            "storage_call_duration_seconds",
            "Storage calls by operation (wait_for_work excluded: it waits by design).",
            ("operation",),
            namespace=ns,
            registry=reg,
            buckets=_STORAGE_BUCKETS,
        )
        self.storage_errors = counter(
            "storage_errors",
            "Storage calls that failed, by operation and error.",
            ("operation", "error"),
        )
        self._children: dict[tuple[int, str, str], Any] = {}  # labelled series, cached

    # --- names -------------------------------------------------------------------------------

    def metric_names(self) -> frozenset[str]:
        """Every sample name the registry exports (``_total``, ``_bucket``, ... included)."""
        names: set[str] = set()
        for family in self.registry.collect():
            names.add(family.name)
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
            }.get(family.type, ())
            names.update(family.name + suffix for suffix in suffixes)
        return frozenset(names)

    def text(self) -> str:
        """The registry in the Prometheus text format, as a scrape sees it."""
        return generate_latest(self.registry).decode()

    # --- feeding -----------------------------------------------------------------------------

    def _job(self, metric: Any, queue: str, kind: str) -> Any:
        key = (id(metric), queue, kind)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(queue=queue, kind=kind)
        return child

    def observe(self, event: RuntimeEvent) -> None:
        """Fold one runtime event into the metrics."""
        kind = type(event)
        if kind is JobClaimed:
            assert isinstance(event, JobClaimed)
            self._job(self.claimed, event.queue, event.kind).inc()
            due = max(event.enqueued_at, event.run_at)
            self._job(self.start_latency, event.queue, event.kind).observe(max(0.0, event.at - due))
        elif kind is JobSucceeded:
            assert isinstance(event, JobSucceeded)
            self._job(self.succeeded, event.queue, event.kind).inc()
            self._job(self.run_duration, event.queue, event.kind).observe(event.duration)
        elif kind is JobRetried:
            assert isinstance(event, JobRetried)
            self._job(self.retried, event.queue, event.kind).inc()
            self._job(self.run_duration, event.queue, event.kind).observe(event.duration)
        elif kind is JobDead:
            assert isinstance(event, JobDead)
            self._job(self.dead, event.queue, event.kind).inc()
            self._job(self.run_duration, event.queue, event.kind).observe(event.duration)
        elif kind is JobSnoozed:
            assert isinstance(event, JobSnoozed)
            self._job(self.snoozed, event.queue, event.kind).inc()
        elif kind is JobCancelled:
            assert isinstance(event, JobCancelled)
            self._job(self.cancelled, event.queue, event.kind).inc()
        elif kind is LeasesRenewed:
            assert isinstance(event, LeasesRenewed)
            self.lease_renewals.inc(event.renewed)
        elif kind is JobLeaseLost:
            assert isinstance(event, JobLeaseLost)
            self._job(self.leases_lost, event.queue, event.kind).inc()
        elif kind is FinalizeRefused:
            assert isinstance(event, FinalizeRefused)
            self._job(self.finalizes_refused, event.queue, event.kind).inc()
        elif kind is JobReclaimed:
            assert isinstance(event, JobReclaimed)
            self._job(self.reclaimed, event.queue, event.kind).inc()
            self.reclaim_delay.labels(queue=event.queue).observe(
                max(0.0, event.at - event.expired_at)
            )
        elif kind is WorkerCrashed:
            assert isinstance(event, WorkerCrashed)
            self.worker_restarts.labels(queue=event.queue).inc()
        elif kind is CronFired:
            assert isinstance(event, CronFired)
            self.cron_fired.labels(schedule=event.schedule).inc()

    def observe_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        """Count one storage call (:class:`MeteredTransport` calls it)."""
        if error is not None:
            self.storage_errors.labels(operation=operation, error=type(error).__name__).inc()
        if operation not in _WAITING_OPERATIONS:
            key = (id(self.storage_duration), operation, "")
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.storage_duration.labels(operation=operation)
            child.observe(seconds)

    # --- wiring ------------------------------------------------------------------------------

    def install(
        self,
        topology: Topology,
        *,
        interval: float = DEFAULT_SAMPLE_INTERVAL,
        storage: bool = True,
        queue_depth: bool = True,
    ) -> Topology:
        """Meter ``topology``'s node: its storage calls (unless ``storage`` is false) and its
        events, with gauges sampled every ``interval`` seconds; the queue depth by state only
        while this node holds the ``metrics`` leader lease (unless ``queue_depth`` is false).

        Call it once the topology's queues are planned (their transports are wrapped now).

        Raises:
            ConfigInvalid: ``interval`` is not a finite number > 0.
        """
        if not (isinstance(interval, int | float) and 0 < interval < math.inf) or isinstance(
            interval, bool
        ):
            raise ConfigInvalid(f"metrics interval must be a finite number > 0, got {interval!r}")
        if storage:
            clock = topology.clock
            topology.wrap_transports(lambda inner: MeteredTransport(inner, self, clock=clock))
        return topology.actor(
            "metrics",
            lambda node: MetricsActor(
                node=node, metrics=self, interval=interval, queue_depth=queue_depth
            ),
            mailbox_size=16,
        )


class MeteredTransport(ForwardingTransport):
    """A transport that times every call of ``inner`` into ``metrics``, by operation, and
    counts its errors by type. Time comes from ``clock`` (the node's)."""

    def __init__(self, inner: Transport, metrics: NodeMetrics, *, clock: Clock) -> None:
        super().__init__(inner)
        self._metrics = metrics
        self._now = clock.now

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], **extra: Any
    ) -> list[EnqueueResult]:
        # PostgreSQL's enqueue_many takes the caller's connection: pass it through.
        return await self._forward("enqueue_many", lambda t: t.enqueue_many(requests, **extra))

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        now = self._now
        started = now()
        try:
            result = await call(self.inner)
        except Exception as exc:
            self._metrics.observe_call(name, now() - started, exc)
            raise
        self._metrics.observe_call(name, now() - started, None)
        return result


@attrs.frozen(kw_only=True)
class Pending:
    """Events are waiting in the buffer. Sent by the event subscriber, once per batch."""


@attrs.frozen(kw_only=True)
class Sample:
    """Sample the gauges now. Sent by the actor's ticker; with ``reply_to``, by tests and
    operators (answered once every event so far is folded in and the gauges sampled)."""

    reply_to: Reply[None] | None = None


MetricsMessage: TypeAlias = Pending | Sample


class MetricsActor(Actor[MetricsMessage]):
    """Folds a node's events into :class:`NodeMetrics` and samples its gauges.

    Args:
        node: the node's context (events, slots, transport, clock).
        metrics: where the numbers go.
        interval: seconds between samples of the gauges.
        queue_depth: whether to count the queues by state (as the ``metrics`` leader).
    """

    def __init__(
        self,
        *,
        node: NodeContext,
        metrics: NodeMetrics,
        interval: float = DEFAULT_SAMPLE_INTERVAL,
        queue_depth: bool = True,
    ) -> None:
        self._node = node
        self._metrics = metrics
        self._interval = interval
        self._queue_depth = queue_depth
        self._buffer: list[RuntimeEvent] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._leading = False
        self._seen_queues: set[tuple[str, str]] = set()  # series of queue_jobs set so far
        self._seen_slots: set[str] = set()
        self._seen_actors: set[str] = set()

    async def on_start(self) -> None:
        self._unsubscribe = self._node.events.subscribe(self._take)
        self.context.start_soon(self._ticker)

    async def on_stop(self, reason: ExitReason) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._fold()
        if self._leading:
            self._leading = False
            self._metrics.leader.set(0)
            with self.context.clock.move_on_after(1.0):
                try:
                    await self._node.transport.release_leader(
                        METRICS_LEADER, holder=self._node.node_id
                    )
                except (ConnectionLost, TransportClosed) as exc:
                    _log.info("could not release the metrics lease: %s", exc)

    def _take(self, event: RuntimeEvent) -> None:
        # The publisher's whole cost: an append, and one message per batch.
        buffer = self._buffer
        if len(buffer) >= _MAX_BUFFERED:
            self._metrics.events_dropped.inc()
            return
        buffer.append(event)
        if len(buffer) == 1:
            try:
                self.context.self_ref.tell_nowait(Pending())
            except anyio.WouldBlock:
                pass  # a Pending or Sample is already queued; it folds this one too

    async def _ticker(self) -> None:
        clock = self.context.clock
        ref = self.context.self_ref
        while True:
            try:
                ref.tell_nowait(Sample())
            except anyio.WouldBlock:
                pass
            await clock.sleep(self._interval)

    def _fold(self) -> None:
        buffer, self._buffer = self._buffer, []
        observe = self._metrics.observe
        for event in buffer:
            observe(event)

    async def receive(self, msg: MetricsMessage) -> None:
        self._fold()
        if type(msg) is Sample:
            assert isinstance(msg, Sample)
            await self._sample()
            self._fold()
            if msg.reply_to is not None:
                msg.reply_to.send(None)

    async def _sample(self) -> None:
        metrics = self._metrics
        slots = {s.queue: s for s in self._node.slots()}
        for queue in self._seen_slots - slots.keys():
            metrics.slots_busy.remove(queue)
            metrics.slots_free.remove(queue)
        for queue, stats in slots.items():
            metrics.slots_busy.labels(queue=queue).set(stats.busy)
            metrics.slots_free.labels(queue=queue).set(stats.free)
        self._seen_slots = set(slots)
        depths: dict[str, int] = {}
        prefix = self._node.node_id + "/"
        for mailbox in self.context.system.mailboxes():
            role = _role(mailbox.name, prefix)
            depths[role] = depths.get(role, 0) + mailbox.depth
        for actor in self._seen_actors - depths.keys():
            metrics.mailbox_depth.remove(actor)
        for actor, depth in depths.items():
            metrics.mailbox_depth.labels(actor=actor).set(depth)
        self._seen_actors = set(depths)
        if self._queue_depth:
            try:
                await self._sample_queues()
            except ConnectionLost as exc:
                _log.warning("metrics: could not count the queues: %s", exc)

    async def _sample_queues(self) -> None:
        metrics = self._metrics
        transport = self._node.transport
        lease = await transport.acquire_leader(
            METRICS_LEADER, holder=self._node.node_id, ttl=self._interval * 3
        )
        self._leading = lease is not None
        metrics.leader.set(1 if self._leading else 0)
        seen: set[tuple[str, str]] = set()
        if self._leading:
            for counts in await transport.counts():
                for state in JobState:
                    key = (counts.queue, state.value)
                    metrics.queue_jobs.labels(queue=key[0], state=key[1]).set(
                        counts.by_state.get(state, 0)
                    )
                    seen.add(key)
        for queue, state_name in self._seen_queues - seen:
            metrics.queue_jobs.remove(queue, state_name)  # another node counts them now
        self._seen_queues = seen


def _role(name: str, prefix: str) -> str:
    """An actor's name without the node's prefix, the Workers of a queue sharing one series
    (``root/queue:emails/worker``) however many slots it has."""
    if name.startswith(prefix):
        name = name[len(prefix) :]
    parts = name.split("/")
    if len(parts) > 2 and parts[1].startswith("queue:") and parts[2] not in _QUEUE_ACTORS:
        return f"{parts[0]}/{parts[1]}/worker"
    return name
