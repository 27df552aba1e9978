"""The trace: every event of a run, typed and stamped with virtual time, and its canonical text.

The trace holds the runtime's own events (``actors.jobs`` events from every node's EventBus)
and the simulator's (faults, restarts, enqueues, injected storage errors). ``render_entry``
turns one into a line that depends only on the event, never on object identity or wall time;
the sha256 of all lines is the run's fingerprint: two runs of one seed print the same hash.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import attrs

from actors.core import Clock

__all__ = [
    "CancelRequested",
    "ClockStepped",
    "FaultsStopped",
    "HandlerHung",
    "JobsEnqueued",
    "NodeCrashed",
    "NodeFailed",
    "NodePaused",
    "NodeResumed",
    "NodeStarted",
    "OperatorActed",
    "PartitionHealed",
    "PartitionStarted",
    "SimEvent",
    "StorageCallFailed",
    "StorageFaultEnded",
    "StorageFaultStarted",
    "Trace",
    "TraceEntry",
    "ViolationFound",
    "render_entry",
]


@attrs.frozen(kw_only=True)
class NodeStarted:
    """A node incarnation started (at the beginning, or after a crash)."""

    node: str  # the incarnation's node id, e.g. "n2.3"
    skew: float  # its clock's offset from the store's, in seconds


@attrs.frozen(kw_only=True)
class NodeCrashed:
    """The simulator killed a node incarnation: no drain, no release, no goodbye."""

    node: str
    restart_at: float  # when it comes back (as the next incarnation)


@attrs.frozen(kw_only=True)
class NodeFailed:
    """A node's root supervisor gave up (its actor system ended); it restarts like a crash."""

    node: str
    error: str


@attrs.frozen(kw_only=True)
class NodePaused:
    """A node stopped the world: its actors get no time and its storage calls hang."""

    node: str
    until: float


@attrs.frozen(kw_only=True)
class NodeResumed:
    """A paused node runs again; its timers fire late, its leases may be gone."""

    node: str


@attrs.frozen(kw_only=True)
class PartitionStarted:
    """A node lost the store: every storage call fails after a timeout."""

    node: str  # the node slot, e.g. "n2"
    until: float


@attrs.frozen(kw_only=True)
class PartitionHealed:
    """A node reaches the store again."""

    node: str


@attrs.frozen(kw_only=True)
class StorageFaultStarted:
    """A node's storage calls fail (``fail``) or are slow (``slow``) for a while."""

    node: str
    mode: str  # "fail" or "slow"
    level: float  # fail: probability a call fails; slow: longest added latency, seconds
    until: float


@attrs.frozen(kw_only=True)
class StorageFaultEnded:
    """A node's storage calls behave again."""

    node: str


@attrs.frozen(kw_only=True)
class StorageCallFailed:
    """One storage call raised ``ConnectionLost`` by the simulator's hand."""

    node: str
    call: str  # the transport method
    applied: bool  # True: the store did the work and only the reply was lost


@attrs.frozen(kw_only=True)
class ClockStepped:
    """A node's clock jumped: its offset from the store's clock changed."""

    node: str
    offset: float


@attrs.frozen(kw_only=True)
class JobsEnqueued:
    """The producer added jobs (one batch)."""

    job_ids: tuple[int, ...]
    deduplicated: int  # requests folded into an active job with the same dedupe key


@attrs.frozen(kw_only=True)
class CancelRequested:
    """An operator asked to cancel a job."""

    job_id: int
    result: str


@attrs.frozen(kw_only=True)
class OperatorActed:
    """An operator retried, discarded or cancelled the jobs a filter matched (``--operators``)."""

    action: str  # "retry" (dead jobs), "discard" (scheduled jobs) or "cancel" (available jobs)
    job_ids: tuple[int, ...]  # the jobs it changed


@attrs.frozen(kw_only=True)
class Signalled:
    """The producer signalled an event the workload's jobs wait for (``steps`` runs)."""

    key: str
    woken: tuple[int, ...]  # the suspended jobs it made available


@attrs.frozen(kw_only=True)
class HandlerHung:
    """A handler run hangs until something cancels it (its timeout, a lost lease, a crash)."""

    job_id: int
    attempt: int


@attrs.frozen(kw_only=True)
class FaultsStopped:
    """The faulty phase ended: every node is up and healthy; the quiet tail begins."""

    pending: int  # jobs not final yet


@attrs.frozen(kw_only=True)
class ViolationFound:
    """An invariant broke; the run stops here."""

    invariant: str
    detail: str


SimEvent: TypeAlias = (
    NodeStarted
    | NodeCrashed
    | NodeFailed
    | NodePaused
    | NodeResumed
    | PartitionStarted
    | PartitionHealed
    | StorageFaultStarted
    | StorageFaultEnded
    | StorageCallFailed
    | ClockStepped
    | JobsEnqueued
    | CancelRequested
    | OperatorActed
    | Signalled
    | HandlerHung
    | FaultsStopped
    | ViolationFound
)


@attrs.frozen(kw_only=True)
class TraceEntry:
    """One event of the trace."""

    at: float  # virtual time on the store's clock
    source: str  # "sim", "client", or the node id the event came from
    event: Any  # a SimEvent or an actors.jobs RuntimeEvent (any attrs instance renders)


#: Field names holding clock times, rendered relative to the run's start.
_TIME_FIELDS = frozenset(
    {"at", "until", "restart_at", "run_at", "enqueued_at", "expired_at", "tick", "lost_at"}
)


def _render_value(name: str, value: object, t0: float) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value - t0:.6f}" if name in _TIME_FIELDS else f"{value:.6f}"
    if isinstance(value, tuple):
        return "[" + ",".join(_render_value("", v, t0) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


_FIELDS: dict[type, tuple[str, ...]] = {}


def render_entry(entry: TraceEntry, t0: float) -> str:
    """The canonical line of ``entry``: time, source, event name, then ``field=value`` pairs.

    Times are seconds since ``t0`` with six decimals; strings are quoted; nothing depends on
    object identity.
    """
    event = entry.event
    cls = type(event)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in attrs.fields(cls))
    parts = [f"{entry.at - t0:.6f}", entry.source, cls.__name__]
    parts.extend(f"{n}={_render_value(n, getattr(event, n), t0)}" for n in names if n != "at")
    return " ".join(parts)


class Trace:
    """The events of one run, in the order they happened.

    Args:
        clock: the store's clock; every entry is stamped with its time.
        start: the run's start time, rendered as 0.
    """

    def __init__(self, clock: Clock, start: float) -> None:
        self._clock = clock
        self.start = start
        self.entries: list[TraceEntry] = []
        #: Called with each new entry (the invariant checker follows some runtime events).
        self.listeners: list[Callable[[TraceEntry], None]] = []
        self.closed = False

    def close(self) -> None:
        """The run is over: later events are dropped.

        Tearing the cluster down cancels many tasks at once, and the order in which the event
        loop delivers those cancellations follows object ids; nothing said after the end may
        reach the trace.
        """
        self.closed = True

    def add(self, source: str, event: object) -> None:
        """Append ``event`` from ``source`` at the store clock's current time (unless closed)."""
        if self.closed:
            return
        entry = TraceEntry(at=self._clock.now(), source=source, event=event)
        self.entries.append(entry)
        for listener in self.listeners:
            listener(entry)

    def __len__(self) -> int:
        return len(self.entries)

    def lines(self) -> Iterator[str]:
        """The canonical text of every entry, in order."""
        start = self.start
        for entry in self.entries:
            yield render_entry(entry, start)

    def tail(self, count: int) -> list[str]:
        """The canonical text of the last ``count`` entries."""
        start = self.start
        return [render_entry(e, start) for e in self.entries[-count:]] if count else []

    def text(self) -> str:
        """The whole trace as text, one event per line."""
        return "".join(line + "\n" for line in self.lines())

    def sha256(self) -> str:
        """The hex sha256 of ``text()``: equal for two runs exactly when their traces are."""
        digest = hashlib.sha256()
        for line in self.lines():
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()
