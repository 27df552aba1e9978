"""Prometheus metrics of one node, fed from its event stream by an actor of their own.

:class:`NodeMetrics` holds the metric families in a registry of its own (never the process's
default one, so several nodes in one process, and tests, don't clash). ``install`` wires it
into a :class:`~actors.jobs.Topology`: every transport of the node is wrapped in a
:class:`MeteredTransport` (storage calls by operation) and a :class:`MetricsActor` runs beside
the runtime's actors. The actor subscribes to the node's events with a plain list extend, so a
publisher pays for one extend (a Worker for each job's start, the Claimer for the events of a
finalize call); it folds the events into the counters and histograms in batches, every
quarter second (so a scrape is at most that stale), and every ``interval`` samples the
gauges: slots busy and free per queue, the mailbox depth of the runtime's actors and, on the
node holding the ``metrics`` leader lease only, the jobs of every queue by state (one count
per cluster, not one per node). A scrape reads the registry in the HTTP server's thread and
never waits on a Worker.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import anyio
import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

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
#: Seconds between two folds of the buffered events into the metrics (at most this stale).
_FOLD_EVERY = 0.25
#: Events buffered for the metrics actor, past which its folder drops the newest (and counts
#: them) as it wakes: the buffer holds at most this plus a quarter second of events.
_MAX_BUFFERED = 100_000

_STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RUN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_LATENCY_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_RECLAIM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
_RECOVERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Operations that wait by design: their latency says nothing about the store.
_WAITING_OPERATIONS = frozenset({"wait_for_work", "wait_for_jobs"})
#: The children of a queue supervisor that are not Workers.
_QUEUE_ACTORS = frozenset({"claimer", "leases"})


Labels: TypeAlias = tuple[str, ...]
_bisect_left = bisect.bisect_left


class _Counter:
    """A counter family kept in a plain dict (label values -> count)."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Labels) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[Labels, float] = {}

    def inc(self, key: Labels, amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(key, value)
        return family


class _Gauge:
    """A gauge family kept in a plain dict."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Labels) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[Labels, float] = {}

    def family(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(key, value)
        return family


class _Histogram:
    """A histogram family: per label values, a count per bucket (``+Inf`` last) and the sum."""

    __slots__ = ("bounds", "doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Labels, bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.bounds = bounds
        self.values: dict[Labels, list[float]] = {}  # [bucket counts..., +Inf count, sum]

    def observe(self, key: Labels, value: float) -> None:
        row = self.values.get(key) or self.row(key)
        row[_bisect_left(self.bounds, value)] += 1
        row[-1] += value

    def row(self, key: Labels) -> list[float]:
        """The counts of ``key``'s series, a new (zero) one if it has none yet."""
        row = self.values.get(key)
        if row is None:
            row = self.values[key] = [0.0] * (len(self.bounds) + 2)
        return row

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, row in self.values.items():
            total = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*self.bounds, math.inf), row, strict=False):
                total += count
                buckets.append(("+Inf" if bound == math.inf else repr(bound), total))
            family.add_metric(key, buckets, row[-1])
        return family


class NodeMetrics:
    """The Prometheus metrics of one node, in a registry of their own.

    Every metric is named ``actorq_*`` and labelled by ``queue`` (and ``kind`` for jobs, and
    ``operation`` for storage), never by job id. Counters count from the node's start.

    The numbers live in plain dicts written by the node's :class:`MetricsActor` (and its
    :class:`MeteredTransport`) under a lock taken once per batch of events; a scrape copies
    them under that lock and formats them outside it.

    Args:
        registry: where the metrics are registered (default: a new ``CollectorRegistry``).
        namespace: the metric name prefix.
    """

    def __init__(
        self, *, registry: CollectorRegistry | None = None, namespace: str = "actorq"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.lock = threading.Lock()
        self._families: list[_Counter | _Gauge | _Histogram] = []
        ns = namespace

        def counter(name: str, doc: str, labels: Labels) -> _Counter:
            family = _Counter(f"{ns}_{name}", doc, labels)
            self._families.append(family)
            return family

        def gauge(name: str, doc: str, labels: Labels) -> _Gauge:
            family = _Gauge(f"{ns}_{name}", doc, labels)
            self._families.append(family)
            return family

        def histogram(name: str, doc: str, labels: Labels, bounds: tuple[float, ...]) -> _Histogram:
            family = _Histogram(f"{ns}_{name}", doc, labels, bounds)
            self._families.append(family)
            return family

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
        self.run_duration = histogram(
            "job_run_duration_seconds",
            "How long a handler ran, by its run's end (succeeded, retried, dead; 0 for a job "
            "dead unrun: an unknown kind, a poison payload).",
            job,
            _RUN_BUCKETS,
        )
        self.start_latency = histogram(
            "job_start_latency_seconds",
            "From when a job was due (its enqueue, for an immediate job) to its run's start.",
            job,
            _LATENCY_BUCKETS,
        )
        self.reclaim_delay = histogram(
            "job_reclaim_delay_seconds",
            "From a lapsed lease's expiry to the Reaper taking the job back.",
            ("queue",),
            _RECLAIM_BUCKETS,
        )
        self.recovery = histogram(
            "recovery_seconds",
            "From when a holder lost a job (its lease expired and was reaped) to the job's "
            "handler running again, on the node that runs it.",
            job,
            _RECOVERY_BUCKETS,
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
        self.key_jobs = gauge(
            "key_jobs",
            "Jobs of each limited (or cooling) concurrency key: running (live leases), waiting, "
            "started (in its rate window) (sampled by the metrics leader only).",
            ("key", "use"),
        )
        self.key_limit = gauge(
            "key_limit",
            "Each concurrency key's limits: concurrency, rate and rate_window_seconds (an "
            "unset one has no series); cooling_down is 1 while it cools down (metrics leader).",
            ("key", "limit"),
        )
        self.leader = gauge(
            "metrics_leader", "1 while this node samples the queue depth for the cluster.", ()
        )
        self.storage_duration = histogram(
            "storage_call_duration_seconds",
            "Storage calls by operation (wait_for_work excluded: it waits by design).",
            ("operation",),
            _STORAGE_BUCKETS,
        )
        self.storage_errors = counter(
            "storage_errors",
            "Storage calls that failed, by operation and error.",
            ("operation", "error"),
        )
        self.registry.register(self)

    # --- the collector ------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        """The families as they are now (the registry calls it for each scrape)."""
        with self.lock:
            families = [family.family() for family in self._families]
        return families

    def metric_names(self) -> frozenset[str]:
        """Every sample name the registry exports (``_total``, ``_bucket``, ... included)."""
        names: set[str] = set()
        for family in self._families:
            if isinstance(family, _Counter):
                names.add(family.name + "_total")
            elif isinstance(family, _Histogram):
                names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
            else:
                names.add(family.name)
        return frozenset(names)

    def text(self) -> str:
        """The registry in the Prometheus text format, as a scrape sees it."""
        return generate_latest(self.registry).decode()

    # --- feeding -----------------------------------------------------------------------------

    def observe(self, event: RuntimeEvent) -> None:
        """Fold one runtime event into the metrics."""
        with self.lock:
            self.observe_unlocked(event)

    def observe_all(self, events: Iterable[RuntimeEvent]) -> None:
        """Fold a batch of events, taking the lock once: the same numbers as ``observe`` of
        each event in turn."""
        observe = self.observe_unlocked
        # The two events of every job are folded here as observe_unlocked does, without its
        # calls (they are most of what the actor folds); a run of them of one queue and kind
        # (a drain) looks its series up once and adds its count at the end.
        claimed, succeeded = self.claimed.values, self.succeeded.values
        latency_of, duration_of = self.start_latency, self.run_duration
        latency_bounds, duration_bounds = latency_of.bounds, duration_of.bounds
        claimed_key: Labels = ()
        claimed_row: list[float] = []
        claimed_n = 0.0
        succeeded_key: Labels = ()
        succeeded_row: list[float] = []
        succeeded_n = 0.0
        with self.lock:
            for event in events:
                if type(event) is JobSucceeded:
                    if (
                        succeeded_n == 0.0
                        or event.kind != succeeded_key[1]
                        or event.queue != succeeded_key[0]
                    ):
                        if succeeded_n:
                            succeeded[succeeded_key] = (
                                succeeded.get(succeeded_key, 0.0) + succeeded_n
                            )
                        succeeded_key = (event.queue, event.kind)
                        succeeded_row = duration_of.row(succeeded_key)
                        succeeded_n = 0.0
                    succeeded_n += 1.0
                    value = event.duration
                    succeeded_row[_bisect_left(duration_bounds, value)] += 1
                    succeeded_row[-1] += value
                elif type(event) is JobClaimed and event.lost_at is None:
                    if (
                        claimed_n == 0.0
                        or event.kind != claimed_key[1]
                        or event.queue != claimed_key[0]
                    ):
                        if claimed_n:
                            claimed[claimed_key] = claimed.get(claimed_key, 0.0) + claimed_n
                        claimed_key = (event.queue, event.kind)
                        claimed_row = latency_of.row(claimed_key)
                        claimed_n = 0.0
                    claimed_n += 1.0
                    due = event.enqueued_at if event.enqueued_at > event.run_at else event.run_at
                    value = event.at - due
                    if value < 0.0:
                        value = 0.0
                    claimed_row[_bisect_left(latency_bounds, value)] += 1
                    claimed_row[-1] += value
                else:
                    observe(event)
            if succeeded_n:
                succeeded[succeeded_key] = succeeded.get(succeeded_key, 0.0) + succeeded_n
            if claimed_n:
                claimed[claimed_key] = claimed.get(claimed_key, 0.0) + claimed_n

    def observe_unlocked(self, event: RuntimeEvent) -> None:
        """Fold one event; the caller holds :attr:`lock`."""
        kind = type(event)
        if kind is JobClaimed:
            assert isinstance(event, JobClaimed)
            key = (event.queue, event.kind)
            self.claimed.inc(key)
            due = event.enqueued_at if event.enqueued_at > event.run_at else event.run_at
            latency = event.at - due
            self.start_latency.observe(key, latency if latency > 0.0 else 0.0)
            if event.lost_at is not None:
                self.recovery.observe(key, max(0.0, event.at - event.lost_at))
        elif kind is JobSucceeded:
            assert isinstance(event, JobSucceeded)
            key = (event.queue, event.kind)
            self.succeeded.inc(key)
            self.run_duration.observe(key, event.duration)
        elif kind is JobRetried:
            assert isinstance(event, JobRetried)
            key = (event.queue, event.kind)
            self.retried.inc(key)
            self.run_duration.observe(key, event.duration)
        elif kind is JobDead:
            assert isinstance(event, JobDead)
            key = (event.queue, event.kind)
            self.dead.inc(key)
            self.run_duration.observe(key, event.duration)
        elif kind is JobSnoozed:
            assert isinstance(event, JobSnoozed)
            self.snoozed.inc((event.queue, event.kind))
        elif kind is JobCancelled:
            assert isinstance(event, JobCancelled)
            self.cancelled.inc((event.queue, event.kind))
        elif kind is LeasesRenewed:
            assert isinstance(event, LeasesRenewed)
            self.lease_renewals.inc((), event.renewed)
        elif kind is JobLeaseLost:
            assert isinstance(event, JobLeaseLost)
            self.leases_lost.inc((event.queue, event.kind))
        elif kind is FinalizeRefused:
            assert isinstance(event, FinalizeRefused)
            self.finalizes_refused.inc((event.queue, event.kind))
        elif kind is JobReclaimed:
            assert isinstance(event, JobReclaimed)
            self.reclaimed.inc((event.queue, event.kind))
            self.reclaim_delay.observe((event.queue,), max(0.0, event.at - event.expired_at))
        elif kind is WorkerCrashed:
            assert isinstance(event, WorkerCrashed)
            self.worker_restarts.inc((event.queue,))
        elif kind is CronFired:
            assert isinstance(event, CronFired)
            self.cron_fired.inc((event.schedule,))

    def observe_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        """Count one storage call (:class:`MeteredTransport` calls it)."""
        with self.lock:
            if error is not None:
                self.storage_errors.inc((operation, type(error).__name__))
            if operation not in _WAITING_OPERATIONS:
                self.storage_duration.observe((operation,), seconds)

    def set_gauges(self, gauge: _Gauge, values: Mapping[Labels, float]) -> None:
        """Replace every series of ``gauge`` by ``values`` (the sampler calls it)."""
        with self.lock:
            gauge.values = dict(values)

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
        if name in _WAITING_OPERATIONS:  # not timed (it waits by design): errors only
            try:
                return await call(self.inner)
            except Exception as exc:
                self._metrics.observe_call(name, 0.0, exc)
                raise
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
    """Events are waiting in the buffer. Sent by the actor's folder, every quarter second
    while events arrive."""


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
        self._fold_every = min(interval, _FOLD_EVERY)
        self._queue_depth = queue_depth
        self._buffer: list[RuntimeEvent] = []
        self._dropped = 0  # events not buffered since the last fold
        self._unsubscribe: Callable[[], None] | None = None
        self._leading = False

    async def on_start(self) -> None:
        # The publisher's whole cost is one list extend, per event or per finalize call's
        # events; the folder bounds the buffer (and counts what it drops) as it wakes.
        self._unsubscribe = self._node.events.subscribe_batches(self._buffer.extend)
        self.context.start_soon(self._ticker)
        self.context.start_soon(self._folder)

    async def on_stop(self, reason: ExitReason) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._fold()
        if self._leading:
            self._leading = False
            self._metrics.set_gauges(self._metrics.leader, {(): 0.0})
            with self.context.clock.move_on_after(1.0):
                try:
                    await self._node.transport.release_leader(
                        METRICS_LEADER, holder=self._node.node_id
                    )
                except (ConnectionLost, TransportClosed) as exc:
                    _log.info("could not release the metrics lease: %s", exc)

    async def _folder(self) -> None:
        clock = self.context.clock
        ref = self.context.self_ref
        buffer = self._buffer
        while True:
            await clock.sleep(self._fold_every)
            self._cut()  # the actor may not have folded for a while (a slow sample)
            if buffer or self._dropped:
                try:
                    ref.tell_nowait(Pending())
                except anyio.WouldBlock:
                    pass  # a Pending or Sample is already queued; it folds these too

    async def _ticker(self) -> None:
        clock = self.context.clock
        ref = self.context.self_ref
        while True:
            try:
                ref.tell_nowait(Sample())
            except anyio.WouldBlock:
                pass
            await clock.sleep(self._interval)

    def _cut(self) -> None:
        """Drop what the buffer holds past its bound (the newest events), counting them."""
        buffer = self._buffer
        excess = len(buffer) - _MAX_BUFFERED
        if excess > 0:
            del buffer[_MAX_BUFFERED:]
            self._dropped += excess

    def _fold(self) -> None:
        self._cut()
        buffer = self._buffer
        if buffer:
            events = buffer.copy()
            buffer.clear()  # the same list: it is what the event bus extends
            self._metrics.observe_all(events)
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            with self._metrics.lock:
                self._metrics.events_dropped.inc((), dropped)

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
        slots = self._node.slots()
        metrics.set_gauges(metrics.slots_busy, {(s.queue,): s.busy for s in slots})
        metrics.set_gauges(metrics.slots_free, {(s.queue,): s.free for s in slots})
        depths: dict[Labels, float] = {}
        prefix = self._node.node_id + "/"
        for mailbox in self.context.system.mailboxes():
            role = (_role(mailbox.name, prefix),)
            depths[role] = depths.get(role, 0) + mailbox.depth
        metrics.set_gauges(metrics.mailbox_depth, depths)
        if self._queue_depth:
            try:
                await self._sample_queues()
            except (ConnectionLost, TransportClosed) as exc:
                # The store's weather: the next sample tries again (anything else is a bug,
                # and crashes the actor; its numbers live on in NodeMetrics).
                _log.warning("metrics: could not count the queues: %s", exc)

    async def _sample_queues(self) -> None:
        metrics = self._metrics
        transport = self._node.transport
        lease = await transport.acquire_leader(
            METRICS_LEADER, holder=self._node.node_id, ttl=self._interval * 3
        )
        self._leading = lease is not None
        metrics.set_gauges(metrics.leader, {(): 1.0 if self._leading else 0.0})
        counted: dict[Labels, float] = {}
        if self._leading:
            for counts in await transport.counts():
                for state in JobState:
                    counted[counts.queue, state.value] = counts.by_state.get(state, 0)
        used: dict[Labels, float] = {}
        limited: dict[Labels, float] = {}
        if self._leading:
            for found in await transport.list_limits():
                used[found.key, "running"] = found.running
                used[found.key, "waiting"] = found.waiting
                if found.rate is not None and found.per is not None:
                    used[found.key, "started"] = found.started
                    limited[found.key, "rate"] = found.rate
                    limited[found.key, "rate_window_seconds"] = found.per
                if found.concurrency is not None:
                    limited[found.key, "concurrency"] = found.concurrency
                limited[found.key, "cooling_down"] = float(found.cooldown_until is not None)
        # Not the leader: no series at all (another node counts them).
        metrics.set_gauges(metrics.queue_jobs, counted)
        metrics.set_gauges(metrics.key_jobs, used)
        metrics.set_gauges(metrics.key_limit, limited)


def _role(name: str, prefix: str) -> str:
    """An actor's name without the node's prefix, the Workers of a queue sharing one series
    (``root/queue:emails/worker``) however many slots it has."""
    if name.startswith(prefix):
        name = name[len(prefix) :]
    parts = name.split("/")
    if len(parts) > 2 and parts[1].startswith("queue:") and parts[2] not in _QUEUE_ACTORS:
        return f"{parts[0]}/{parts[1]}/worker"
    return name
