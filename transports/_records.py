"""The records that cross the transport boundary: frozen, keyword-only attrs classes.

Times are POSIX seconds as ``float`` taken from the transport's :class:`TimeSource`, so a
virtual clock drives every backend identically in tests and simulation.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeAlias

import attrs

from ._errors import (
    InvalidRequest,
    PayloadNotSerializable,
    PayloadTooLarge,
    ResultNotSerializable,
    ResultTooLarge,
    StepTooLarge,
)
from ._validate import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    MAX_CONCURRENCY,
    check_event_key,
    check_id,
    check_int,
    check_items,
    check_label,
    check_limit,
    check_name,
    check_time,
    clean_text,
    validate_name,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_RESULT_BYTES",
    "MAX_ERRORS",
    "MAX_ERROR_MESSAGE",
    "MAX_FILTER_IDS",
    "MAX_HEADERS",
    "MAX_PARENTS",
    "MAX_STEP_BYTES",
    "MAX_TRACEBACK",
    "After",
    "AttemptError",
    "Cancel",
    "CancelResult",
    "Complete",
    "Counts",
    "Discard",
    "Edge",
    "EnqueueRequest",
    "EnqueueResult",
    "FinalizeRequest",
    "FinalizeResult",
    "Job",
    "JobFilter",
    "JobState",
    "JsonValue",
    "KeyLimit",
    "LeaderLease",
    "Lease",
    "OnFailure",
    "Outcome",
    "QueueConfig",
    "Reclaimed",
    "Release",
    "RenewRequest",
    "RenewResult",
    "Retry",
    "Signal",
    "SignalResult",
    "Snooze",
    "Step",
    "StepResult",
    "Suspend",
    "TimeSource",
    "WorkflowSummary",
    "check_action",
    "check_listing",
    "check_state",
    "decode_errors",
    "encode_payload",
    "encode_result",
    "encode_step",
    "job_waiter_key",
    "verdict",
]

JsonValue: TypeAlias = Any
"""A value ``json.dumps`` accepts: dict, list, str, int, float, bool or None, nested."""

DEFAULT_MAX_ATTEMPTS = 20
DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576
DEFAULT_MAX_RESULT_BYTES = 262_144

MAX_ERRORS = 20
"""Errors kept with a job: its newest ``MAX_ERRORS`` attempts' errors (older ones are dropped)."""

MAX_ERROR_MESSAGE = 4_000
"""Longest error message kept in a job's error history (its first characters)."""

MAX_TRACEBACK = 4_000
"""Longest traceback kept with an error: its last characters (the innermost frames)."""

MAX_HEADERS = 32
"""Most headers one job may carry (each key and value a label)."""

MAX_FILTER_IDS = 10_000
"""Most job ids one :class:`JobFilter` may name."""

MAX_PARENTS = 10_000
"""Most parents one job may wait for (``EnqueueRequest.after``)."""

MAX_STEP_BYTES = 65_536
"""Longest JSON encoding of a step's result or a signal's value, in bytes."""


class TimeSource(Protocol):
    """Anything with a ``now()`` returning POSIX seconds; an actor ``Clock`` is one."""

    def now(self) -> float: ...


class JobState(enum.StrEnum):
    """Where a job is in its life. Only ``running`` jobs hold a lease."""

    PENDING = "pending"  # waiting for its parents (EnqueueRequest.after); not claimable
    SCHEDULED = "scheduled"  # run_at in the future (first run, retry wait or snooze)
    AVAILABLE = "available"  # claimable now
    RUNNING = "running"  # leased to a worker
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    DEAD = "dead"  # discarded: attempts exhausted or not retryable
    # waiting for an event (``Transport.signal``) or its timeout; active, like the first three
    SUSPENDED = "suspended"

    @property
    def is_active(self) -> bool:
        """True while the job may still run (pending, scheduled, available, running or
        suspended)."""
        return self in _ACTIVE

    @property
    def is_final(self) -> bool:
        """True once the job will never run again."""
        return self not in _ACTIVE


_ACTIVE = frozenset(
    {
        JobState.PENDING,
        JobState.SCHEDULED,
        JobState.AVAILABLE,
        JobState.RUNNING,
        JobState.SUSPENDED,
    }
)


def check_state(state: object) -> JobState | None:
    """A ``list_jobs`` state filter: None, a :class:`JobState` or its value, as a JobState.

    Raises:
        InvalidRequest: not a job state.
    """
    if state is None or type(state) is JobState:
        return state
    try:
        return JobState(state)  # type: ignore[arg-type]  # anything else raises ValueError
    except ValueError:
        raise InvalidRequest(f"state must be one of {', '.join(JobState)}, got {state!r}") from None


def encode_payload(payload: JsonValue, max_bytes: int) -> str:
    """Encode a payload as compact JSON and check its size.

    Raises:
        PayloadNotSerializable: the payload is not JSON (sets, bytes, objects, NaN, ...), or a
            string in it holds NUL or a lone surrogate (which no SQL backend stores).
        PayloadTooLarge: the encoding is longer than ``max_bytes`` bytes.
    """
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadNotSerializable(f"payload is not JSON serialisable: {exc}") from exc
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        raise PayloadNotSerializable("payload holds a lone surrogate, which is not text") from exc
    if _JSON_NUL.search(text) is not None:
        raise PayloadNotSerializable("payload holds a NUL character (\\u0000)")
    if size > max_bytes:
        raise PayloadTooLarge(f"payload is {size} bytes, over the limit of {max_bytes}")
    return text


def encode_result(result: JsonValue, max_bytes: int) -> str | None:
    """Encode a job's result (``Complete.result``) as compact JSON and check its size.

    None (no result) encodes as None: nothing is stored. Otherwise the rules of
    :func:`encode_payload` apply, with the result's own errors.

    Raises:
        ResultNotSerializable: the result is not JSON (or holds NUL or a lone surrogate).
        ResultTooLarge: the encoding is longer than ``max_bytes`` bytes.
    """
    if result is None:
        return None
    try:
        text = encode_payload(result, max_bytes)
    except PayloadTooLarge as exc:
        raise ResultTooLarge(str(exc).replace("payload", "result", 1)) from None
    except PayloadNotSerializable as exc:
        raise ResultNotSerializable(str(exc).replace("payload", "result", 1)) from None
    return text


def job_waiter_key(job_id: int) -> str:
    """The key ``wait_for_jobs`` callers of one job wait under in a backend's waiter registry
    (never a queue name: ``#`` is not a name character)."""
    return f"#{job_id}"


def encode_step(value: JsonValue) -> str:
    """Encode a step's result or a signal's value as compact JSON and check its size.

    Raises:
        PayloadNotSerializable: the value is not JSON (see :func:`encode_payload`).
        StepTooLarge: the encoding is longer than :data:`MAX_STEP_BYTES` bytes.
    """
    try:
        return encode_payload(value, MAX_STEP_BYTES)
    except PayloadTooLarge as exc:
        raise StepTooLarge(str(exc).replace("payload", "value", 1)) from None


# A JSON-escaped NUL: "\u0000" preceded by an even number of backslashes.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# The validators below take a fast path for the common, valid value (a plain int or float in
# range, a name already seen) and leave everything else to the checks of transports._validate,
# which raise the typed error: records are built for every job, lease and renewal.


def _name(what: str) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
        check_name(value, what)

    return check


def _label(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_label(value, attr.name)


def _id(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value.__class__ is not int or not INT64_MIN <= value <= INT64_MAX:
        check_id(value, attr.name)


def _int32(low: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
        if value.__class__ is not int or not low <= value <= INT32_MAX:
            check_int(value, attr.name, low, INT32_MAX)

    return check


def _time(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    # A finite float >= 0 compares between 0 and infinity; NaN compares false.
    if value.__class__ is not float or not 0.0 <= value < math.inf:
        check_time(value, attr.name)


def _optional_time(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (value.__class__ is not float or not 0.0 <= value < math.inf):
        check_time(value, attr.name)


def _headers(value: Any) -> dict[str, str]:
    """A job's headers as stored: a fresh ``dict`` of labels to labels, at most MAX_HEADERS."""
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"headers must be a mapping of strings, got {type(value).__name__}")
    if len(value) > MAX_HEADERS:
        raise InvalidRequest(f"headers hold {len(value)} entries, over the limit of {MAX_HEADERS}")
    for key, item in value.items():
        check_label(key, "a header name")
        check_label(item, f"header {key!r}")
    return dict(value)


def _traceback(value: str | None) -> str | None:
    """A traceback as stored: cleaned like every error text, and only its last characters."""
    text = clean_text(value)
    if text is not None and len(text) > MAX_TRACEBACK:
        text = text[-MAX_TRACEBACK:]
    return text


class OnFailure(enum.StrEnum):
    """What a dependent job does when a parent ends ``dead`` or ``cancelled``."""

    CANCEL = "cancel"  # the dependent ends cancelled too (and so, in turn, do its dependents)
    RUN = "run"  # the dependent runs anyway, once every parent ended


def _on_failure(value: object) -> OnFailure:
    try:
        return OnFailure(value)  # type: ignore[arg-type]  # anything else raises ValueError
    except ValueError:
        raise InvalidRequest(f"on_failure must be 'cancel' or 'run', got {value!r}") from None


def _optional_id(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_id(value, attr.name)


def _optional_index(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_int(value, attr.name, 0, MAX_PARENTS * 100)


@attrs.frozen(kw_only=True)
class After:
    """One parent a job waits for: an existing job (``job_id``) or an earlier request of the
    same ``enqueue_many`` batch (``index``, 0-based); exactly one of the two."""

    job_id: int | None = attrs.field(default=None, validator=_optional_id)
    index: int | None = attrs.field(default=None, validator=_optional_index)
    on_failure: OnFailure = attrs.field(default=OnFailure.CANCEL, converter=_on_failure)

    def __attrs_post_init__(self) -> None:
        if (self.job_id is None) == (self.index is None):
            raise InvalidRequest("After names exactly one of job_id and index")


def _after(value: Any) -> tuple[After, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidRequest(f"after must be a sequence of job ids or After, got {value!r}")
    found: list[After] = []
    for item in value:
        if isinstance(item, After):
            found.append(item)
        else:
            found.append(After(job_id=check_id(item, "a parent job id")))
    if len(found) > MAX_PARENTS:
        raise InvalidRequest(f"after names {len(found)} parents, over the limit of {MAX_PARENTS}")
    return tuple(found)


@attrs.frozen(kw_only=True)
class EnqueueRequest:
    """A job to add. Sent by the App (or any producer) to ``Transport.enqueue``."""

    # Every field is validated here, once for every backend (see transports._validate).

    kind: str = attrs.field(validator=_name("kind"))  # handler key, e.g. "email.send"
    payload: JsonValue = None  # the handler's arguments, JSON-encodable
    queue: str = attrs.field(default="default", validator=_name("queue"))
    # lower runs first (0 is normal; negative is urgent); a signed 32-bit integer
    priority: int = attrs.field(default=0, validator=_int32(INT32_MIN))
    # absolute time (finite, >= 0); None means now (plus `delay`)
    run_at: float | None = attrs.field(default=None, validator=_optional_time)
    delay: float = attrs.field(default=0.0, validator=_time)  # seconds after now, finite, >= 0
    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS, validator=_int32(1))
    # folds into an active job of the same queue and key; a label (see transports._validate)
    dedupe_key: str | None = attrs.field(default=None, validator=_label)
    # small string map stored with the job and returned as is (e.g. a trace context): at most
    # MAX_HEADERS entries, each name and value a label
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers)
    # flow-control key, e.g. "stripe" or "tenant:42": a limit set on it (``set_limit``) caps
    # how many jobs with that key run at once cluster-wide; a label; None: no key
    concurrency_key: str | None = attrs.field(default=None, validator=_label)
    # fair-share partition, e.g. "tenant:42": a claim shares its queue among the partitions
    # of its due jobs, least recently served first (see *Fair share* in transports._base);
    # a label; None: the queue's unpartitioned jobs, one partition together
    partition_key: str | None = attrs.field(default=None, validator=_label)
    # the jobs this one waits for (job ids or After): it is ``pending`` until every one of
    # them succeeded, then due in the same atomic write as the last one's finalize (see
    # *Dependencies* in transports._base); at most MAX_PARENTS; not with a dedupe key
    after: tuple[After, ...] = attrs.field(factory=tuple, converter=_after)
    # the workflow the job belongs to, a label: its jobs are listed, cancelled and kept
    # (cleanup) together; None: none
    workflow: str | None = attrs.field(default=None, validator=_label)

    def __attrs_post_init__(self) -> None:
        if self.after and self.dedupe_key is not None:
            raise InvalidRequest("a job with parents (after) cannot have a dedupe key")


@attrs.frozen(kw_only=True)
class EnqueueResult:
    """What ``enqueue`` did with one request."""

    job_id: int
    deduplicated: bool  # True: an active job with the same dedupe key already existed


@attrs.frozen(kw_only=True)
class AttemptError:
    """Why one attempt of a job failed, kept with the job (see ``Job.errors``).

    Written by the transport: by ``finalize`` for a Retry or Discard that carries an error,
    by ``reap`` for a lost lease, by ``discard_jobs`` for an operator's discard.
    """

    attempt: int  # the job's attempt count when it failed (0: before any claim)
    at: float  # when it was recorded (the transport's now)
    owner: str | None  # the lease owner (worker) that held the attempt; None for an operator
    # the exception class name ("ValueError"), or a fixed name for a cause the runtime or the
    # transport records: "Timeout", "LeaseExpired", "Discarded", "Error" when none was given
    type: str
    message: str  # the error text, its first MAX_ERROR_MESSAGE characters
    traceback: str | None  # the last MAX_TRACEBACK characters of the traceback, if one was given


def decode_result(stored: str | None) -> Any:
    """A stored result, decoded; a value another tool stored malformed reads as None."""
    if stored is None:
        return None
    try:
        return json.loads(stored)
    except ValueError:
        return None


def decode_headers(stored: str) -> dict[str, str]:
    """A job's stored headers (a JSON object); a malformed value reads as no headers."""
    if stored == "{}":
        return {}  # most jobs carry none: no decoding on the claim path
    try:
        headers = json.loads(stored)
    except ValueError:
        return {}
    if not isinstance(headers, dict):
        return {}
    return {str(key): str(value) for key, value in headers.items()}


def decode_errors(stored: object) -> tuple[AttemptError, ...]:
    """A job's error history as a backend stored it (a JSON array, text or decoded).

    An entry another tool stored malformed is skipped, so no stored value crashes a reader.
    """
    if stored == "[]":
        return ()  # most jobs never failed: no decoding on the claim path
    if isinstance(stored, str | bytes):
        try:
            stored = json.loads(stored)
        except ValueError:
            return ()
    if not isinstance(stored, list):
        return ()
    errors: list[AttemptError] = []
    for entry in stored:
        try:
            errors.append(
                AttemptError(
                    attempt=int(entry["attempt"]),
                    at=float(entry["at"]),
                    owner=None if entry.get("owner") is None else str(entry["owner"]),
                    type=str(entry["type"]),
                    message=str(entry["message"]),
                    traceback=None if entry.get("traceback") is None else str(entry["traceback"]),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return tuple(errors)


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
    # the newest error text (a Retry's or Discard's error, a Cancel's reason, a lease lost on
    # the last attempt, an operator's discard reason); None after a Retry without one
    last_error: str | None
    dedupe_key: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    lease_owner: str | None  # worker that holds (or last held) the lease
    lease_expires_at: float | None
    cancel_requested: bool
    started_at: float | None = None  # when the latest claim took it; None: never claimed
    # the errors of its failed attempts, oldest first; at most MAX_ERRORS, the newest
    errors: tuple[AttemptError, ...] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)  # as given to enqueue
    concurrency_key: str | None = None  # the flow-control key given at enqueue, if any
    # what the handler returned, stored by the applied finalize of a Complete (see
    # Complete.result); None until then, and when it returned nothing
    result: JsonValue = None
    wait_key: str | None = None  # the event a suspended job waits for; None unless suspended
    workflow: str | None = None  # the workflow given at enqueue, if any
    partition_key: str | None = None  # the fair-share partition given at enqueue, if any


@attrs.frozen(kw_only=True)
class Edge:
    """One dependency: ``child`` waits for ``parent``. Returned by ``list_edges``."""

    parent: int
    child: int
    on_failure: OnFailure
    # the parent's final state once it ended (succeeded, cancelled, dead; a deleted active
    # parent counts as cancelled); None while it may still run
    parent_state: JobState | None


def verdict(edges: Iterable[tuple[OnFailure, JobState | None]]) -> JobState | None:
    """What a dependent's edges make of it: ``CANCELLED`` when a parent it cancels with
    ended dead or cancelled, None (still ``pending``) while a parent may still run, else
    ``AVAILABLE`` (due, at its ``run_at``). Every backend decides with this rule."""
    waiting = False
    for on_failure, state in edges:
        if state is None:
            waiting = True
        elif state is not JobState.SUCCEEDED and on_failure is OnFailure.CANCEL:
            return JobState.CANCELLED
    return None if waiting else JobState.AVAILABLE


@attrs.frozen(kw_only=True)
class WorkflowSummary:
    """A workflow's jobs by state. Returned by ``list_workflows``."""

    workflow: str
    by_state: Mapping[JobState, int]
    created_at: float  # its first job's
    finished_at: float | None  # its last job's finish, once every job is final; else None

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def is_final(self) -> bool:
        return self.finished_at is not None


@attrs.frozen(kw_only=True)
class Lease:
    """Proof of ownership of one running job; the token fences every later call."""

    job: Job  # the job as claimed: state running, attempt already incremented
    token: int  # fencing token, unique per claim of this job; stale once the job is re-claimed
    owner: str
    expires_at: float
    # when the previous holder's lease on the job expired, if reap took that lease back and
    # no run has ended since (see Transport.claim): the start of the job's recovery
    lost_at: float | None = None

    @property
    def job_id(self) -> int:
        return self.job.id


@attrs.frozen(kw_only=True)
class RenewRequest:
    """Extend one lease. Sent by a Heartbeat (batched) to ``Transport.renew``."""

    job_id: int = attrs.field(validator=_id)  # a signed 64-bit integer
    token: int = attrs.field(validator=_id)  # the claim's fencing token


class RenewResult(enum.StrEnum):
    """What a renewal found."""

    RENEWED = "renewed"  # still ours; expiry moved to now + ttl
    LOST = "lost"  # expired, reclaimed, finished, or never ours: stop working on it
    CANCEL_REQUESTED = "cancel_requested"  # still ours and renewed, but cancel was asked


# --- finalize outcomes -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Complete:
    """The handler succeeded; ``result`` (JSON, at most the transport's ``max_result_bytes``
    encoded; None: nothing) is stored with the job by the applied finalize."""

    result: JsonValue = None


@attrs.frozen(kw_only=True)
class Retry:
    """Run again at ``run_at``; becomes ``dead`` when no attempts remain."""

    run_at: float = attrs.field(validator=_time)  # finite, >= 0
    # stored as last_error and, when not None, in the job's error history
    error: str | None = attrs.field(default=None, converter=clean_text)
    # the exception class name (a label); None: "Error"
    error_type: str | None = attrs.field(default=None, validator=_label)
    # the traceback; only its last MAX_TRACEBACK characters are kept
    traceback: str | None = attrs.field(default=None, converter=_traceback)


@attrs.frozen(kw_only=True)
class Snooze:
    """Run again at ``run_at`` without spending an attempt.

    With ``cool_down``, the job's concurrency key also cools down until ``run_at``: no claim
    on any node starts a job of that key before then (see *Flow control* in
    :mod:`transports._base`). A job without a key cools nothing.
    """

    run_at: float = attrs.field(validator=_time)  # finite, >= 0
    cool_down: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


def _event_key(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
    check_event_key(value)


@attrs.frozen(kw_only=True)
class Suspend:
    """Wait for the event ``event_key`` (see ``Transport.signal``) without spending an attempt.

    The job becomes ``suspended`` until the event is signalled (then ``available`` at once)
    or until ``run_at``, its timeout (then it is due like a scheduled job). When the event was
    signalled already, it is ``available`` at once.
    """

    event_key: str = attrs.field(validator=_event_key)  # an identifier, e.g. "order:42:paid"
    run_at: float = attrs.field(validator=_time)  # the wait's timeout: finite, >= 0


@attrs.frozen(kw_only=True)
class Discard:
    """End the job as ``dead``: not retryable (or a retry with no attempts left)."""

    error: str = attrs.field(converter=clean_text)  # last_error, and in the error history
    # the exception class name (a label); None: "Error"
    error_type: str | None = attrs.field(default=None, validator=_label)
    # the traceback; only its last MAX_TRACEBACK characters are kept
    traceback: str | None = attrs.field(default=None, converter=_traceback)


@attrs.frozen(kw_only=True)
class Cancel:
    """End the job as ``cancelled`` (the worker honoured a cancel request)."""

    reason: str | None = attrs.field(default=None, converter=clean_text)


@attrs.frozen(kw_only=True)
class Release:
    """Give the lease back unfinished: available now, the attempt is not spent (shutdown)."""


Outcome: TypeAlias = Complete | Retry | Snooze | Discard | Cancel | Release | Suspend
_OUTCOMES = (Complete, Retry, Snooze, Discard, Cancel, Release, Suspend)


def _check_outcome(value: object) -> None:
    if not isinstance(value, _OUTCOMES):
        raise InvalidRequest(f"unknown outcome {value!r}")


@attrs.frozen(kw_only=True)
class FinalizeRequest:
    """End one claim. Sent by a Worker (batched) to ``Transport.finalize``."""

    job_id: int = attrs.field(validator=_id)  # a signed 64-bit integer
    token: int = attrs.field(validator=_id)  # the claim's fencing token
    outcome: Outcome = attrs.field(validator=lambda _i, _a, v: _check_outcome(v))


class FinalizeResult(enum.StrEnum):
    """Whether a finalize took effect."""

    APPLIED = "applied"
    STALE = "stale"  # the token no longer owns the job: nothing changed


@attrs.frozen(kw_only=True)
class Step:
    """One recorded step of a job (see ``Transport.record_step``). Returned by ``list_steps``."""

    name: str  # the step's name, unique within its job
    value: JsonValue  # the step's result, as recorded (decoded afresh for every reader)
    attempt: int  # the job's attempt that recorded it
    recorded_at: float  # the store's now when it was recorded


class StepResult(enum.StrEnum):
    """Whether ``record_step`` recorded the step."""

    RECORDED = "recorded"  # stored (or it was stored already: the first value stays)
    STALE = "stale"  # the token no longer holds a live lease on the job: nothing stored


@attrs.frozen(kw_only=True)
class Signal:
    """An event set by ``Transport.signal``. Returned by ``get_signal``."""

    key: str  # the event key
    value: JsonValue  # the first value signalled (decoded afresh for every reader)
    signalled_at: float  # when it was first signalled (the store's now)


@attrs.frozen(kw_only=True)
class SignalResult:
    """What ``Transport.signal`` did."""

    stored: bool  # True: this call set the event; False: it was set already (first value wins)
    woken: tuple[int, ...] = ()  # the suspended jobs it made available, lowest id first


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


def _bool(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{attr.name} must be True or False, got {value!r}")


def _concurrency(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_int(value, attr.name, 0, MAX_CONCURRENCY)


def _global_concurrency(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_int(value, attr.name, 0, INT32_MAX)


@attrs.frozen(kw_only=True)
class QueueConfig:
    """Per-queue settings operators change at run time; validated when built.

    A value no node could honour (a negative concurrency, a NaN retention) raises
    :class:`~transports.InvalidRequest` here, so ``set_queue_config`` never stores one.
    """

    name: str = attrs.field(validator=_name("queue"))
    paused: bool = attrs.field(default=False, validator=_bool)
    # workers per node, 0 .. MAX_CONCURRENCY; None: the node's configured default
    concurrency: int | None = attrs.field(default=None, validator=_concurrency)
    # seconds finished jobs are kept (finite, >= 0); None: the node default
    retention: float | None = attrs.field(default=None, validator=_optional_time)
    # most jobs of the queue holding a live lease at once, cluster-wide, 0 .. 2**31 - 1
    # (enforced by the claim, see Transport.claim); None: no cluster-wide cap
    global_concurrency: int | None = attrs.field(default=None, validator=_global_concurrency)

    @classmethod
    def from_stored(
        cls,
        name: str,
        paused: object,
        concurrency: object,
        retention: object,
        global_concurrency: object = None,
    ) -> QueueConfig | None:
        """A config read back from a store: a field another tool stored out of range reads
        as unset (the node default), and a row whose name is not valid as None (skipped).

        Backends build every config they read with this, so that no stored value, whatever
        wrote it, can crash a node.
        """
        try:
            validate_name(name)
        except InvalidRequest:
            return None
        config = cls(name=name, paused=bool(paused))
        try:
            config = attrs.evolve(config, concurrency=concurrency)  # type: ignore[arg-type]
        except InvalidRequest:
            pass
        try:
            config = attrs.evolve(config, retention=retention)  # type: ignore[arg-type]
        except InvalidRequest:
            pass
        try:
            config = attrs.evolve(config, global_concurrency=global_concurrency)  # type: ignore[arg-type]
        except InvalidRequest:
            pass
        return config


def _states(value: Any) -> tuple[JobState, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidRequest(f"states must be a sequence of job states, got {value!r}")
    found: list[JobState] = []
    for item in value:
        state = check_state(item)
        if state is None:
            raise InvalidRequest("states must not hold None")
        if state not in found:
            found.append(state)
    return tuple(sorted(found, key=_STATE_ORDER.index))


_STATE_ORDER = tuple(JobState)


def _ids(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidRequest(f"ids must be a sequence of job ids, got {value!r}")
    ids = tuple(dict.fromkeys(check_id(item, "a job id") for item in value))
    if len(ids) > MAX_FILTER_IDS:
        raise InvalidRequest(f"ids name {len(ids)} jobs, over the limit of {MAX_FILTER_IDS}")
    return ids


def _optional_name(what: str) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check_name(value, what)

    return check


def _bound(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_time(value, attr.name, minimum=None)


@attrs.frozen(kw_only=True)
class JobFilter:
    """Which jobs an operator lists or acts on: every given field must match (AND).

    Sent to ``list_jobs``, ``retry_jobs``, ``discard_jobs``, ``delete_jobs`` and
    ``cancel_jobs``; validated when built, so every backend refuses the same values
    (:class:`~transports.InvalidQueueName` for a bad queue or kind,
    :class:`~transports.InvalidRequest` for the rest). ``JobFilter()`` matches every job.
    """

    queue: str | None = attrs.field(default=None, validator=_optional_name("queue"))
    kind: str | None = attrs.field(default=None, validator=_optional_name("kind"))
    # any of these states (as jobs read: a scheduled job whose time has come is available);
    # empty: any state
    states: tuple[JobState, ...] = attrs.field(default=(), converter=_states)
    # only these jobs (at most MAX_FILTER_IDS); None: any id
    ids: tuple[int, ...] | None = attrs.field(default=None, converter=_ids)
    created_after: float | None = attrs.field(default=None, validator=_bound)  # >= this time
    created_before: float | None = attrs.field(default=None, validator=_bound)  # < this time
    # finished_at >= this time (so only final jobs match)
    finished_after: float | None = attrs.field(default=None, validator=_bound)
    # finished_at < this time (so only final jobs match)
    finished_before: float | None = attrs.field(default=None, validator=_bound)
    # last_error holds this text, ignoring the case of ASCII letters; a label
    error: str | None = attrs.field(default=None, validator=_label)
    # only the jobs of this workflow (a label)
    workflow: str | None = attrs.field(default=None, validator=_label)

    @classmethod
    def one(cls, job_id: int) -> JobFilter:
        """The filter of one job."""
        return cls(ids=(job_id,))


@attrs.frozen(kw_only=True)
class KeyLimit:
    """A flow-control key's limit and its current use. Returned by ``list_limits``."""

    key: str  # the concurrency key jobs name at enqueue
    # most jobs with this key holding a live lease at once, cluster-wide; None: no cap
    concurrency: int | None
    running: int  # jobs with this key holding a live (unexpired) lease now
    waiting: int  # jobs with this key scheduled or available now
    rate: int | None = None  # most starts of the key in any window of ``per`` seconds
    per: float | None = None  # the rate's window, seconds (set with ``rate``)
    started: int = 0  # starts of the key in the window ending now (0 without a rate)
    cooldown_until: float | None = None  # a cool-down holding the key until then, if live


#: The most waiting jobs ``list_partitions`` counts in one partition (more read as this).
MAX_PARTITION_COUNT = 10_000


@attrs.frozen(kw_only=True)
class PartitionInfo:
    """A fair-share partition of a queue with waiting jobs. Returned by ``list_partitions``."""

    queue: str
    key: str  # the partition key its jobs name at enqueue
    # its jobs scheduled, available or suspended, counted up to MAX_PARTITION_COUNT
    waiting: int
    running: int  # its jobs holding a lease (live or expired, not yet reaped)
    # when a claim last started one of its jobs (its last turn); None: never, or forgotten
    served_at: float | None = None


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


def check_listing(
    where: object, after_id: object, before_id: object, newest_first: object, limit: object
) -> JobFilter:
    """The arguments of ``Transport.list_jobs``; returns the filter (``JobFilter()`` for None).

    Raises:
        InvalidRequest: a bad filter, cursor, ``newest_first`` or ``limit``.
    """
    if where is None:
        where = _EVERY_JOB
    check_items([where], JobFilter, "where")
    if after_id is not None:
        check_id(after_id, "after_id")
    if before_id is not None:
        check_id(before_id, "before_id")
    if not isinstance(newest_first, bool):
        raise InvalidRequest(f"newest_first must be True or False, got {newest_first!r}")
    check_limit(limit)
    return where  # type: ignore[return-value]  # checked just above


def check_action(where: object, limit: object) -> JobFilter:
    """The arguments of an operator action (``retry_jobs`` ...); returns the filter.

    Raises:
        InvalidRequest: ``where`` is not a :class:`JobFilter`, or a bad ``limit``.
    """
    check_items([where], JobFilter, "where")
    check_limit(limit)
    return where  # type: ignore[return-value]  # checked just above


_EVERY_JOB = JobFilter()
