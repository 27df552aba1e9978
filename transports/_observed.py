"""What operators watch: the node registry and the per-minute history of every queue.

Both are frozen, keyword-only records, validated when built, like every request record. The
history is additive by design: each node adds its own increments for a ``(queue, minute)`` with
``Transport.add_stats``, and every figure of a :class:`QueueStats` (counters and the buckets of
its latency histograms) is a sum, so increments from any number of nodes, in any order, merge
into the same row. Percentiles are read from the merged fixed-bucket histograms
(:meth:`Histogram.quantile`), never added.

In SQL a row is stored as *cells*, one ``(queue, minute, metric, value)`` row per non-zero
figure (:meth:`QueueStats.cells`, :meth:`QueueStats.from_cells`), so an additive upsert is
``value = value + excluded.value`` on every backend alike.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._errors import InvalidRequest
from ._validate import (
    INT32_MAX,
    INT64_MAX,
    check_int,
    check_label,
    check_name,
    check_time,
)

__all__ = [
    "BUCKET_BOUNDS",
    "COUNTERS",
    "MAX_NODE_QUEUES",
    "MINUTE",
    "Histogram",
    "NodeInfo",
    "QueueStats",
    "bucket_of",
    "minute_of",
    "rows_of_cells",
    "sum_cells",
]

MINUTE = 60.0
"""Seconds per history row: every ``QueueStats.minute`` is a multiple of it."""

MAX_NODE_QUEUES = 1000
"""Most queue names one :class:`NodeInfo` may list."""

BUCKET_BOUNDS: tuple[float, ...] = tuple(0.001 * 2 ** (i / 4) for i in range(96))
"""Upper bounds, in seconds, of the latency histogram buckets: 1 ms to about 3.9 hours, each a
factor of 2^(1/4) (19 %) above the last. Bucket ``k`` counts values ``v`` with
``BUCKET_BOUNDS[k-1] < v <= BUCKET_BOUNDS[k]`` (bucket 0 every ``v <= 1 ms``); one more bucket,
``len(BUCKET_BOUNDS)``, counts everything longer."""

_BUCKETS = len(BUCKET_BOUNDS) + 1

COUNTERS: tuple[str, ...] = (
    "succeeded",
    "failed",
    "dead",
    "cancelled",
    "finalize_refused",
    "leases_lost",
    "reclaimed",
    "deduplicated",
)
"""The counter fields of :class:`QueueStats`, in their documented order."""

_HISTOGRAMS = ("wait", "run", "recovery")


def minute_of(at: float) -> float:
    """The start of the history minute holding time ``at``."""
    return math.floor(at / MINUTE) * MINUTE


def _count(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    check_int(value, attr.name, 0, INT64_MAX)


def _minute(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    number = check_time(value, attr.name)
    if number % MINUTE != 0:
        raise InvalidRequest(f"{attr.name} must be a multiple of {MINUTE:g} seconds, got {value!r}")


def _buckets(value: object) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidRequest(f"histogram buckets must be a sequence of counts, got {value!r:.60}")
    if len(value) != _BUCKETS:
        raise InvalidRequest(f"a histogram has {_BUCKETS} buckets, got {len(value)}")
    for count in value:
        check_int(count, "a histogram bucket", 0, INT64_MAX)
    return tuple(value)


@attrs.frozen(kw_only=True)
class Histogram:
    """Counts of durations in the fixed buckets of :data:`BUCKET_BOUNDS`; histograms add.

    Build one with :meth:`of` (or :meth:`empty` and :meth:`add`); two merge with ``+``.
    """

    # one count per bucket, len(BUCKET_BOUNDS) + 1 of them, each 0 .. 2**63 - 1
    buckets: tuple[int, ...] = attrs.field(factory=lambda: (0,) * _BUCKETS, converter=_buckets)

    @classmethod
    def empty(cls) -> Histogram:
        """A histogram of nothing."""
        return cls()

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Histogram:
        """The histogram of some durations (negative ones count as 0, NaN is refused).

        Raises:
            InvalidRequest: a duration is not a number, or NaN.
        """
        counts = [0] * _BUCKETS
        for value in seconds:
            counts[bucket_of(value)] += 1
        return cls(buckets=tuple(counts))

    def add(self, seconds: float) -> Histogram:
        """This histogram with one more duration."""
        counts = list(self.buckets)
        counts[bucket_of(seconds)] += 1
        return Histogram(buckets=tuple(counts))

    def __add__(self, other: Histogram) -> Histogram:
        if not isinstance(other, Histogram):
            return NotImplemented
        return Histogram(
            buckets=tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True))
        )

    @property
    def count(self) -> int:
        """How many durations it holds."""
        return sum(self.buckets)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1), as the upper bound of the bucket that holds it.

        The answer is never below the true value and at most 19 % above it (for values
        from 1 ms to :data:`BUCKET_BOUNDS`'s last; beyond it the answer is that last bound,
        meaning "at least"). None for an empty histogram.

        Raises:
            InvalidRequest: ``q`` is not in ``(0, 1]``.
        """
        if not isinstance(q, int | float) or isinstance(q, bool) or not 0 < q <= 1:
            raise InvalidRequest(f"a quantile must be in (0, 1], got {q!r}")
        total = self.count
        if total == 0:
            return None
        rank = math.ceil(q * total)
        seen = 0
        for index, count in enumerate(self.buckets):
            seen += count
            if seen >= rank:
                return BUCKET_BOUNDS[min(index, len(BUCKET_BOUNDS) - 1)]
        raise AssertionError("unreachable: the ranks add up to the total")  # pragma: no cover


def bucket_of(seconds: float) -> int:
    """The index of the bucket that counts a duration of ``seconds``."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or math.isnan(seconds):
        raise InvalidRequest(f"a duration must be a number, got {seconds!r:.60}")
    return bisect.bisect_left(BUCKET_BOUNDS, seconds)


def _histogram(value: object) -> Histogram:
    if not isinstance(value, Histogram):
        raise InvalidRequest(f"expected a Histogram, got {value!r:.60}")
    return value


@attrs.frozen(kw_only=True)
class QueueStats:
    """What happened on one queue in one minute: counters and latency histograms.

    Sent by each node's History actor to ``Transport.add_stats`` (as increments, which the
    store adds up) and returned by ``Transport.list_stats`` (the sums of every node's
    increments). Each figure counts what the runtime saw finish in that minute of its clock.
    """

    queue: str = attrs.field(validator=lambda _i, _a, v: check_name(v))
    # start of the minute, POSIX seconds: a finite multiple of MINUTE, >= 0
    minute: float = attrs.field(validator=_minute)
    succeeded: int = attrs.field(default=0, validator=_count)  # finalized Complete
    failed: int = attrs.field(default=0, validator=_count)  # attempts that failed and retried
    dead: int = attrs.field(default=0, validator=_count)  # jobs a Worker ended dead
    cancelled: int = attrs.field(default=0, validator=_count)  # running jobs cancelled on request
    # finalizes the store refused because the lease token was stale (a newer claim owns it)
    finalize_refused: int = attrs.field(default=0, validator=_count)
    leases_lost: int = attrs.field(default=0, validator=_count)  # handlers cancelled: lease lost
    reclaimed: int = attrs.field(default=0, validator=_count)  # expired leases the Reaper took back
    # enqueues folded into an active job by their dedupe key (counted by the store itself)
    deduplicated: int = attrs.field(default=0, validator=_count)
    # from when a job was due (its run_at, or its enqueue) to its start, per started attempt
    wait: Histogram = attrs.field(factory=Histogram, converter=_histogram)
    # handler running time of every finished attempt (succeeded, failed, dead, cancelled)
    run: Histogram = attrs.field(factory=Histogram, converter=_histogram)
    # recovery time: from when a holder lost a job (its lease expired and reap took it back)
    # to the job's handler starting again, per recovered start (``Lease.lost_at``)
    recovery: Histogram = attrs.field(factory=Histogram, converter=_histogram)

    @property
    def is_empty(self) -> bool:
        """True when every figure is zero (adding it changes nothing)."""
        return not self.cells()

    def cells(self) -> dict[str, int]:
        """The non-zero figures by metric name (``succeeded``, ..., ``wait:17``, ``run:3``,
        ``recovery:40``)."""
        cells = {name: getattr(self, name) for name in COUNTERS if getattr(self, name)}
        for name in _HISTOGRAMS:
            histogram: Histogram = getattr(self, name)
            for index, count in enumerate(histogram.buckets):
                if count:
                    cells[f"{name}:{index}"] = count
        return cells

    @classmethod
    def from_cells(
        cls, queue: str, minute: float, cells: Mapping[str, object]
    ) -> QueueStats | None:
        """A row read back from a store; a metric this code does not know, or a value out of
        range (written by another tool or version), is skipped, and a row whose queue or
        minute is invalid is None, so no stored value can crash a reader."""
        counters: dict[str, int] = {}
        buckets = {name: [0] * _BUCKETS for name in _HISTOGRAMS}
        for metric, value in cells.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
                continue
            if metric in COUNTERS:
                counters[metric] = value
                continue
            name, _, index = metric.partition(":")
            if name in buckets and index.isdigit() and int(index) < _BUCKETS:
                buckets[name][int(index)] = value
        try:
            return cls(
                queue=queue,
                minute=minute,
                wait=Histogram(buckets=tuple(buckets["wait"])),
                run=Histogram(buckets=tuple(buckets["run"])),
                recovery=Histogram(buckets=tuple(buckets["recovery"])),
                **counters,
            )
        except InvalidRequest:
            return None

    def __add__(self, other: QueueStats) -> QueueStats:
        if not isinstance(other, QueueStats):
            return NotImplemented
        if (self.queue, self.minute) != (other.queue, other.minute):
            raise InvalidRequest("only rows of the same queue and minute add up")
        sums = {name: getattr(self, name) + getattr(other, name) for name in COUNTERS}
        return attrs.evolve(
            self,
            wait=self.wait + other.wait,
            run=self.run + other.run,
            recovery=self.recovery + other.recovery,
            **sums,
        )


def _queues(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidRequest(f"queues must be a sequence of names, got {value!r:.60}")
    if len(value) > MAX_NODE_QUEUES:
        raise InvalidRequest(f"a node lists at most {MAX_NODE_QUEUES} queues, got {len(value)}")
    for name in value:
        check_name(name)
    return tuple(value)


def _label(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    check_label(value, attr.name)


def _time(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    check_time(value, attr.name)


def _positive(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if check_time(value, attr.name) <= 0:
        raise InvalidRequest(f"{attr.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class NodeInfo:
    """One node of the cluster as registered. Sent by a node's NodeRegistry actor to
    ``Transport.register_node``; returned by ``list_nodes``."""

    id: str = attrs.field(validator=_label)  # the node id (lease owners start with it)
    host: str = attrs.field(validator=_label)  # host name the node runs on
    pid: int = attrs.field(validator=lambda _i, a, v: check_int(v, a.name, 0, INT32_MAX))
    # the queues it works, in its topology's order (at most MAX_NODE_QUEUES names)
    queues: tuple[str, ...] = attrs.field(default=(), converter=_queues)
    # Workers it runs over all its queues, as configured (0 .. 2**31 - 1)
    slots: int = attrs.field(
        default=0, validator=lambda _i, a, v: check_int(v, a.name, 0, INT32_MAX)
    )
    version: str = attrs.field(validator=_label)  # the actorq version it runs
    started_at: float = attrs.field(validator=_time)  # when it started, on its clock
    # seconds between its heartbeats (> 0): readers judge it gone after a few missed ones
    heartbeat: float = attrs.field(validator=_positive)
    # when the store last heard of it (the store's now at register / heartbeat); any value
    # given to register_node is replaced by that
    last_seen: float = attrs.field(default=0.0, validator=_time)

    def is_alive(self, now: float, *, misses: int = 3) -> bool:
        """True while fewer than ``misses`` heartbeats are overdue at ``now``."""
        return now < self.last_seen + misses * self.heartbeat

    @classmethod
    def from_stored(cls, **fields: Any) -> NodeInfo | None:
        """A node read back from a store, or None when a stored value is out of range
        (written by another tool), so no stored row can crash a reader."""
        try:
            return cls(**fields)
        except (InvalidRequest, TypeError):
            return None


def sum_cells(rows: Iterable[QueueStats]) -> list[tuple[str, float, str, int]]:
    """The non-zero cells ``(queue, minute, metric, value)`` of some rows, those of one
    queue, minute and metric summed: what a SQL backend's additive upsert takes."""
    sums: dict[tuple[str, float, str], int] = {}
    for row in rows:
        for metric, value in row.cells().items():
            key = (row.queue, row.minute, metric)
            sums[key] = sums.get(key, 0) + value
    # Sorted: concurrent upserts then lock their rows in one order and cannot deadlock.
    return [(*key, value) for key, value in sorted(sums.items())]


def rows_of_cells(cells: Iterable[tuple[str, float, str, object]]) -> list[QueueStats]:
    """Rows rebuilt from stored cells that come ordered by minute then queue; a row no
    :class:`QueueStats` can hold is skipped (see :meth:`QueueStats.from_cells`)."""
    rows: list[QueueStats] = []
    key: tuple[str, float] | None = None
    gathered: dict[str, object] = {}

    def flush() -> None:
        if key is not None:
            row = QueueStats.from_cells(key[0], key[1], gathered)
            if row is not None:
                rows.append(row)

    for queue, minute, metric, value in cells:
        if (queue, minute) != key:
            flush()
            key, gathered = (queue, minute), {}
        gathered[metric] = value
    flush()
    return rows
