"""A node's settings and their defaults, in one place, validated at construction.

:class:`WorkerConfig` holds every setting of a worker node: how its Workers claim and hold
jobs, how many run per queue, how often the Reaper and the cron leader work, and how long
shutdown may take. The Topology builder, the queue supervisor, the Worker and the command line
read their defaults from it (``attrs.fields(WorkerConfig).lease_ttl.default``), never from a
second literal. The checks below are shared by the rest of the job runtime's configuration
(task options, the Topology builder, schedules); each raises :class:`ConfigInvalid` naming
the setting and its value.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ._errors import ConfigInvalid

__all__ = ["WorkerConfig"]

#: The most Workers one queue may run on one node (each is an actor with a heartbeat).
MAX_CONCURRENCY = 10_000
#: The most jobs one claim may take.
MAX_BATCH_SIZE = 10_000


def number(what: str, value: object, *, minimum: float = 0.0, strict: bool = True) -> float:
    """``value`` as a finite number above ``minimum`` (or equal to it, if not ``strict``).

    Raises:
        ConfigInvalid: it is not a number (a bool is not one), not finite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigInvalid(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigInvalid(f"{what} must be finite, got {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigInvalid(f"{what} must be {bound}, got {value!r}")
    return float(value)


def integer(what: str, value: object, *, minimum: int, maximum: int) -> int:
    """``value`` as an int in ``[minimum, maximum]``.

    Raises:
        ConfigInvalid: it is not an int (a bool is not one) or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigInvalid(f"{what} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigInvalid(f"{what} must be between {minimum} and {maximum}, got {value!r}")
    return value


def _positive(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    number(f"{type(inst).__name__}.{attr.name}", value)


def _non_negative(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    number(f"{type(inst).__name__}.{attr.name}", value, strict=False)


def _between(minimum: int, maximum: int) -> Any:
    def check(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        integer(f"{type(inst).__name__}.{attr.name}", value, minimum=minimum, maximum=maximum)

    return check


def _fraction(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    what = f"{type(inst).__name__}.{attr.name}"
    # Renewing later than half-way through the TTL leaves no room for one missed renewal.
    if number(what, value) > 0.5:
        raise ConfigInvalid(f"{what} must be in (0, 0.5], got {value!r}")


def _margin(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    what = f"{type(inst).__name__}.{attr.name}"
    # Past half the TTL, a hand-off slower than one renewal period could never start a job.
    if number(what, value, strict=False) >= 0.5:
        raise ConfigInvalid(f"{what} must be in [0, 0.5), got {value!r}")


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """Every setting of a worker node, with its default; checked at construction.

    Raises:
        ConfigInvalid: a setting is of the wrong type or out of range (a TTL or interval of
            zero, a negative or non-finite number, a concurrency beyond ``MAX_CONCURRENCY``).
    """

    # --- Workers: claiming and holding jobs
    #: Seconds a lease lives unrenewed; renewed every ``lease_ttl * renew_fraction``.
    lease_ttl: float = attrs.field(default=10.0, validator=_positive)
    #: The part of a TTL after which a lease is renewed, in (0, 0.5].
    renew_fraction: float = attrs.field(default=1 / 3, validator=_fraction)
    #: Most jobs one claim takes: a queue claims for its free slots, at most this many a call
    #: (so a node with up to this many slots free fills them all from one call).
    batch_size: int = attrs.field(default=100, validator=_between(1, MAX_BATCH_SIZE))
    #: The part of its lease's TTL that must remain, by the node's clock from when the claim
    #: was sent, for a handler to start; a job with less left is given back unstarted.
    start_margin: float = attrs.field(default=0.1, validator=_margin)
    #: Longest idle wait, in seconds, before claiming again without a wake-up.
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    #: Finalized results are flushed in batches at most this many seconds old.
    finalize_delay: float = attrs.field(default=0.05, validator=_non_negative)
    #: Pause after a storage error before trying again (doubling, up to a renewal period).
    error_backoff: float = attrs.field(default=1.0, validator=_positive)
    # --- the node
    #: Workers per queue when the queue's stored config does not say.
    concurrency: int = attrs.field(default=10, validator=_between(0, MAX_CONCURRENCY))
    #: Seconds between reaps of expired leases.
    reaper_interval: float = attrs.field(default=1.0, validator=_positive)
    #: Seconds the cron leader lease lives unrenewed; a new leader takes over within that.
    leader_ttl: float = attrs.field(default=10.0, validator=_positive)
    #: Seconds between the node's heartbeats in the node registry; readers take it for gone
    #: after three missed ones.
    node_heartbeat: float = attrs.field(default=10.0, validator=_positive)
    #: Seconds between flushes of the node's history increments (``Transport.add_stats``).
    stats_interval: float = attrs.field(default=10.0, validator=_positive)
    # --- shutdown
    #: Seconds running jobs may take to finish before they are cancelled and released.
    drain_timeout: float = attrs.field(default=10.0, validator=_non_negative)
    #: Seconds beyond ``drain_timeout`` each level of the tree gets to stop (cancelled
    #: handlers returning, leases released, leader leases handed back).
    shutdown_margin: float = attrs.field(default=5.0, validator=_non_negative)

    @property
    def renew_every(self) -> float:
        """Seconds between renewals of a lease of ``lease_ttl``."""
        return self.lease_ttl * self.renew_fraction

    @property
    def release_timeout(self) -> float:
        """How long an actor's ``on_stop`` may spend handing back a leader lease: half a
        margin, so it ends well within the margin its supervisor gives it to stop."""
        return self.shutdown_margin / 2

    @property
    def worker_stop_timeout(self) -> float:
        """How long a Worker may take to drain and stop before its supervisor kills it: the
        drain, a margin for cancelled handlers to return, a margin to release their leases."""
        return self.drain_timeout + 2 * self.shutdown_margin

    @property
    def queue_stop_timeout(self) -> float:
        """How long a queue supervisor may take to stop its draining Workers."""
        return self.worker_stop_timeout + self.shutdown_margin

    @property
    def shutdown_timeout(self) -> float:
        """How long a whole node may take to shut down gracefully (``Topology.run``)."""
        return self.queue_stop_timeout
