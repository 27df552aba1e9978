"""The one validation of every value that crosses the transport boundary, for every backend.

The request records (:mod:`transports._records`) run these checks as attrs validators when they
are built; the backends call the ``check_*`` functions on their plain arguments first thing, so
memory, SQLite and PostgreSQL accept and refuse exactly the same values, with the same error,
before anything is written. The policy (also stated on :class:`~transports.Transport`):

* **Identifiers** (queue, kind, leader, cursor, schedule names): 1 to :data:`MAX_NAME_LENGTH`
  characters of ``[A-Za-z0-9_.:-]``, ASCII only; otherwise :class:`~transports.InvalidQueueName`.
* **Labels** (dedupe keys, lease owners, leader holders): 1 to :data:`MAX_LABEL_LENGTH`
  characters of any script, but no control character (Unicode category Cc, NUL included) and no
  lone surrogate; otherwise :class:`~transports.InvalidRequest`.
* **Error texts** (``Retry.error``, ``Discard.error``, ``Cancel.reason``) are kept as given,
  except that NUL and lone surrogates (which no SQL backend can store) become U+FFFD.
* **Integers**: ``int`` (never ``bool``). Ids and tokens fit a signed 64-bit integer;
  priorities, attempt counts and limits a signed 32-bit one (the width every backend stores).
* **Times and durations**: ``int`` or ``float``, finite (no NaN, no infinity). Delays,
  ``run_at`` and retention are ``>= 0``; TTLs ``> 0``; cursor values and ``finished_before``
  any finite number.
* **Steps and signals**: a step name is a label and an event key an identifier, else
  :class:`~transports.InvalidStepName`.
* **Queue settings**: ``concurrency`` ``None`` or ``0 ..`` :data:`MAX_CONCURRENCY`,
  ``retention`` ``None`` or finite ``>= 0``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any, TypeGuard

from ._errors import InvalidQueueName, InvalidRequest, InvalidStepName

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_CONCURRENCY",
    "MAX_LABEL_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_RATE_WINDOW",
    "check_advance",
    "check_claim",
    "check_cleanup",
    "check_cursor",
    "check_duration",
    "check_edges_query",
    "check_event_key",
    "check_id",
    "check_int",
    "check_items",
    "check_job_ids",
    "check_label",
    "check_leader",
    "check_limit",
    "check_name",
    "check_node_id",
    "check_optional_name",
    "check_partitions_query",
    "check_queues",
    "check_release",
    "check_set_limit",
    "check_stats_range",
    "check_step_name",
    "check_time",
    "check_workflows_query",
    "clean_text",
    "validate_name",
]

MAX_NAME_LENGTH = 128
"""Longest identifier (queue, kind, leader, cursor name)."""

MAX_LABEL_LENGTH = 255
"""Longest label (dedupe key, lease owner, leader holder)."""

MAX_CONCURRENCY = 10_000
"""Most workers a queue config may ask one node for."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_NAME_RE = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_NAME_LENGTH}}}")
_LABEL_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_BAD = re.compile("[\x00\ud800-\udfff]")


def _shown(value: object) -> str:
    """A value for an error message: its repr, cut short so a message stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_name(name: str, what: str = "queue") -> str:
    """Return ``name`` if it is a valid identifier (queue, kind, leader, cursor name).

    Raises:
        InvalidQueueName: the name is not a string of 1 to 128 characters of
            ``[A-Za-z0-9_.:-]`` (ASCII only, which keeps whitespace and SQL metacharacters out).
    """
    if type(name) is not str or _NAME_RE.fullmatch(name) is None:
        raise InvalidQueueName(
            f"invalid {what} name {_shown(name)}: use 1-{MAX_NAME_LENGTH} of [A-Za-z0-9_.:-]"
        )
    return name


def check_label(value: object, what: str) -> str:
    """Return ``value`` if it is a valid label (dedupe key, lease owner, leader holder).

    Raises:
        InvalidRequest: not a string of 1 to 255 characters, or it holds a control character
            or a lone surrogate.
    """
    if type(value) is not str or not 0 < len(value) <= MAX_LABEL_LENGTH:
        raise InvalidRequest(
            f"{what} must be a string of 1-{MAX_LABEL_LENGTH} characters, got {_shown(value)}"
        )
    if _LABEL_BAD.search(value) is not None:
        raise InvalidRequest(f"{what} must not hold control characters, got {_shown(value)}")
    return value


def clean_text(value: str | None) -> str | None:
    """An error text as it will be stored: NUL and lone surrogates become U+FFFD."""
    if value is None:
        return None
    if type(value) is not str:
        raise InvalidRequest(f"an error text must be a string, got {_shown(value)}")
    return _TEXT_BAD.sub("\ufffd", value)


def _is_int(value: object) -> TypeGuard[int]:
    # An IntEnum is an int; a bool is not taken for one.
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, what: str, low: int, high: int) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) with ``low <= value <= high``.

    Raises:
        InvalidRequest: otherwise.
    """
    if not _is_int(value) or not low <= value <= high:
        raise InvalidRequest(f"{what} must be an integer from {low} to {high}, got {_shown(value)}")
    return value


def check_id(value: object, what: str = "job_id") -> int:
    """Return ``value`` if it is an ``int`` that fits a signed 64-bit integer.

    Raises:
        InvalidRequest: otherwise.
    """
    if not _is_int(value) or not INT64_MIN <= value <= INT64_MAX:
        raise InvalidRequest(f"{what} must be a 64-bit integer, got {_shown(value)}")
    return value


def check_limit(value: object, what: str = "limit") -> int:
    """Return ``value`` if it is an ``int`` from 1 to the largest signed 32-bit integer.

    Raises:
        InvalidRequest: otherwise.
    """
    return check_int(value, what, 1, INT32_MAX)


def _finite(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidRequest(f"{what} must be a number, got {_shown(value)}")
    if not math.isfinite(value):
        raise InvalidRequest(f"{what} must be finite, got {value}")
    return value


def check_time(value: object, what: str, *, minimum: float | None = 0.0) -> float:
    """Return ``value`` if it is a finite number ``>= minimum`` (any finite one for None).

    Raises:
        InvalidRequest: a bool, a non-number, NaN, an infinity, or below ``minimum``.
    """
    number = _finite(value, what)
    if minimum is not None and number < minimum:
        raise InvalidRequest(f"{what} must be >= {minimum}, got {number}")
    return number


def check_duration(value: object, what: str = "ttl") -> float:
    """Return ``value`` if it is a finite number ``> 0`` (a TTL).

    Raises:
        InvalidRequest: otherwise.
    """
    number = _finite(value, what)
    if not number > 0:
        raise InvalidRequest(f"{what} must be > 0, got {number}")
    return number


def check_queues(queues: Sequence[str]) -> Sequence[str]:
    """Return ``queues`` if it is a sequence (not a string) of valid queue names.

    Raises:
        InvalidRequest: ``queues`` is a single string (it would be read as its letters).
        InvalidQueueName: one of them is not a valid name.
    """
    if isinstance(queues, str | bytes):
        raise InvalidRequest(f"queues must be a sequence of names, not the string {queues!r}")
    for queue in queues:
        validate_name(queue)
    return queues


def check_job_ids(job_ids: object) -> list[int]:
    """Return ``job_ids`` as a list if it is a sequence (not a string) of valid job ids.

    Raises:
        InvalidRequest: not a sequence, or one of them is not a job id.
    """
    if isinstance(job_ids, str | bytes) or not isinstance(job_ids, Sequence):
        raise InvalidRequest(f"job_ids must be a sequence of job ids, got {job_ids!r}")
    return [check_id(job_id, "a job id") for job_id in job_ids]


MAX_EDGE_IDS = 10_000
"""Most job ids one ``list_edges`` call may name."""


def check_edges_query(job_ids: object, workflow: object) -> tuple[list[int] | None, str | None]:
    """The arguments of ``list_edges``: job ids (at most MAX_EDGE_IDS) and/or a workflow.

    Raises:
        InvalidRequest: neither is given, the ids are not job ids, or the workflow no label.
    """
    if job_ids is None and workflow is None:
        raise InvalidRequest("list_edges needs job_ids or a workflow")
    ids = None if job_ids is None else check_job_ids(job_ids)
    if ids is not None and len(ids) > MAX_EDGE_IDS:
        raise InvalidRequest(f"job_ids name {len(ids)} jobs, over the limit of {MAX_EDGE_IDS}")
    if workflow is not None:
        check_label(workflow, "workflow")
    return ids, workflow  # type: ignore[return-value]  # checked just above


def check_partitions_query(queue: object, after: object, limit: object) -> None:
    """The arguments of ``list_partitions``: a queue name, a label cursor (or None), a limit.

    Raises:
        InvalidQueueName: a bad queue name.
        InvalidRequest: a bad cursor or limit.
    """
    check_name(queue)
    if after is not None:
        check_label(after, "after")
    check_limit(limit)


def check_workflows_query(workflow: object, after: object, limit: object) -> None:
    """The arguments of ``list_workflows``: labels (or None) and a limit.

    Raises:
        InvalidRequest: a bad workflow, cursor or limit.
    """
    if workflow is not None:
        check_label(workflow, "workflow")
    if after is not None:
        check_label(after, "after")
    check_limit(limit)


@functools.lru_cache(maxsize=4096)
def _known_name(name: str, what: str) -> str:
    # Claims and waits repeat a handful of names; only valid ones are cached (errors are not).
    return validate_name(name, what)


def check_name(name: object, what: str = "queue") -> str:
    """:func:`validate_name`, cached for the names a node repeats in every call."""
    if type(name) is not str:
        return validate_name(name, what)  # type: ignore[arg-type]
    return _known_name(name, what)


def check_optional_name(name: object, what: str = "queue") -> None:
    """A filter name: None (no filter) or a valid name."""
    if name is not None:
        check_name(name, what)


def check_claim(queue: object, owner: object, limit: object, ttl: object) -> None:
    """The arguments of ``Transport.claim``."""
    check_name(queue)
    check_label(owner, "owner")
    check_limit(limit)
    check_duration(ttl)


def check_leader(name: object, holder: object, ttl: object) -> None:
    """The arguments of ``acquire_leader``."""
    check_name(name, "leader")
    check_label(holder, "holder")
    check_duration(ttl)


def check_release(name: object, holder: object) -> None:
    """The arguments of ``release_leader``."""
    check_name(name, "leader")
    check_label(holder, "holder")


def check_cursor(name: object) -> None:
    """The name given to ``get_cursor``."""
    check_name(name, "cursor")


def check_advance(name: object, expected: object, new: object) -> None:
    """The arguments of ``advance_cursor``: a name, a finite ``new`` and a finite (or None)
    ``expected``."""
    check_name(name, "cursor")
    if expected is not None:
        check_time(expected, "expected", minimum=None)
    check_time(new, "new", minimum=None)


def check_cleanup(finished_before: object, queue: object, limit: object) -> None:
    """The arguments of ``Transport.cleanup``."""
    check_time(finished_before, "finished_before", minimum=None)
    check_optional_name(queue)
    check_limit(limit)


MAX_RATE_WINDOW = 86_400.0 * 366
"""Longest rate window (``per``) a limit may name, seconds: a year."""


def check_set_limit(
    key: object, concurrency: object, rate: object = None, per: object = None
) -> None:
    """Check the arguments of ``Transport.set_limit``.

    Raises:
        InvalidRequest: ``key`` is not a label; ``concurrency`` is neither None nor an
            integer from 0 to the largest signed 32-bit integer; ``rate`` is neither None nor
            an integer from 1 to that; ``per`` is not a finite number of seconds above 0 and
            at most ``MAX_RATE_WINDOW``; or only one of ``rate`` and ``per`` is given.
    """
    check_label(key, "key")
    if concurrency is not None:
        check_int(concurrency, "concurrency", 0, INT32_MAX)
    if (rate is None) != (per is None):
        raise InvalidRequest("rate and per go together: give both, or neither")
    if rate is not None:
        check_int(rate, "rate", 1, INT32_MAX)
        window = check_duration(per, "per")
        if window > MAX_RATE_WINDOW:
            raise InvalidRequest(f"per must be at most {MAX_RATE_WINDOW:g} seconds, got {window}")


def check_items(items: Any, cls: type, what: str) -> None:
    """Refuse a batch that is not a sequence of ``cls`` records."""
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise InvalidRequest(f"{what} must be a sequence of {cls.__name__}, got {_shown(items)}")
    for item in items:
        if not isinstance(item, cls):
            raise InvalidRequest(f"{what} must hold {cls.__name__} records, got {_shown(item)}")


def check_node_id(node_id: object) -> str:
    """A node id given to ``node_heartbeat`` or ``forget_node``: a label."""
    return check_label(node_id, "node_id")


def check_stats_range(queue: object, since: object, until: object) -> None:
    """The filters of ``Transport.list_stats``: an optional queue, optional finite bounds."""
    check_optional_name(queue)
    if since is not None:
        check_time(since, "since", minimum=None)
    if until is not None:
        check_time(until, "until", minimum=None)


def check_step_name(name: object) -> str:
    """Return ``name`` if it is a valid step name (a label).

    Raises:
        InvalidStepName: not a string of 1 to 255 characters, or it holds a control character
            or a lone surrogate.
    """
    try:
        return check_label(name, "a step name")
    except InvalidRequest as exc:
        raise InvalidStepName(str(exc)) from None


def check_event_key(key: object) -> str:
    """Return ``key`` if it is a valid event key (an identifier, e.g. ``order:42:paid``).

    Raises:
        InvalidStepName: not a string of 1 to 128 characters of ``[A-Za-z0-9_.:-]``.
    """
    if type(key) is not str or _NAME_RE.fullmatch(key) is None:
        raise InvalidStepName(
            f"invalid event key {_shown(key)}: use 1-{MAX_NAME_LENGTH} of [A-Za-z0-9_.:-]"
        )
    return key
