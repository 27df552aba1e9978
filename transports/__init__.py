"""actorq storage: one contract (:class:`Transport`), three backends, one conformance suite.

``transports`` never imports ``actors``. The SQL drivers are imported only inside their own
backend module, when that backend is used.
"""

from typing import TYPE_CHECKING, Any

from ._base import Transport
from ._bridge import AsyncioLoopThread, BridgedTransport
from ._clock import WallClock
from ._connect import connect
from ._errors import (
    ConnectionLost,
    InvalidQueueName,
    InvalidRequest,
    JobNotFound,
    PayloadNotSerializable,
    PayloadTooLarge,
    SchemaVersionMismatch,
    TransportClosed,
    TransportError,
    UnsupportedURL,
    map_exceptions,
)
from ._memory import MemoryStore, MemoryTransport
from ._records import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    Cancel,
    CancelResult,
    Complete,
    Counts,
    Discard,
    EnqueueRequest,
    EnqueueResult,
    FinalizeRequest,
    FinalizeResult,
    Job,
    JobState,
    JsonValue,
    LeaderLease,
    Lease,
    Outcome,
    QueueConfig,
    Reclaimed,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Snooze,
    TimeSource,
    encode_payload,
    validate_name,
)

if TYPE_CHECKING:
    from ._postgres import PostgresTransport
    from ._sqlite import SQLiteTransport

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "AsyncioLoopThread",
    "BridgedTransport",
    "Cancel",
    "CancelResult",
    "Complete",
    "ConnectionLost",
    "Counts",
    "Discard",
    "EnqueueRequest",
    "EnqueueResult",
    "FinalizeRequest",
    "FinalizeResult",
    "InvalidQueueName",
    "InvalidRequest",
    "Job",
    "JobNotFound",
    "JobState",
    "JsonValue",
    "LeaderLease",
    "Lease",
    "MemoryStore",
    "MemoryTransport",
    "Outcome",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "PostgresTransport",
    "QueueConfig",
    "Reclaimed",
    "Release",
    "RenewRequest",
    "RenewResult",
    "Retry",
    "SQLiteTransport",
    "SchemaVersionMismatch",
    "Snooze",
    "TimeSource",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UnsupportedURL",
    "WallClock",
    "connect",
    "encode_payload",
    "map_exceptions",
    "validate_name",
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
