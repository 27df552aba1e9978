"""NodeRegistry: the node's entry in the cluster's node registry, kept fresh by heartbeats."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

from transports import NodeInfo, Transport

from .. import __version__
from ..core import ExitReason
from ._config import WorkerConfig, integer, number
from ._errors import RETRYABLE
from ._periodic import PeriodicActor

__all__ = ["NodeRegistry"]

_log = logging.getLogger("actorq.nodes")

_DEFAULTS = WorkerConfig()


class NodeRegistry(PeriodicActor):
    """Registers the node at once, heartbeats every ``heartbeat`` seconds, forgets it on stop.

    The registration says who the node is (id, host, pid, actorq version), what it works
    (its queues and their configured Workers) and how often it heartbeats, so any reader of
    ``Transport.list_nodes`` can tell it gone after three missed heartbeats. A heartbeat that
    finds the node unknown (pruned while it was cut off) registers it again. A storage error
    is retried at the next tick, like every periodic actor's; a clean stop removes the
    registration (best effort, within ``release_timeout``).
    """

    def __init__(
        self,
        *,
        transport: Transport,
        node_id: str,
        queues: Sequence[str],
        slots: int,
        heartbeat: float = _DEFAULTS.node_heartbeat,
        release_timeout: float = _DEFAULTS.release_timeout,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.interval = number("NodeRegistry heartbeat", heartbeat)
        self._release_timeout = number(
            "NodeRegistry release_timeout", release_timeout, strict=False
        )
        integer("NodeRegistry slots", slots, minimum=0, maximum=2**31 - 1)
        self._transport = transport
        self._node_id = node_id
        self._queues = tuple(queues)
        self._slots = slots
        self._host = host or socket.gethostname() or "unknown"
        self._pid = os.getpid() if pid is None else pid
        self._started_at: float | None = None
        self._first = True
        self.registered = False
        self.heartbeats = 0

    def next_delay(self) -> float:
        # The first tick registers at once; every later one (a heartbeat, or another try
        # after a storage error) comes an interval after the last.
        if self._first:
            self._first = False
            return 0.0
        return self.interval

    async def tick(self) -> None:
        if self.registered and await self._transport.node_heartbeat(self._node_id):
            self.heartbeats += 1
            return
        await self._register()

    async def _register(self) -> None:
        if self._started_at is None:
            self._started_at = max(0.0, self.context.clock.now())
        await self._transport.register_node(
            NodeInfo(
                id=self._node_id,
                host=self._host,
                pid=self._pid,
                queues=self._queues,
                slots=self._slots,
                version=__version__,
                started_at=self._started_at,
                heartbeat=self.interval,
            )
        )
        if self.registered:
            _log.info("%s: registered again (the registry had forgotten it)", self._node_id)
        self.registered = True

    async def on_stop(self, reason: ExitReason) -> None:
        if not self.registered:
            return
        self.registered = False
        with self.context.clock.move_on_after(self._release_timeout):
            try:
                await self._transport.forget_node(self._node_id)
            except RETRYABLE as exc:
                _log.info("%s: could not leave the node registry: %s", self._node_id, exc)
