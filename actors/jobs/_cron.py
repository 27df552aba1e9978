"""Cron: enqueues scheduled jobs, from the cluster's cron leader only, at most once per tick.

Leadership is a leader lease named ``cron``. Each schedule keeps its last fired tick in a
transport cursor; a tick fires only for the node whose compare-and-set moves the cursor over
it, so even two nodes that briefly both believe they lead cannot fire one tick twice. The
job is enqueued with a dedupe key as a second guard (and, under ``Overlap.SKIP``, to fold into
a previous run that is still active).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from random import Random  # allowed: type of the injected, seeded RNG only

from transports import Transport

from ..core import ExitReason
from ._app import App
from ._config import WorkerConfig, number
from ._errors import RETRYABLE, ConfigInvalid, UnknownJobKind
from ._events import CronFired, EventBus
from ._periodic import PeriodicActor
from ._schedule import CatchUp, CronSchedule

__all__ = ["Cron"]

_log = logging.getLogger("actorq.cron")

_DEFAULTS = WorkerConfig()


class Cron(PeriodicActor):
    """Fires ``schedules`` while this node holds the ``cron`` leader lease.

    Args:
        leader_ttl: seconds the leader lease lives unrenewed; a new leader takes over within
            about that long after the old one dies.
        grace: a tick later than this (downtime, a slow leader handover) counts as missed
            and follows the schedule's catch-up policy.
        release_timeout: how long stopping may spend handing the leader lease back.

    Raises:
        UnknownJobKind: at construction, when a schedule names a kind the App lacks.
        ConfigInvalid: at construction, when two schedules share a name or a duration is
            out of range.
    """

    def __init__(
        self,
        *,
        app: App,
        transport: Transport,
        events: EventBus,
        node_id: str,
        rng: Random,
        schedules: Sequence[CronSchedule],
        leader_ttl: float = _DEFAULTS.leader_ttl,
        grace: float | None = None,
        release_timeout: float = _DEFAULTS.release_timeout,
    ) -> None:
        number("Cron leader_ttl", leader_ttl)
        self._release_timeout = number("Cron release_timeout", release_timeout, strict=False)
        if grace is not None:
            number("Cron grace", grace, strict=False)
        names = [s.name for s in schedules]
        if len(set(names)) != len(names):
            raise ConfigInvalid(f"cron schedule names must be unique: {names}")
        for schedule in schedules:
            if app.get(schedule.kind) is None:
                raise UnknownJobKind(
                    f"schedule {schedule.name!r}: no handler for {schedule.kind!r}"
                )
        self._app = app
        self._transport = transport
        self._events = events
        self._node_id = node_id
        self._rng = rng
        self._schedules = tuple(schedules)
        self._ttl = leader_ttl
        self._grace = leader_ttl if grace is None else grace
        self.interval = leader_ttl / 3
        self.leading = False
        self.fired = 0
        self._refused: dict[str, str] = {}  # schedule -> the stored cursor warned about

    def next_delay(self) -> float:
        # Wake for the next tick of any schedule, but at least every ttl / 3 to keep the lease.
        now = self.context.clock.now()
        nearest = min((s.next_after(now) for s in self._schedules), default=now + self.interval)
        return max(0.0, min(self.interval, nearest - now))

    async def tick(self) -> None:
        transport = self._transport
        lease = await transport.acquire_leader("cron", holder=self._node_id, ttl=self._ttl)
        if lease is None:
            if self.leading:
                _log.info("%s: no longer the cron leader", self._node_id)
            self.leading = False
            return
        if not self.leading:
            _log.info("%s: cron leader (epoch %d)", self._node_id, lease.epoch)
        self.leading = True
        for schedule in self._schedules:
            await self._fire_due(schedule)

    async def on_stop(self, reason: ExitReason) -> None:
        # Hand leadership over now rather than after the lease TTL: another node's next tick
        # takes it. Best effort: a lease left behind simply expires.
        if self.leading:
            self.leading = False
            with self.context.clock.move_on_after(self._release_timeout):
                try:
                    await self._transport.release_leader("cron", holder=self._node_id)
                except RETRYABLE as exc:
                    _log.info("%s: could not release the cron lease: %s", self._node_id, exc)

    async def _fire_due(self, schedule: CronSchedule) -> None:
        transport = self._transport
        clock = self.context.clock
        cursor_name = schedule.cursor
        now = clock.now()
        cursor = await transport.get_cursor(cursor_name)
        if cursor is None:
            # First sight of this schedule: start counting from now, fire nothing from the past.
            await transport.advance_cursor(cursor_name, expected=None, new=now)
            return
        if not (isinstance(cursor, int | float) and math.isfinite(cursor)):
            # Another tool stored a cursor no tick can be compared with: firing from it could
            # fire every tick or none, so the schedule waits for an operator, loudly.
            if self._refused.get(schedule.name) != repr(cursor):
                self._refused[schedule.name] = repr(cursor)
                _log.warning(
                    "cron %r: ignoring the stored cursor %r (not a finite time); the schedule "
                    "does not fire until it is reset",
                    schedule.name,
                    cursor,
                    extra={"schedule": schedule.name},
                )
            return
        # Only the latest due tick matters (a long downtime must not walk every missed one).
        latest = schedule.latest_until(now)
        if latest <= cursor:
            return
        fire = schedule.catch_up is CatchUp.FIRE_ONCE or now - latest <= self._grace
        # Claim the ticks first: only the node whose compare-and-set wins may fire them.
        if not await transport.advance_cursor(cursor_name, expected=cursor, new=latest):
            return
        if not fire or schedule.next_after(cursor) < latest:
            _log.info(
                "cron %r: missed tick(s) after %s skipped%s",
                schedule.name,
                cursor,
                "" if fire else f", including the latest ({latest})",
            )
        if not fire:
            return
        delay = self._rng.uniform(0.0, schedule.jitter) if schedule.jitter else 0.0
        request = self._app.request(
            schedule.kind,
            schedule.payload,
            queue=schedule.queue,
            dedupe_key=schedule.dedupe_key(latest),
            delay=delay,
        )
        result = await transport.enqueue(request)
        self.fired += 1
        self._events.publish(
            CronFired(
                at=clock.now(),
                schedule=schedule.name,
                tick=latest,
                job_id=result.job_id,
                deduplicated=result.deduplicated,
            )
        )
