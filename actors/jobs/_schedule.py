"""Cron schedules: when they tick, and what a tick enqueues.

Expressions are parsed by ``croniter``: five fields (minute hour day month weekday) or six,
the sixth being seconds (``* * * * * */5`` ticks every five seconds). Times are clock seconds
in UTC.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import attrs
from croniter import croniter

from transports import JsonValue
from transports.lowlevel import validate_name

from ._errors import InvalidCronExpression

__all__ = ["CatchUp", "CronSchedule", "Overlap"]


class Overlap(enum.StrEnum):
    """What a tick does while the schedule's previous job is still active."""

    SKIP = "skip"  # fold into the active job: no new run
    ALLOW = "allow"  # enqueue anyway


class CatchUp(enum.StrEnum):
    """What happens to ticks missed while no node was leading (downtime)."""

    SKIP = "skip"  # forget them; resume at the next tick
    FIRE_ONCE = "fire_once"  # fire one job for the latest missed tick, then resume


def _check_expression(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise InvalidCronExpression(f"invalid cron expression {value!r}")


@attrs.frozen(kw_only=True)
class CronSchedule:
    """A job kind enqueued on a cron schedule by the cluster's cron leader.

    Raises:
        InvalidCronExpression: at construction, when ``expression`` does not parse.
        InvalidQueueName: when ``name`` is not a valid name.
    """

    name: str = attrs.field(validator=lambda _i, _a, v: validate_name(v, "schedule"))
    expression: str = attrs.field(validator=_check_expression)
    kind: str  # the job kind each tick enqueues
    payload: JsonValue = None
    queue: str | None = None  # None: the kind's own queue
    overlap: Overlap = Overlap.ALLOW
    catch_up: CatchUp = CatchUp.SKIP
    jitter: float = 0.0  # up to this many seconds of delay per tick, from the seeded RNG

    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t``."""
        start = datetime.fromtimestamp(t, UTC)
        return float(croniter(self.expression, start).get_next(float))

    def latest_until(self, t: float) -> float:
        """The last tick at or before ``t``."""
        previous = float(croniter(self.expression, datetime.fromtimestamp(t, UTC)).get_prev(float))
        # get_prev is strictly before t: t itself may be a tick.
        following = self.next_after(previous)
        return following if following <= t else previous

    def ticks_between(self, after: float, until: float, *, limit: int = 10_000) -> list[float]:
        """Ticks ``t`` with ``after < t <= until`` (at most ``limit``, the latest kept)."""
        ticks: list[float] = []
        it = croniter(self.expression, datetime.fromtimestamp(after, UTC))
        while True:
            t = float(it.get_next(float))
            if t > until:
                return ticks
            ticks.append(t)
            if len(ticks) > limit:
                del ticks[0]

    def dedupe_key(self, tick: float) -> str:
        """The key that folds a second firing of one tick (or, under SKIP, any overlap)."""
        if self.overlap is Overlap.SKIP:
            return f"cron:{self.name}"
        return f"cron:{self.name}:{tick:.3f}"
