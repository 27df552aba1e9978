"""The runtime's own actors and their messages, for custom topologies and tests.

Applications use :mod:`actors.jobs` (the App, handlers, outcomes, Topology, events). These are
the pieces a Topology wires together: the node's LeaseKeeper, each queue's supervisor, Claimer
and Workers, the periodic Reaper, Cron and Cleanup, the messages between them, the event bus,
and the pure decisions they route (handler result → outcome → event).
"""

from ._app import Handler
from ._claimer import (
    Claimer,
    ClaimerMessage,
    Finished,
    Flush,
    Handoff,
    Poll,
    Ready,
    Reports,
    Run,
    SlotStatistics,
    StopClaiming,
)
from ._cleanup import Cleanup
from ._cron import Cron
from ._decide import (
    DROP,
    INVALID_OUTCOME,
    PAYLOAD_INVALID,
    RESULT_INVALID,
    RETRY_LATER,
    TIMEOUT,
    UNKNOWN_KIND,
    error_type_of,
    event_of,
    failure_of,
    may_start,
    outcome_of,
    result_outcome,
)
from ._events import EventBus, LeasesRenewed
from ._execute import Execution, execute, lose, request_cancel
from ._history import Fold, History, HistoryMessage, StatsRecorder
from ._leases import (
    Beat,
    CancelsRequested,
    Forget,
    Hold,
    LeaseKeeper,
    LeaseKeeperMessage,
    LeaseLink,
    LeasesLost,
    RenewNow,
)
from ._periodic import PeriodicActor, PeriodicMessage, RunNow, Tick
from ._queue import DrainWorkers, QueueSupervisor, Reconfigure, WorkerCount
from ._reaper import Reaper
from ._registry import NodeRegistry
from ._steps import AttemptEnded, StepLog
from ._topology import current_node_id, default_node_id
from ._tracing import EnqueueTrace, RunTrace, Tracer, trace_id_of
from ._worker import Drain, Worker, WorkerMessage

__all__ = [
    "DROP",
    "INVALID_OUTCOME",
    "PAYLOAD_INVALID",
    "RESULT_INVALID",
    "RETRY_LATER",
    "TIMEOUT",
    "UNKNOWN_KIND",
    "AttemptEnded",
    "Beat",
    "CancelsRequested",
    "Claimer",
    "ClaimerMessage",
    "Cleanup",
    "Cron",
    "Drain",
    "DrainWorkers",
    "EnqueueTrace",
    "EventBus",
    "Execution",
    "Finished",
    "Flush",
    "Fold",
    "Forget",
    "Handler",
    "Handoff",
    "History",
    "HistoryMessage",
    "Hold",
    "LeaseKeeper",
    "LeaseKeeperMessage",
    "LeaseLink",
    "LeasesLost",
    "LeasesRenewed",
    "NodeRegistry",
    "PeriodicActor",
    "PeriodicMessage",
    "Poll",
    "QueueSupervisor",
    "Ready",
    "Reaper",
    "Reconfigure",
    "RenewNow",
    "Reports",
    "Run",
    "RunNow",
    "RunTrace",
    "SlotStatistics",
    "StatsRecorder",
    "StepLog",
    "StopClaiming",
    "Tick",
    "Tracer",
    "Worker",
    "WorkerCount",
    "WorkerMessage",
    "current_node_id",
    "default_node_id",
    "error_type_of",
    "event_of",
    "execute",
    "failure_of",
    "lose",
    "may_start",
    "outcome_of",
    "request_cancel",
    "result_outcome",
    "trace_id_of",
]
