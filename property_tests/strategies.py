"""Hypothesis strategies shared by every property test.

Times are drawn as offsets from "now" (the test's clock decides the absolute value), and from
small sets that land exactly on lease boundaries as often as between them: ``now >= expires_at``
is where off-by-one bugs live.
"""

from __future__ import annotations

import random
from typing import Literal

import attrs
from hypothesis import register_random
from hypothesis import strategies as st

from transports import EnqueueRequest
from transports.lowlevel import Cancel, Complete, Discard, Outcome, Release, Retry, Snooze

__all__ = [
    "CONCURRENCY_KEYS",
    "CURSOR_NAMES",
    "HOLDERS",
    "LEADER_NAMES",
    "PARTITIONS",
    "QUEUES",
    "RATE_WINDOWS",
    "RUNTIME_RNG",
    "START",
    "WORKERS",
    "EnqueueSpec",
    "OutcomeSpec",
    "advances",
    "cool_outcome_specs",
    "cursor_values",
    "enqueue_batches",
    "enqueue_specs",
    "key_limits",
    "key_rates",
    "keyed_enqueue_batches",
    "keyed_enqueue_specs",
    "limits",
    "outcome_specs",
    "picks",
    "ttls",
]

START = 1_000_000.0
"""Where every test clock starts."""

QUEUES = ("default", "other")
WORKERS = ("w0", "w1", "w2")
HOLDERS = ("n0", "n1", "n2")
LEADER_NAMES = ("cron", "cleanup")
CURSOR_NAMES = ("tick.a", "tick.b")
CONCURRENCY_KEYS = ("k1", "k2")

RUNTIME_RNG = random.Random(0)
"""The seeded RNG the runtime tests hand to their nodes; hypothesis reseeds it every example."""
register_random(RUNTIME_RNG)

ttls = st.sampled_from([1.0, 5.0, 30.0])
"""Lease and leader TTLs, in seconds."""

advances = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
    st.floats(min_value=0.0, max_value=45.0, allow_nan=False, allow_infinity=False),
)
"""How far the clock moves in one step: often exactly a TTL, sometimes anything."""

limits = st.integers(min_value=1, max_value=4)
"""Batch sizes of claim and reap."""

picks = st.integers(min_value=0, max_value=1 << 16)
"""An index into whatever list a rule chooses from (taken modulo its length)."""

cursor_values = st.sampled_from([1.0, 2.0, 3.0, 60.0])

key_limits = st.sampled_from([None, 0, 1, 1, 2])
"""A concurrency key's limit (None removes it): small, so keys fill up."""

key_rates = st.sampled_from([None, 1, 2, 2, 3])
"""A key's rate (None removes it): small, so windows fill up."""

PARTITIONS = ("t0", "t1", "t2")
"""The flow machine's fair-share partitions (tenants)."""

RATE_WINDOWS = (10.0, 5.0)
"""The rate window of each of the flow machine's keys (fixed: see FlowMachine.set_rate)."""


@attrs.frozen
class EnqueueSpec:
    """A job to enqueue, with its time relative to the moment it is sent."""

    queue: str
    priority: int
    timing: Literal["now", "delay", "run_at"]
    offset: float  # the delay, or run_at - now (negative: already due)
    max_attempts: int
    dedupe_key: str | None
    payload: int
    concurrency_key: str | None = None
    partition_key: str | None = None

    def request(self, now: float) -> EnqueueRequest:
        """The request, as sent at ``now``."""
        if self.timing == "delay":
            return self._build(delay=self.offset)
        if self.timing == "run_at":
            return self._build(run_at=now + self.offset)
        return self._build()

    def _build(self, **timing: float) -> EnqueueRequest:
        return EnqueueRequest(
            kind="work",
            payload={"n": self.payload},
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
            dedupe_key=self.dedupe_key,
            concurrency_key=self.concurrency_key,
            partition_key=self.partition_key,
            **timing,  # type: ignore[arg-type]
        )


enqueue_specs = st.builds(
    EnqueueSpec,
    queue=st.sampled_from([QUEUES[0], QUEUES[0], QUEUES[1]]),
    priority=st.integers(min_value=-1, max_value=2),
    timing=st.sampled_from(["now", "now", "delay", "run_at"]),
    offset=st.sampled_from([-5.0, 0.0, 1.0, 5.0, 30.0]),
    max_attempts=st.integers(min_value=1, max_value=3),
    dedupe_key=st.one_of(st.none(), st.sampled_from(["a", "b"])),
    payload=st.integers(min_value=0, max_value=99),
).map(lambda spec: attrs.evolve(spec, offset=abs(spec.offset)) if spec.timing == "delay" else spec)
"""One job; keyed jobs are common enough to collide."""

enqueue_batches = st.lists(enqueue_specs, min_size=1, max_size=3)

keyed_enqueue_specs = st.tuples(
    enqueue_specs,
    st.sampled_from([None, CONCURRENCY_KEYS[0], CONCURRENCY_KEYS[0], CONCURRENCY_KEYS[1]]),
    st.sampled_from([None, None, *PARTITIONS, PARTITIONS[0]]),
).map(lambda t: attrs.evolve(t[0], concurrency_key=t[1], partition_key=t[2]))
"""One job, most often with a concurrency key of the few the flow machine limits, often in a
fair-share partition (tenant) of the few it knows, the first one the busiest."""

keyed_enqueue_batches = st.lists(keyed_enqueue_specs, min_size=1, max_size=3)


@attrs.frozen
class OutcomeSpec:
    """A finalize outcome, with its time relative to the moment it is sent."""

    kind: Literal["complete", "retry", "snooze", "cool", "discard", "cancel", "release"]
    offset: float
    error: str | None

    def outcome(self, now: float) -> Outcome:
        """The outcome, as sent at ``now``."""
        if self.kind == "complete":
            # A result of its own moment: a stale finalize that stored it would show.
            return Complete(result={"sent_at": now} if self.error is None else None)
        if self.kind == "retry":
            # An error carries its type and a traceback, as the runtime sends them.
            kind, trace = (None, None) if self.error is None else ("ValueError", "Traceback: tb")
            return Retry(
                run_at=now + self.offset, error=self.error, error_type=kind, traceback=trace
            )
        if self.kind == "snooze":
            return Snooze(run_at=now + self.offset)
        if self.kind == "cool":  # a remote said "retry after": the key cools down too
            return Snooze(run_at=now + self.offset, cool_down=True)
        if self.kind == "discard":
            return Discard(error=self.error or "bad input")
        if self.kind == "cancel":
            return Cancel(reason=self.error)
        return Release()


outcome_specs = st.builds(
    OutcomeSpec,
    kind=st.sampled_from(["complete", "retry", "snooze", "discard", "cancel", "release"]),
    offset=st.sampled_from([0.0, 1.0, 5.0, 20.0]),
    error=st.sampled_from([None, "boom"]),
)
"""Every finalize outcome, each as likely as the others."""

cool_outcome_specs = st.builds(
    OutcomeSpec,
    kind=st.just("cool"),
    offset=st.sampled_from([0.0, 1.0, 5.0, 20.0]),
    error=st.none(),
)
"""A snooze that cools its key down."""
