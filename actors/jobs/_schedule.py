"""Cron schedules: when they tick, and what a tick enqueues.

Expressions are parsed by ``croniter``: five fields (minute hour day month weekday) or six,
the sixth being seconds (``* * * * * */5`` ticks every five seconds), or one of its
``@hourly``-style aliases. Seven fields (croniter's year) are refused: the sixth field would
silently mean seconds in one reading and the seventh years in another. Times are clock seconds
in UTC.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import attrs
from croniter import croniter

from transports import JsonValue
from transports.lowlevel import validate_name

from ._config import number
from ._errors import ConfigInvalid, InvalidCronExpression

__all__ = ["CatchUp", "CronSchedule", "Overlap"]

E = TypeVar("E", bound=enum.StrEnum)


class Overlap(enum.StrEnum):
    """What a tick does while the schedule's previous job is still active."""

    SKIP = "skip"  # fold into the active job: no new run
    ALLOW = "allow"  # enqueue anyway


class CatchUp(enum.StrEnum):
    """What happens to ticks missed while no node was leading (downtime)."""

    SKIP = "skip"  # forget them; resume at the next tick
    FIRE_ONCE = "fire_once"  # fire one job for the latest missed tick, then resume


def _check_expression(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidCronExpression(f"a cron expression must be a string, got {value!r}")
    fields = value.split()
    alias = len(fields) == 1 and fields[0].startswith("@")
    if not alias and len(fields) not in (5, 6):
        raise InvalidCronExpression(
            f"invalid cron expression {value!r}: {len(fields)} fields, expected 5 "
            "(minute hour day month weekday) or 6 (the sixth is seconds)"
        )
    if not croniter.is_valid(value):
        raise InvalidCronExpression(f"invalid cron expression {value!r}")


def _check_kind(_inst: object, _attr: object, value: str) -> None:
    validate_name(value, "kind")


def _check_queue(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None:
        validate_name(value, "queue")


def _check_jitter(_inst: object, _attr: object, value: float) -> None:
    number("schedule jitter", value, strict=False)


def _member(cls: type[E], value: object) -> E:
    try:
        return cls(value)  # type: ignore[arg-type]  # a wrong type is refused below
    except ValueError:
        choices = ", ".join(repr(m.value) for m in cls)
        raise ConfigInvalid(f"{cls.__name__} must be one of {choices}, got {value!r}") from None


def _overlap(value: object) -> Overlap:
    return _member(Overlap, value)


def _catch_up(value: object) -> CatchUp:
    return _member(CatchUp, value)


_MICROSECOND = timedelta(microseconds=1)


def _moment(t: float) -> datetime:
    """``t`` as croniter is given it: the microsecond at or before ``t``. (``fromtimestamp``
    rounds to the nearest one, so a time less than half a microsecond before a tick read as
    the tick itself, and the first tick after it skipped that tick.)"""
    moment = datetime.fromtimestamp(t, UTC)
    return moment - _MICROSECOND if moment.timestamp() > t else moment


class _Memo:
    """A schedule's last answers: ``next_after(t)`` is ``tick`` for ``after <= t < tick``, and
    ``latest_until(t)`` is ``last`` for ``last <= t < upto``."""

    __slots__ = ("after", "last", "tick", "upto")

    def __init__(self) -> None:
        self.after = self.tick = math.inf
        self.last = self.upto = math.inf


@attrs.frozen(kw_only=True)
class CronSchedule:
    """A job kind enqueued on a cron schedule by the cluster's cron leader.

    Raises:
        InvalidCronExpression: at construction, when ``expression`` does not parse or has
            neither 5 nor 6 fields.
        ConfigInvalid: ``jitter`` is negative or not finite, or ``overlap`` / ``catch_up``
            is not one of its enum's values.
        transports.InvalidQueueName: ``name``, ``kind`` or ``queue`` is not a valid name.
    """

    name: str = attrs.field(validator=lambda _i, _a, v: validate_name(v, "schedule"))
    expression: str = attrs.field(validator=_check_expression)
    kind: str = attrs.field(validator=_check_kind)  # the job kind each tick enqueues
    payload: JsonValue = None  # of the kind's payload type (App.schedule checks it)
    queue: str | None = attrs.field(default=None, validator=_check_queue)  # None: the kind's
    overlap: Overlap = attrs.field(default=Overlap.ALLOW, converter=_overlap)
    catch_up: CatchUp = attrs.field(default=CatchUp.SKIP, converter=_catch_up)
    #: Up to this many seconds of delay per tick, from the seeded RNG.
    jitter: float = attrs.field(default=0.0, validator=_check_jitter)
    # The last answers, reused while a time falls in the same gap between ticks: a croniter
    # costs about 80 µs to build, and the cron actor asks on every wake-up.
    _memo: _Memo = attrs.field(init=False, factory=lambda: _Memo(), eq=False, repr=False)

    @property
    def cursor(self) -> str:
        """The name of the transport cursor holding the schedule's last fired tick."""
        return f"cron:{self.name}"

    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t``."""
        memo = self._memo
        if memo.after <= t < memo.tick:
            return memo.tick  # no tick lies between memo.after and memo.tick
        tick = float(croniter(self.expression, _moment(t)).get_next(float))
        memo.after, memo.tick = t, tick
        return tick

    def latest_until(self, t: float) -> float:
        """The last tick at or before ``t``."""
        memo = self._memo
        if memo.last <= t < memo.upto:
            return memo.last
        previous = float(croniter(self.expression, _moment(t)).get_prev(float))
        # get_prev is strictly before t: t itself may be a tick.
        following = self.next_after(previous)
        if following <= t:
            return following
        memo.last, memo.upto = previous, following  # ticks next to each other, t between
        return previous

    def ticks_between(self, after: float, until: float, *, limit: int = 10_000) -> list[float]:
        """Ticks ``t`` with ``after < t <= until`` (at most ``limit``, the latest kept)."""
        ticks: list[float] = []
        it = croniter(self.expression, _moment(after))
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
