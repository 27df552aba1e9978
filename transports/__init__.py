"""actorq storage: one contract (:class:`Transport`), three backends, one conformance suite.

This namespace holds what an application touches: :func:`connect`, the backends, jobs and
their states, queue config, enqueue records and the errors. The lease and finalize vocabulary a
backend author or a wrapper transport needs lives in :mod:`transports.lowlevel`.
``transports`` never imports ``actors``. The SQL drivers are imported only inside their own
backend module, when that backend is used.
"""

from typing import TYPE_CHECKING, Any

from ._base import Transport
from ._connect import connect
from ._errors import (
    ConnectionLost,
    DependencyCycle,
    InvalidQueueName,
    InvalidRequest,
    InvalidStepName,
    JobNotFound,
    PayloadNotSerializable,
    PayloadTooLarge,
    ResultNotSerializable,
    ResultTooLarge,
    SchemaVersionMismatch,
    StepTooLarge,
    StoreNotFound,
    StoreReadOnly,
    TransportClosed,
    TransportError,
    UnknownDependency,
    UnsupportedURL,
)
from ._memory import MemoryStore, MemoryTransport
from ._observed import BUCKET_BOUNDS, COUNTERS, MINUTE, Histogram, NodeInfo, QueueStats, minute_of
from ._records import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    After,
    AttemptError,
    CancelResult,
    Counts,
    EnqueueRequest,
    EnqueueResult,
    Job,
    JobFilter,
    JobState,
    JsonValue,
    KeyLimit,
    OnFailure,
    QueueConfig,
)
from ._url import redact_url

if TYPE_CHECKING:
    from ._postgres import PostgresTransport
    from ._sqlite import SQLiteTransport

__all__ = [
    "BUCKET_BOUNDS",
    "COUNTERS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_RESULT_BYTES",
    "MINUTE",
    "After",
    "AttemptError",
    "CancelResult",
    "ConnectionLost",
    "Counts",
    "DependencyCycle",
    "EnqueueRequest",
    "EnqueueResult",
    "Histogram",
    "InvalidQueueName",
    "InvalidRequest",
    "InvalidStepName",
    "Job",
    "JobFilter",
    "JobNotFound",
    "JobState",
    "JsonValue",
    "KeyLimit",
    "MemoryStore",
    "MemoryTransport",
    "NodeInfo",
    "OnFailure",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "PostgresTransport",
    "QueueConfig",
    "QueueStats",
    "ResultNotSerializable",
    "ResultTooLarge",
    "SQLiteTransport",
    "SchemaVersionMismatch",
    "StepTooLarge",
    "StoreNotFound",
    "StoreReadOnly",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UnknownDependency",
    "UnsupportedURL",
    "connect",
    "minute_of",
    "redact_url",
]


def __getattr__(name: str) -> Any:
    # The SQL backends import their drivers; load them only when asked for.
    if name == "SQLiteTransport":
        from ._sqlite import SQLiteTransport

        return SQLiteTransport
    if name == "PostgresTransport":
        from ._postgres import PostgresTransport

        return PostgresTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
