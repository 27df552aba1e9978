"""The Reaper: takes back jobs whose lease expired, so another Worker can run them."""

from __future__ import annotations

from transports import Transport

from ._config import WorkerConfig, integer, number
from ._events import EventBus, JobReclaimed
from ._periodic import PeriodicActor

__all__ = ["Reaper"]

_DEFAULTS = WorkerConfig()


class Reaper(PeriodicActor):
    """Reclaims expired leases every ``interval`` seconds, publishing one event per job.

    Safe to run on every node at once: the transport hands each expired lease to one reaper.
    A job orphaned by a dead worker is claimable again within ``lease_ttl + interval``.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        events: EventBus,
        interval: float = _DEFAULTS.reaper_interval,
        batch: int = 1000,
    ) -> None:
        self.interval = number("Reaper interval", interval)
        integer("Reaper batch", batch, minimum=1, maximum=1_000_000)
        self._transport = transport
        self._events = events
        self._batch = batch
        self.reclaimed = 0

    async def tick(self) -> None:
        while True:
            reclaimed = await self._transport.reap(limit=self._batch)
            now = self.context.clock.now()
            for r in reclaimed:
                self._events.publish(
                    JobReclaimed(
                        at=now,
                        job_id=r.job_id,
                        kind=r.kind,
                        queue=r.queue,
                        attempt=r.attempt,
                        lost_by=r.lost_by,
                        expired_at=r.expired_at,
                        state=r.state,
                    )
                )
            self.reclaimed += len(reclaimed)
            if len(reclaimed) < self._batch:
                return
