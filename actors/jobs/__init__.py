"""The actorq job runtime: an App of typed handlers, run by supervised actors.

Built only from ``actors.core`` and the ``transports`` contract. This namespace holds what an
application calls: the :class:`App` and its tasks, handlers' outcomes and backoff, schedules,
:class:`Topology` and :class:`Node`, the typed events and the errors. The runtime's own actors
(LeaseKeeper, queue supervisor, Claimer, Worker, Reaper, Cron, Cleanup) and their messages live in
:mod:`actors.jobs.lowlevel`.
"""

from ._app import App, Task, TaskOptions
from ._backoff import Backoff, Constant, Exponential, Linear
from ._config import WorkerConfig
from ._context import JobContext
from ._errors import (
    ConfigInvalid,
    DuplicateJobKind,
    InvalidCronExpression,
    JobError,
    JobFailed,
    LeaseLost,
    PayloadInvalid,
    ResultTimeout,
    UnknownJobKind,
    WaitTimedOut,
)
from ._events import (
    CronFired,
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
from ._schedule import CatchUp, CronSchedule, Overlap
from ._topology import Node, NodeContext, Topology

__all__ = [
    "App",
    "Backoff",
    "CatchUp",
    "ConfigInvalid",
    "Constant",
    "CronFired",
    "CronSchedule",
    "Done",
    "Drop",
    "DuplicateJobKind",
    "Exponential",
    "FinalizeRefused",
    "HandlerOutcome",
    "InvalidCronExpression",
    "JobCancelled",
    "JobClaimed",
    "JobContext",
    "JobDead",
    "JobError",
    "JobFailed",
    "JobLeaseLost",
    "JobReclaimed",
    "JobRetried",
    "JobSnoozed",
    "JobSucceeded",
    "LeaseLost",
    "Linear",
    "Node",
    "NodeContext",
    "Overlap",
    "PayloadInvalid",
    "ResultTimeout",
    "RetryLater",
    "RuntimeEvent",
    "ShutdownPhase",
    "SnoozeUntil",
    "Task",
    "TaskOptions",
    "Topology",
    "UnknownJobKind",
    "WaitTimedOut",
    "WorkerConfig",
    "WorkerCrashed",
]
