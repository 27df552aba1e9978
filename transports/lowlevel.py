"""The low-level vocabulary of the transport contract, for backend authors and wrappers.

Leases, finalize and renew requests and results, outcomes, leader leases, the asyncio bridge and
the helpers backends share. Applications use :mod:`transports`; a new backend or a wrapper
transport (a fault injector, a metrics proxy) needs these too.
"""

from ._bridge import AsyncioLoopThread, BridgedTransport
from ._clock import WallClock
from ._errors import map_exceptions
from ._records import (
    Cancel,
    Complete,
    Discard,
    FinalizeRequest,
    FinalizeResult,
    LeaderLease,
    Lease,
    Outcome,
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

__all__ = [
    "AsyncioLoopThread",
    "BridgedTransport",
    "Cancel",
    "Complete",
    "Discard",
    "FinalizeRequest",
    "FinalizeResult",
    "LeaderLease",
    "Lease",
    "Outcome",
    "Reclaimed",
    "Release",
    "RenewRequest",
    "RenewResult",
    "Retry",
    "Snooze",
    "TimeSource",
    "WallClock",
    "encode_payload",
    "map_exceptions",
    "validate_name",
]
