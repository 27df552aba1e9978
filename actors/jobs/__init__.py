"""The actorq job runtime: an App of typed handlers, run by supervised actors.

Built only from ``actors.core`` and the ``transports`` contract. The actors: the per-queue
:class:`QueueSupervisor`, :class:`Worker`, :class:`Heartbeat`, :class:`Reaper`, :class:`Cron`
and :class:`Cleanup`, composed into a node by :class:`Topology`.
"""

from ._app import App, Handler, Task, TaskOptions
from ._backoff import Backoff, Constant, Exponential, Linear
from ._cleanup import Cleanup
from ._context import JobContext
from ._cron import Cron
from ._errors import (
    DuplicateJobKind,
    InvalidCronExpression,
    JobError,
    LeaseLost,
    PayloadInvalid,
    UnknownJobKind,
)
from ._events import (
    CronFired,
    EventBus,
    FinalizeRefused,
    JobCancelled,
    JobClaimed,
    JobDead,
    JobLeaseLost,
    JobReclaimed,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    RuntimeEvent,
    ShutdownPhase,
    WorkerCrashed,
)
from ._outcomes import Done, Drop, HandlerOutcome, RetryLater, SnoozeUntil
from ._periodic import PeriodicActor, PeriodicMessage, RunNow, Tick
from ._queue import DrainWorkers, QueueSupervisor, Reconfigure, WorkerCount
from ._reaper import Reaper
from ._schedule import CatchUp, CronSchedule, Overlap
from ._topology import Node, NodeContext, Topology, default_node_id
from ._worker import (
    CancelsRequested,
    Drain,
    Heartbeat,
    HeartbeatMessage,
    LeasesLost,
    Worker,
    WorkerConfig,
    WorkerMessage,
)

__all__ = [
    "App",
    "Backoff",
    "CancelsRequested",
    "CatchUp",
    "Cleanup",
    "Constant",
    "Cron",
    "CronFired",
    "CronSchedule",
    "Done",
    "Drain",
    "DrainWorkers",
    "Drop",
    "DuplicateJobKind",
    "EventBus",
    "Exponential",
    "FinalizeRefused",
    "Handler",
    "HandlerOutcome",
    "Heartbeat",
    "HeartbeatMessage",
    "InvalidCronExpression",
    "JobCancelled",
    "JobClaimed",
    "JobContext",
    "JobDead",
    "JobError",
    "JobLeaseLost",
    "JobReclaimed",
    "JobRetried",
    "JobSnoozed",
    "JobSucceeded",
    "LeaseLost",
    "LeasesLost",
    "Linear",
    "Node",
    "NodeContext",
    "Overlap",
    "PayloadInvalid",
    "PeriodicActor",
    "PeriodicMessage",
    "QueueSupervisor",
    "Reaper",
    "Reconfigure",
    "RetryLater",
    "RunNow",
    "RuntimeEvent",
    "ShutdownPhase",
    "SnoozeUntil",
    "Task",
    "TaskOptions",
    "Tick",
    "Topology",
    "UnknownJobKind",
    "Worker",
    "WorkerConfig",
    "WorkerCount",
    "WorkerCrashed",
    "WorkerMessage",
    "default_node_id",
]
