"""Cleanup: deletes finished jobs past their queue's retention, on the leader only."""

from __future__ import annotations

import logging
import math

from transports import Transport

from ..core import ExitReason
from ._config import WorkerConfig, integer, number
from ._errors import RETRYABLE
from ._periodic import PeriodicActor

__all__ = ["Cleanup"]

_log = logging.getLogger("actorq.cleanup")

#: Seconds finished jobs are kept when their queue's config does not say: a week.
DEFAULT_RETENTION = 7 * 24 * 3600.0
#: Seconds history rows are kept: a week.
DEFAULT_STATS_RETENTION = 7 * 24 * 3600.0
#: Seconds a signalled event is kept (for waits that begin after it): a week.
DEFAULT_SIGNAL_RETENTION = 7 * 24 * 3600.0
#: Seconds a succeeded job's result is kept (the job itself stays its retention): a day.
DEFAULT_RESULT_RETENTION = 24 * 3600.0
#: Seconds a node not seen stays listed (as gone) before it is forgotten: a day.
DEFAULT_NODE_RETENTION = 24 * 3600.0
#: Seconds between cleanups.
DEFAULT_INTERVAL = 60.0

_DEFAULTS = WorkerConfig()


def _sane(retention: object) -> bool:
    return (
        isinstance(retention, int | float)
        and not isinstance(retention, bool)
        and math.isfinite(retention)
        and retention >= 0
    )


class Cleanup(PeriodicActor):
    """Every ``interval`` seconds, the holder of the ``maintenance`` leader lease deletes
    succeeded, cancelled and dead jobs finished longer ago than their queue's ``retention``
    (``QueueConfig.retention``, else ``default_retention``; a None default keeps them forever),
    history rows older than ``stats_retention``, signalled events older than
    ``signal_retention`` and registered nodes not seen for ``node_retention`` seconds, and
    clears the results of succeeded jobs finished longer ago than ``result_retention`` (each
    None keeps them).
    """

    def __init__(
        self,
        *,
        transport: Transport,
        node_id: str,
        default_retention: float | None = DEFAULT_RETENTION,
        stats_retention: float | None = DEFAULT_STATS_RETENTION,
        node_retention: float | None = DEFAULT_NODE_RETENTION,
        signal_retention: float | None = DEFAULT_SIGNAL_RETENTION,
        result_retention: float | None = DEFAULT_RESULT_RETENTION,
        interval: float = DEFAULT_INTERVAL,
        batch: int = 10_000,
        release_timeout: float = _DEFAULTS.release_timeout,
    ) -> None:
        self.interval = number("Cleanup interval", interval)
        self._release_timeout = number("Cleanup release_timeout", release_timeout, strict=False)
        if default_retention is not None:
            number("Cleanup default_retention", default_retention, strict=False)
        for what, value in [
            ("stats_retention", stats_retention),
            ("node_retention", node_retention),
            ("signal_retention", signal_retention),
            ("result_retention", result_retention),
        ]:
            if value is not None:
                number(f"Cleanup {what}", value, strict=False)
        integer("Cleanup batch", batch, minimum=1, maximum=1_000_000)
        self._stats_retention = stats_retention
        self._node_retention = node_retention
        self._signal_retention = signal_retention
        self._result_retention = result_retention
        self._transport = transport
        self._node_id = node_id
        self._default = default_retention
        self._batch = batch
        self.deleted = 0
        self.pruned_stats = 0  # history rows deleted
        self.pruned_nodes = 0  # registered nodes forgotten
        self.pruned_signals = 0  # signalled events deleted
        self.pruned_results = 0  # results of succeeded jobs cleared
        self.leading = False
        self._refused: dict[str, str] = {}  # queue -> the stored retention warned about

    async def tick(self) -> None:
        transport = self._transport
        lease = await transport.acquire_leader(
            "maintenance", holder=self._node_id, ttl=self.interval * 2
        )
        self.leading = lease is not None
        if lease is None:
            return
        configured = {c.name: c.retention for c in await transport.list_queue_configs()}
        queues = {c.queue for c in await transport.counts()} | set(configured)
        now = self.context.clock.now()
        if self._stats_retention is not None:
            self.pruned_stats += await transport.prune_stats(before=now - self._stats_retention)
        if self._signal_retention is not None:
            self.pruned_signals += await transport.prune_signals(
                before=now - self._signal_retention, limit=self._batch
            )
        if self._result_retention is not None:
            while True:  # in batches, until the results past their retention are cleared
                cleared = await transport.prune_results(
                    finished_before=now - self._result_retention, limit=self._batch
                )
                self.pruned_results += cleared
                if cleared < self._batch:
                    break
        if self._node_retention is not None:
            pruned = await transport.prune_nodes(seen_before=now - self._node_retention)
            if pruned:
                _log.info(
                    "cleanup: forgot %d node(s) not seen for %gs", pruned, self._node_retention
                )
            self.pruned_nodes += pruned
        for queue in sorted(queues):
            retention = configured.get(queue)
            if retention is None:
                retention = self._default
            elif not _sane(retention):
                self._refuse(queue, retention)
                continue  # keep the jobs: deleting by a value nobody meant is not undone
            if retention is None:
                continue
            while True:
                deleted = await transport.cleanup(
                    finished_before=now - retention, queue=queue, limit=self._batch
                )
                self.deleted += deleted
                if deleted:
                    _log.info("cleanup: deleted %d finished job(s) of %r", deleted, queue)
                if deleted < self._batch:
                    break

    def _refuse(self, queue: str, retention: object) -> None:
        """A stored retention no node could honour (another tool wrote it): WARNING, once."""
        shown = repr(retention)  # by repr: NaN is not equal to itself
        if self._refused.get(queue) == shown:
            return
        self._refused[queue] = shown
        _log.warning(
            "queue %r: ignoring the stored retention %r (must be a finite number >= 0), "
            "keeping its finished jobs",
            queue,
            retention,
            extra={"queue": queue, "retention": retention},
        )

    async def on_stop(self, reason: ExitReason) -> None:
        # Hand the maintenance lease over now rather than after its TTL (best effort).
        if self.leading:
            self.leading = False
            with self.context.clock.move_on_after(self._release_timeout):
                try:
                    await self._transport.release_leader("maintenance", holder=self._node_id)
                except RETRYABLE as exc:
                    _log.info("%s: could not release the maintenance lease: %s", self._node_id, exc)
