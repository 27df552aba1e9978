"""Actors that do one thing on an interval: the Reaper, Cron and Cleanup."""

from __future__ import annotations

import logging
from typing import TypeAlias

import anyio
import attrs

from ..core import Actor, Reply
from ._errors import RETRYABLE

__all__ = ["PeriodicActor", "PeriodicMessage", "RunNow", "Tick"]

_log = logging.getLogger("actorq.periodic")


@attrs.frozen(kw_only=True)
class Tick:
    """Time to work. Sent by the actor's own ticker."""


@attrs.frozen(kw_only=True)
class RunNow:
    """Work now and say when done. Sent by operators and tests."""

    reply_to: Reply[None]


PeriodicMessage: TypeAlias = Tick | RunNow


class PeriodicActor(Actor[PeriodicMessage]):
    """Calls ``tick()`` every ``interval`` seconds of its clock (sooner if ``tick`` asks).

    A transient storage error in ``tick`` (``ConnectionLost``: the store went away or was busy)
    is logged and retried at the next tick: a database that blinks must not restart the node's
    maintenance actors in a loop. Any other error, an invalid request included, is a bug: it
    crashes the actor (its supervisor decides).
    """

    interval: float

    async def on_start(self) -> None:
        self.context.start_soon(self._ticker)

    async def _ticker(self) -> None:
        ref = self.context.self_ref
        clock = self.context.clock
        while True:
            delay = self.next_delay()
            await clock.sleep(delay)
            try:
                ref.tell_nowait(Tick())
            except anyio.WouldBlock:
                pass

    def next_delay(self) -> float:
        """Seconds until the next tick (default: ``interval``)."""
        return self.interval

    async def receive(self, msg: PeriodicMessage) -> None:
        try:
            await self.tick()
        except RETRYABLE as exc:
            _log.warning("%s: storage error, retrying at the next tick: %s", self.context.name, exc)
        if type(msg) is RunNow:
            msg.reply_to.send(None)

    async def tick(self) -> None:
        """Do the periodic work. Override this."""
        raise NotImplementedError
