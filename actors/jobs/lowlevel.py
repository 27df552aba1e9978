"""The runtime's own actors and their messages, for custom topologies and tests.

Applications use :mod:`actors.jobs` (the App, handlers, outcomes, Topology, events). These are
the pieces a Topology wires together: the Worker and its Heartbeat, the queue supervisor, the
periodic Reaper, Cron and Cleanup, the messages between them, and the event bus.
"""

from ._app import Handler
from ._cleanup import Cleanup
from ._cron import Cron
from ._events import EventBus
from ._periodic import PeriodicActor, PeriodicMessage, RunNow, Tick
from ._queue import DrainWorkers, QueueSupervisor, Reconfigure, WorkerCount
from ._reaper import Reaper
from ._topology import default_node_id
from ._worker import (
    CancelsRequested,
    Drain,
    Heartbeat,
    HeartbeatMessage,
    LeasesLost,
    Worker,
    WorkerMessage,
)

__all__ = [
    "CancelsRequested",
    "Cleanup",
    "Cron",
    "Drain",
    "DrainWorkers",
    "EventBus",
    "Handler",
    "Heartbeat",
    "HeartbeatMessage",
    "LeasesLost",
    "PeriodicActor",
    "PeriodicMessage",
    "QueueSupervisor",
    "Reaper",
    "Reconfigure",
    "RunNow",
    "Tick",
    "Worker",
    "WorkerCount",
    "WorkerMessage",
    "default_node_id",
]
