"""The records that cross the transport boundary: frozen, keyword-only attrs classes.

Times are POSIX seconds as ``float`` taken from the transport's :class:`TimeSource`, so a
virtual clock drives every backend identically in tests and simulation.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias

import attrs

from ._errors import InvalidQueueName, InvalidRequest, PayloadNotSerializable, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "Cancel",
    "CancelResult",
    "Complete",
    "Counts",
    "Discard",
    "EnqueueRequest",
    "EnqueueResult",
    "FinalizeRequest",
    "FinalizeResult",
    "Job",
    "JobState",
    "JsonValue",
    "LeaderLease",
    "Lease",
    "Outcome",
    "QueueConfig",
    "Reclaimed",
    "Release",
    "RenewRequest",
    "RenewResult",
    "Retry",
    "Snooze",
    "TimeSource",
    "encode_payload",
    "validate_name",
]

JsonValue: TypeAlias = Any
"""A value ``json.dumps`` accepts: dict, list, str, int, float, bool or None, nested."""

DEFAULT_MAX_ATTEMPTS = 20
DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576

_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


class TimeSource(Protocol):
    """Anything with a ``now()`` returning POSIX seconds; an actor ``Clock`` is one."""

    def now(self) -> float: ...


class JobState(enum.StrEnum):
    """Where a job is in its life. Only ``running`` jobs hold a lease."""

    SCHEDULED = "scheduled"  # run_at in the future (first run, retry wait or snooze)
    AVAILABLE = "available"  # claimable now
    RUNNING = "running"  # leased to a worker
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    DEAD = "dead"  # discarded: attempts exhausted or not retryable

    @property
    def is_active(self) -> bool:
        """True while the job may still run (scheduled, available or running)."""
        return self in _ACTIVE

    @property
    def is_final(self) -> bool:
        """True once the job will never run again."""
        return self not in _ACTIVE


_ACTIVE = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING})


def validate_name(name: str, what: str = "queue") -> str:
    """Return ``name`` if it is a valid queue (or leader, or kind) name.

    Raises:
        InvalidQueueName: the name is empty, longer than 128 characters, or has characters
            outside ``[A-Za-z0-9_.:-]`` (which keeps SQL metacharacters and whitespace out).
    """
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidQueueName(f"invalid {what} name {name!r}: use 1-128 of [A-Za-z0-9_.:-]")
    return name


def encode_payload(payload: JsonValue, max_bytes: int) -> str:
    """Encode a payload as compact JSON and check its size.

    Raises:
        PayloadNotSerializable: the payload is not JSON (sets, bytes, objects, NaN, ...).
        PayloadTooLarge: the encoding is longer than ``max_bytes`` bytes.
    """
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PayloadNotSerializable(f"payload is not JSON serialisable: {exc}") from exc
    size = len(text.encode())
    if size > max_bytes:
        raise PayloadTooLarge(f"payload is {size} bytes, over the limit of {max_bytes}")
    return text


def _check_name(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    validate_name(value, attr.name)


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise InvalidRequest(f"{attr.name} must be >= 1, got {value}")


@attrs.frozen(kw_only=True)
class EnqueueRequest:
    """A job to add. Sent by the App (or any producer) to ``Transport.enqueue``."""

    kind: str = attrs.field(validator=_check_name)  # handler key, e.g. "email.send"
    payload: JsonValue = None  # the handler's arguments, JSON-encodable
    queue: str = attrs.field(default="default", validator=_check_name)
    priority: int = 0  # lower runs first (0 is normal; negative is urgent)
    run_at: float | None = None  # absolute time; None means now (plus `delay`)
    delay: float = 0.0  # seconds after now; ignored when run_at is given
    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS, validator=_positive)
    dedupe_key: str | None = None  # folds into an active job of the same queue and key

    def __attrs_post_init__(self) -> None:
        if self.delay < 0:
            raise InvalidRequest(f"delay must be >= 0, got {self.delay}")


@attrs.frozen(kw_only=True)
class EnqueueResult:
    """What ``enqueue`` did with one request."""

    job_id: int
    deduplicated: bool  # True: an active job with the same dedupe key already existed


@attrs.frozen(kw_only=True)
class Job:
    """A job as stored. Returned by ``get``, ``list_jobs`` and inside a ``Lease``."""

    id: int
    kind: str
    queue: str
    payload: JsonValue
    state: JobState
    priority: int
    run_at: float
    attempt: int  # claims so far that counted (a snooze or a release gives one back)
    max_attempts: int
    last_error: str | None
    dedupe_key: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    lease_owner: str | None  # worker that holds (or last held) the lease
    lease_expires_at: float | None
    cancel_requested: bool


@attrs.frozen(kw_only=True)
class Lease:
    """Proof of ownership of one running job; the token fences every later call."""

    job: Job  # the job as claimed: state running, attempt already incremented
    token: int  # fencing token, unique per claim of this job; stale once the job is re-claimed
    owner: str
    expires_at: float

    @property
    def job_id(self) -> int:
        return self.job.id


@attrs.frozen(kw_only=True)
class RenewRequest:
    """Extend one lease. Sent by a Heartbeat (batched) to ``Transport.renew``."""

    job_id: int
    token: int


class RenewResult(enum.StrEnum):
    """What a renewal found."""

    RENEWED = "renewed"  # still ours; expiry moved to now + ttl
    LOST = "lost"  # expired, reclaimed, finished, or never ours: stop working on it
    CANCEL_REQUESTED = "cancel_requested"  # still ours and renewed, but cancel was asked


# --- finalize outcomes -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Complete:
    """The handler succeeded."""


@attrs.frozen(kw_only=True)
class Retry:
    """Run again at ``run_at``; becomes ``dead`` when no attempts remain."""

    run_at: float
    error: str | None = None


@attrs.frozen(kw_only=True)
class Snooze:
    """Run again at ``run_at`` without spending an attempt."""

    run_at: float


@attrs.frozen(kw_only=True)
class Discard:
    """End the job as ``dead``: not retryable (or a retry with no attempts left)."""

    error: str


@attrs.frozen(kw_only=True)
class Cancel:
    """End the job as ``cancelled`` (the worker honoured a cancel request)."""

    reason: str | None = None


@attrs.frozen(kw_only=True)
class Release:
    """Give the lease back unfinished: available now, the attempt is not spent (shutdown)."""


Outcome: TypeAlias = Complete | Retry | Snooze | Discard | Cancel | Release


@attrs.frozen(kw_only=True)
class FinalizeRequest:
    """End one claim. Sent by a Worker (batched) to ``Transport.finalize``."""

    job_id: int
    token: int
    outcome: Outcome


class FinalizeResult(enum.StrEnum):
    """Whether a finalize took effect."""

    APPLIED = "applied"
    STALE = "stale"  # the token no longer owns the job: nothing changed


class CancelResult(enum.StrEnum):
    """What ``cancel`` did."""

    CANCELLED = "cancelled"  # it was waiting; now cancelled
    REQUESTED = "requested"  # it is running; its heartbeat will see the request
    ALREADY_FINAL = "already_final"  # it had already finished; nothing changed


@attrs.frozen(kw_only=True)
class Reclaimed:
    """A job whose lease expired and that ``reap`` took back. Reported to the Reaper."""

    job_id: int
    kind: str
    queue: str
    attempt: int  # the attempt that was lost
    lost_by: str  # the lease owner that stopped renewing
    expired_at: float
    state: JobState  # available again, or dead when attempts are exhausted


@attrs.frozen(kw_only=True)
class LeaderLease:
    """Leadership of a named role (cron, cleanup) held by one holder until ``expires_at``."""

    name: str
    holder: str
    epoch: int  # grows every time leadership changes hands
    expires_at: float


@attrs.frozen(kw_only=True)
class QueueConfig:
    """Per-queue settings operators change at run time."""

    name: str = attrs.field(validator=_check_name)
    paused: bool = False
    concurrency: int | None = None  # None: the node's configured default
    retention: float | None = None  # seconds finished jobs are kept; None: the node default


@attrs.frozen(kw_only=True)
class Counts:
    """Number of jobs of one queue in each state."""

    queue: str
    by_state: Mapping[JobState, int] = attrs.field(factory=dict)

    def __getitem__(self, state: JobState) -> int:
        return self.by_state.get(state, 0)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())
