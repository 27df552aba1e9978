"""Bad values for every operation of the contract: each refused with its exact error type.

:class:`TransportEdges` is mixed into :class:`~transports.testing.TransportConformance`, so
every backend runs it on both event loops. One test per operation walks that operation's table:
each row is a call with one bad value; it must raise exactly the listed error class (not merely
a subclass or a parent of it) and leave the store exactly as it was (jobs, counts, queue
settings, cursors, leader leases). Rows marked as accepted are the edge values just inside each
limit, which must work, so a limit cannot be off by one in either direction.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import anyio
import attrs
import pytest

from .._base import Transport
from .._errors import (
    DependencyCycle,
    InvalidQueueName,
    InvalidRequest,
    JobNotFound,
    PayloadNotSerializable,
    PayloadTooLarge,
    ResultNotSerializable,
    ResultTooLarge,
    TransportError,
    UnknownDependency,
)
from .._observed import MINUTE, NodeInfo, QueueStats
from .._records import (
    MAX_FILTER_IDS,
    MAX_HEADERS,
    After,
    Complete,
    Discard,
    EnqueueRequest,
    FinalizeRequest,
    JobFilter,
    JobState,
    Lease,
    QueueConfig,
    RenewRequest,
    Retry,
    Snooze,
)
from .._validate import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    MAX_CONCURRENCY,
    MAX_RATE_WINDOW,
)
from ._clock import ManualClock

__all__ = ["TransportEdges"]

TTL = 30.0

# Identifiers: ASCII [A-Za-z0-9_.:-], 1-128 characters.
BAD_IDENTIFIERS: list[Any] = [
    "",
    " ",
    "has space",
    "x" * 129,
    "tab\tq",
    "new\nline",
    "nul\x00q",
    "é",
    "日本",
    "semi;colon",
    "quo'te",
    'quo"te',
    "x'; DROP TABLE jobs;--",
    None,
    5,
    b"q",
]
GOOD_IDENTIFIERS = ["x" * 128, "a", "Mail.send:v2-x_y"]

# Labels (dedupe keys, owners, holders): 1-255 characters, no control character.
BAD_LABELS: list[Any] = ["", "x" * 256, "nul\x00", "new\nline", "del\x7f", "\ud800", None, 5]
GOOD_LABELS = ["x" * 255, "ключ-ü 日本 ada@example.com", "with space"]

BAD_INT32: list[Any] = [INT32_MAX + 1, INT32_MIN - 1, 10**30, 1.5, "1", True, None]
BAD_TIMES: list[Any] = [math.nan, math.inf, -math.inf, -1.0, "5", True, None]
BAD_FINITE: list[Any] = [math.nan, math.inf, -math.inf, "5", True]
BAD_TTLS: list[Any] = [0, 0.0, -1.0, math.nan, math.inf, "30", True, None]
BAD_LIMITS: list[Any] = [0, -1, INT32_MAX + 1, 10**30, 1.5, "1", True, None]
BAD_IDS: list[Any] = [INT64_MAX + 1, INT64_MIN - 1, 10**30, "1", 1.0, True, None]


class _Circular(list[Any]):
    """A list that contains itself: JSON cannot encode it."""


def _circular() -> list[Any]:
    value: list[Any] = _Circular()
    value.append(value)
    return value


NOT_JSON: list[Any] = [
    {1, 2},
    b"bytes",
    math.nan,
    {"inf": math.inf},
    object(),
    {"k": {1}},
    "nul\x00",
    {"text": "a\x00b"},
    ["\ud800"],
    {"\udfff": 1},
]
GOOD_PAYLOADS: list[Any] = ["\\u0000 is six characters", {"ü": "日本"}, 10**30, -(2**70)]


@attrs.frozen
class Row:
    """One call of an edge table."""

    what: str  # the value tried, for the failure message
    call: Callable[[Transport], Awaitable[Any]]
    error: type[TransportError] | None  # the exact error class; None: must be accepted


@attrs.frozen
class Seed:
    """What every edge test starts from."""

    waiting: int  # an available job's id
    lease: Lease  # a running job's lease


def _enqueue_rows(max_payload_bytes: int) -> list[Row]:
    def enqueue(what: str, error: type[TransportError] | None, **fields: Any) -> Row:
        fields.setdefault("kind", "edge.job")
        fields.setdefault("queue", "edges")

        async def call(t: Transport) -> Any:
            return await t.enqueue(EnqueueRequest(**fields))

        return Row(what, call, error)

    rows = []
    for name in BAD_IDENTIFIERS:
        rows.append(enqueue(f"kind={name!r}", InvalidQueueName, kind=name))
        rows.append(enqueue(f"queue={name!r}", InvalidQueueName, queue=name))
    for name in GOOD_IDENTIFIERS:
        rows.append(enqueue(f"kind={name!r}", None, kind=name))
        rows.append(enqueue(f"queue={name!r}", None, queue=name))
    for value in BAD_INT32:
        rows.append(enqueue(f"priority={value!r}", InvalidRequest, priority=value))
    for value in [INT32_MAX, INT32_MIN]:
        rows.append(enqueue(f"priority={value!r}", None, priority=value))
    for value in [0, -1, INT32_MAX + 1, 10**30, 2.0, "3", True]:
        rows.append(enqueue(f"max_attempts={value!r}", InvalidRequest, max_attempts=value))
    for value in [1, INT32_MAX]:
        rows.append(enqueue(f"max_attempts={value!r}", None, max_attempts=value))
    for value in BAD_TIMES:
        if value is not None:
            rows.append(enqueue(f"delay={value!r}", InvalidRequest, delay=value))
            rows.append(enqueue(f"run_at={value!r}", InvalidRequest, run_at=value))
    rows.append(enqueue("delay=0", None, delay=0))
    rows.append(enqueue("run_at=0.0 (the epoch, long due)", None, run_at=0.0))
    for value in BAD_LABELS:
        if value is not None:
            rows.append(enqueue(f"dedupe_key={value!r}", InvalidRequest, dedupe_key=value))
    for value in GOOD_LABELS:
        rows.append(enqueue(f"dedupe_key={value!r}", None, dedupe_key=value))
    for value in BAD_LABELS:
        if value is not None:
            rows.append(
                enqueue(f"concurrency_key={value!r}", InvalidRequest, concurrency_key=value)
            )
    for value in GOOD_LABELS:
        rows.append(enqueue(f"concurrency_key={value!r}", None, concurrency_key=value))
    for value in BAD_LABELS:
        if value is not None:
            rows.append(enqueue(f"partition_key={value!r}", InvalidRequest, partition_key=value))
    for value in GOOD_LABELS:
        rows.append(enqueue(f"partition_key={value!r}", None, partition_key=value))
    for headers in [
        "a=b",
        [("a", "b")],
        {"": "v"},
        {"k": ""},
        {"k": "new\nline"},
        {"k\x00": "v"},
        {"k": 5},
        {5: "v"},
        {f"h{i}": "v" for i in range(MAX_HEADERS + 1)},
    ]:
        rows.append(enqueue(f"headers={headers!r}"[:80], InvalidRequest, headers=headers))
    rows.append(
        enqueue(
            f"headers of {MAX_HEADERS} labels",
            None,
            headers={f"h{i}-{'x' * 250}": "v" * 255 for i in range(MAX_HEADERS)},
        )
    )
    for payload in [*NOT_JSON, _circular()]:
        shown = type(payload).__name__ if isinstance(payload, _Circular) else repr(payload)
        rows.append(enqueue(f"payload={shown}", PayloadNotSerializable, payload=payload))
    for payload in GOOD_PAYLOADS:
        rows.append(enqueue(f"payload={payload!r}", None, payload=payload))
    big = "x" * max_payload_bytes  # its JSON encoding has two quotes more
    rows.append(enqueue("payload over max_payload_bytes", PayloadTooLarge, payload=big))
    rows.append(enqueue("payload of max_payload_bytes", None, payload=big[2:]))

    async def one_bad_in_a_batch(t: Transport) -> Any:
        good = EnqueueRequest(kind="edge.job", queue="edges")
        return await t.enqueue_many([good, EnqueueRequest(kind="edge.job", payload={1})])

    async def not_a_sequence(t: Transport) -> Any:
        return await t.enqueue_many(EnqueueRequest(kind="edge.job"))  # type: ignore[arg-type]

    async def not_requests(t: Transport) -> Any:
        return await t.enqueue_many([{"kind": "edge.job"}])  # type: ignore[list-item]

    rows += [
        Row("a batch with one bad payload", one_bad_in_a_batch, PayloadNotSerializable),
        Row("enqueue_many(one request, not a list)", not_a_sequence, InvalidRequest),
        Row("enqueue_many([a dict])", not_requests, InvalidRequest),
    ]
    return rows


def _claim_rows() -> list[Row]:
    def claim(what: str, error: type[TransportError] | None, **args: Any) -> Row:
        args = {"queue": "edges", "owner": "w", "limit": 1, "ttl": TTL, **args}

        async def call(t: Transport) -> Any:
            queue = args.pop("queue")
            return await t.claim(queue, **args)

        return Row(what, call, error)

    rows = [claim(f"queue={name!r}", InvalidQueueName, queue=name) for name in BAD_IDENTIFIERS]
    rows += [claim(f"owner={value!r}", InvalidRequest, owner=value) for value in BAD_LABELS]
    rows += [claim(f"limit={value!r}", InvalidRequest, limit=value) for value in BAD_LIMITS]
    rows += [claim(f"ttl={value!r}", InvalidRequest, ttl=value) for value in BAD_TTLS]
    rows += [claim(f"owner={value!r}", None, owner=value) for value in GOOD_LABELS]
    rows += [claim("limit=2**31-1", None, limit=INT32_MAX)]
    return rows


def _later(build: Callable[..., Any], *args: Any, **fields: Any) -> Callable[[], Any]:
    """``build(*args, **fields)`` when called: a record whose construction is the bad call."""
    return lambda: build(*args, **fields)


def _op(method: str, *args: Any, **kwargs: Any) -> Callable[[Transport], Awaitable[Any]]:
    """Call ``transport.<method>(*args, **kwargs)``."""

    async def call(transport: Transport) -> Any:
        return await getattr(transport, method)(*args, **kwargs)

    return call


def _renew_rows(seed: Seed) -> list[Row]:
    live = RenewRequest(job_id=seed.lease.job_id, token=seed.lease.token)

    def renew(what: str, make: Callable[[], Any], ttl: Any) -> Row:
        async def call(t: Transport) -> Any:
            return await t.renew(make(), ttl=ttl)

        return Row(what, call, InvalidRequest)

    rows = [renew(f"ttl={value!r}", lambda: [live], value) for value in BAD_TTLS]
    for value in BAD_IDS:
        rows.append(renew(f"job_id={value!r}", _later(_renewals, job_id=value, token=1), TTL))
        rows.append(renew(f"token={value!r}", _later(_renewals, job_id=1, token=value), TTL))
    rows.append(renew("requests=[a tuple]", lambda: [(1, 1)], TTL))
    rows.append(renew("requests=a single request", lambda: live, TTL))
    return rows


def _renewals(**fields: Any) -> list[RenewRequest]:
    return [RenewRequest(**fields)]


def _finalize_rows(seed: Seed) -> list[Row]:
    lease = seed.lease

    def finalize(what: str, make: Callable[[], Any]) -> Row:
        async def call(t: Transport) -> Any:
            return await t.finalize(make())

        return Row(what, call, InvalidRequest)

    def live(outcome: Any) -> list[FinalizeRequest]:
        return [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]

    def live_later(build: Callable[..., Any], **fields: Any) -> Callable[[], Any]:
        return lambda: live(build(**fields))

    rows = []
    for value in BAD_IDS:
        rows.append(finalize(f"job_id={value!r}", _later(_completions, job_id=value, token=1)))
        rows.append(finalize(f"token={value!r}", _later(_completions, job_id=1, token=value)))
    for outcome in ["complete", None, Complete, {"type": "complete"}]:
        rows.append(finalize(f"outcome={outcome!r}", _later(live, outcome)))
    for value in BAD_LABELS:
        if value is not None:
            rows.append(
                finalize(
                    f"Retry(error_type={value!r})",
                    live_later(Retry, run_at=0.0, error="e", error_type=value),
                )
            )
            rows.append(
                finalize(
                    f"Discard(error_type={value!r})",
                    live_later(Discard, error="e", error_type=value),
                )
            )
    for value in [5, b"tb"]:
        rows.append(
            finalize(f"Retry(traceback={value!r})", live_later(Retry, run_at=0.0, traceback=value))
        )
    for value in BAD_TIMES:
        rows.append(finalize(f"Retry(run_at={value!r})", live_later(Retry, run_at=value)))
        rows.append(finalize(f"Snooze(run_at={value!r})", live_later(Snooze, run_at=value)))

    def live_then_bad() -> list[Any]:
        return [
            *live(Complete()),
            FinalizeRequest(job_id=1, token=1, outcome=Retry(run_at=math.nan)),
        ]

    def live_then_junk() -> list[Any]:
        return [*live(Complete()), "complete"]

    rows.append(finalize("the live lease, then a NaN retry", live_then_bad))
    rows.append(finalize("the live lease, then a string", live_then_junk))

    def result(what: str, value: Any, error: type[TransportError]) -> Row:
        async def call(t: Transport) -> Any:
            return await t.finalize(live(Complete(result=value)))

        return Row(f"Complete(result={what})", call, error)

    def result_of_size(size: int) -> Callable[[Transport], str]:
        return lambda t: "x" * (t.max_result_bytes - 2 + size)  # its JSON: two quotes more

    def sized(what: str, extra: int, error: type[TransportError] | None) -> Row:
        async def call(t: Transport) -> Any:
            return await t.finalize(live(Complete(result=result_of_size(extra)(t))))

        return Row(f"Complete(result={what})", call, error)

    rows += [result(repr(value), value, ResultNotSerializable) for value in NOT_JSON_VALUES]
    rows += [
        result("'a\\x00b' (NUL)", "a\x00b", ResultNotSerializable),
        result("'\\ud800' (a lone surrogate)", "\ud800", ResultNotSerializable),
        sized("one byte over max_result_bytes", 1, ResultTooLarge),
    ]

    async def good_then_too_large(t: Transport) -> Any:
        other = FinalizeRequest(
            job_id=1, token=1, outcome=Complete(result="x" * t.max_result_bytes)
        )
        return await t.finalize([*live(Complete(result=1)), other])

    rows.append(
        Row("a good Complete, then a result too large", good_then_too_large, ResultTooLarge)
    )
    return rows


NOT_JSON_VALUES: list[Any] = [{1, 2}, b"bytes", math.nan, {"k": object()}]


def _dependency_rows(seed: Seed) -> list[Row]:
    def batch(what: str, error: type[TransportError], make: Callable[[], list[Any]]) -> Row:
        async def call(t: Transport) -> Any:
            return await t.enqueue_many(make())

        return Row(what, call, error)

    def job(**fields: Any) -> EnqueueRequest:
        return EnqueueRequest(kind="edge.job", queue="edges", **fields)

    def edges(what: str, error: type[TransportError], *args: Any, **kw: Any) -> Row:
        async def call(t: Transport) -> Any:
            return await t.list_edges(*args, **kw)

        return Row(f"list_edges({what})", call, error)

    def workflows(what: str, **kw: Any) -> Row:
        async def call(t: Transport) -> Any:
            return await t.list_workflows(**kw)

        return Row(f"list_workflows({what})", call, InvalidRequest)

    rows = [
        batch("after an unknown job", UnknownDependency, lambda: [job(after=[INT64_MAX])]),
        batch(
            "a good job, then one after the waiting job and an unknown one",
            UnknownDependency,
            lambda: [job(), job(after=[seed.waiting, 10**12])],
        ),
        batch("after itself (index 0)", DependencyCycle, lambda: [job(after=[After(index=0)])]),
        batch(
            "after a later request",
            DependencyCycle,
            lambda: [job(after=[After(index=1)]), job()],
        ),
        batch("after with a dedupe key", InvalidRequest, lambda: [job(after=[1], dedupe_key="k")]),
        batch("after='12' (a string)", InvalidRequest, lambda: [job(after="12")]),
        batch("after=[True]", InvalidRequest, lambda: [job(after=[True])]),
        batch("After(job_id=1, index=0)", InvalidRequest, lambda: [After(job_id=1, index=0)]),
        batch("After() (neither)", InvalidRequest, lambda: [After()]),
        batch("After(index=-1)", InvalidRequest, lambda: [After(index=-1)]),
        batch("on_failure='maybe'", InvalidRequest, lambda: [After(job_id=1, on_failure="maybe")]),
        batch("workflow='a\\x00b'", InvalidRequest, lambda: [job(workflow="a\x00b")]),
        edges("no ids and no workflow", InvalidRequest),
        edges("'12' (a string)", InvalidRequest, "12"),
        edges(f"[{INT64_MAX + 1}]", InvalidRequest, [INT64_MAX + 1]),
        edges("workflow=''", InvalidRequest, workflow=""),
        workflows("workflow='a\\x01'", workflow="a\x01"),
        workflows("after=''", after=""),
        workflows("limit=0", limit=0),
    ]
    return rows


def _wait_jobs_rows() -> list[Row]:
    def wait(what: str, job_ids: Any) -> Row:
        async def call(t: Transport) -> Any:
            with anyio.fail_after(5):  # real seconds: a safety net, the call must refuse at once
                return await t.wait_for_jobs(job_ids)

        return Row(f"wait_for_jobs({what})", call, InvalidRequest)

    rows = [wait(f"[{value!r}]", [value]) for value in BAD_IDS]
    rows += [wait("7 (not a sequence)", 7), wait("'7' (a string)", "7"), wait("None", None)]
    return rows


def _completions(**fields: Any) -> list[FinalizeRequest]:
    return [FinalizeRequest(outcome=Complete(), **fields)]


def _reap_rows() -> list[Row]:
    def reap(value: Any) -> Row:
        async def call(t: Transport) -> Any:
            return await t.reap(limit=value)

        return Row(f"limit={value!r}", call, InvalidRequest)

    return [reap(value) for value in BAD_LIMITS if value is not None]


def _by_id_rows(operation: str) -> list[Row]:
    def by_id(value: Any, error: type[TransportError]) -> Row:
        async def call(t: Transport) -> Any:
            return await getattr(t, operation)(value)

        return Row(f"{operation}({value!r})", call, error)

    rows = [by_id(value, InvalidRequest) for value in BAD_IDS]
    rows += [by_id(value, JobNotFound) for value in [INT64_MAX, 999_999, 0, -5, INT64_MIN]]
    return rows


def _leader_rows() -> list[Row]:
    def acquire(what: str, error: type[TransportError] | None, **args: Any) -> Row:
        args = {"name": "edge-leader", "holder": "h", "ttl": TTL, **args}

        async def call(t: Transport) -> Any:
            name = args.pop("name")
            return await t.acquire_leader(name, **args)

        return Row(f"acquire_leader {what}", call, error)

    def release(what: str, error: type[TransportError], **args: Any) -> Row:
        args = {"name": "cron", "holder": "a", **args}

        async def call(t: Transport) -> Any:
            name = args.pop("name")
            return await t.release_leader(name, **args)

        return Row(f"release_leader {what}", call, error)

    rows = [acquire(f"name={v!r}", InvalidQueueName, name=v) for v in BAD_IDENTIFIERS]
    rows += [acquire(f"holder={v!r}", InvalidRequest, holder=v) for v in BAD_LABELS]
    rows += [acquire(f"ttl={v!r}", InvalidRequest, ttl=v) for v in BAD_TTLS]
    rows += [release(f"name={v!r}", InvalidQueueName, name=v) for v in BAD_IDENTIFIERS]
    rows += [release(f"holder={v!r}", InvalidRequest, holder=v) for v in BAD_LABELS]
    return rows


def _cursor_rows() -> list[Row]:
    def get(name: Any) -> Row:
        async def call(t: Transport) -> Any:
            return await t.get_cursor(name)

        return Row(f"get_cursor({name!r})", call, InvalidQueueName)

    def advance(what: str, error: type[TransportError], **args: Any) -> Row:
        args = {"name": "tick", "expected": 1.0, "new": 2.0, **args}

        async def call(t: Transport) -> Any:
            name = args.pop("name")
            return await t.advance_cursor(name, **args)

        return Row(f"advance_cursor {what}", call, error)

    rows = [get(name) for name in BAD_IDENTIFIERS]
    rows += [advance(f"name={v!r}", InvalidQueueName, name=v) for v in BAD_IDENTIFIERS]
    rows += [advance(f"new={v!r}", InvalidRequest, new=v) for v in [*BAD_FINITE, None]]
    rows += [advance(f"expected={v!r}", InvalidRequest, expected=v) for v in BAD_FINITE]
    return rows


def _wait_rows() -> list[Row]:
    def wait(what: str, queues: Any, error: type[TransportError]) -> Row:
        async def call(t: Transport) -> Any:
            with anyio.fail_after(5):  # real seconds: a safety net, the call must refuse at once
                return await t.wait_for_work(queues)

        return Row(f"wait_for_work({what})", call, error)

    rows = [
        wait(repr(["edges", name]), ["edges", name], InvalidQueueName) for name in BAD_IDENTIFIERS
    ]
    rows.append(wait("'edges' (a string)", "edges", InvalidRequest))
    return rows


def _queue_config_rows() -> list[Row]:
    def set_config(what: str, error: type[TransportError] | None, **fields: Any) -> Row:
        fields.setdefault("name", "edges")

        async def call(t: Transport) -> Any:
            return await t.set_queue_config(QueueConfig(**fields))

        return Row(f"set_queue_config {what}", call, error)

    def get_config(name: Any) -> Row:
        async def call(t: Transport) -> Any:
            return await t.get_queue_config(name)

        return Row(f"get_queue_config({name!r})", call, InvalidQueueName)

    async def not_a_config(t: Transport) -> Any:
        return await t.set_queue_config("edges")  # type: ignore[arg-type]

    rows = [set_config(f"name={v!r}", InvalidQueueName, name=v) for v in BAD_IDENTIFIERS]
    rows += [
        set_config(f"concurrency={v!r}", InvalidRequest, concurrency=v)
        for v in [-1, -5, MAX_CONCURRENCY + 1, 10**30, 1.5, "2", True]
    ]
    rows += [
        set_config(f"retention={v!r}", InvalidRequest, retention=v)
        for v in [-1.0, math.nan, math.inf, "7d", True]
    ]
    rows += [set_config(f"paused={v!r}", InvalidRequest, paused=v) for v in ["yes", 1, None]]
    rows += [
        set_config(f"global_concurrency={v!r}", InvalidRequest, global_concurrency=v)
        for v in [-1, INT32_MAX + 1, 10**30, 1.5, "2", True]
    ]
    rows += [get_config(name) for name in BAD_IDENTIFIERS]
    rows.append(Row("set_queue_config('edges')", not_a_config, InvalidRequest))
    rows += [
        set_config("concurrency=0 (no workers)", None, concurrency=0),
        set_config(f"concurrency={MAX_CONCURRENCY}", None, concurrency=MAX_CONCURRENCY),
        set_config("retention=0", None, retention=0),
        set_config("global_concurrency=0 (hold every job)", None, global_concurrency=0),
        set_config("global_concurrency=2**31-1", None, global_concurrency=INT32_MAX),
        set_config("name of 128 characters", None, name="x" * 128),
    ]
    return rows


def _limit_rows() -> list[Row]:
    def set_limit(what: str, error: type[TransportError] | None, key: Any, value: Any) -> Row:
        return Row(f"set_limit {what}", _op("set_limit", key, concurrency=value), error)

    rows = [set_limit(f"key={v!r}", InvalidRequest, v, 1) for v in BAD_LABELS if v is not None]
    rows.append(set_limit("key=None", InvalidRequest, None, 1))
    rows += [
        set_limit(f"concurrency={v!r}", InvalidRequest, "edge-key", v)
        for v in [-1, INT32_MAX + 1, 10**30, 1.5, "2", True, math.nan]
    ]
    rows += [set_limit(f"key={v!r}", None, v, 1) for v in GOOD_LABELS]
    rows += [
        set_limit("concurrency=0 (hold every job)", None, "edge-key", 0),
        set_limit("concurrency=2**31-1", None, "edge-key", INT32_MAX),
        set_limit("concurrency=None (remove)", None, "edge-key", None),
        set_limit("concurrency=None of a key never limited", None, "never-limited", None),
    ]

    def set_rate(what: str, error: type[TransportError] | None, **limits: Any) -> Row:
        return Row(f"set_limit {what}", _op("set_limit", "edge-key", **limits), error)

    rows += [
        set_rate(f"rate={v!r}", InvalidRequest, rate=v, per=60.0)
        for v in [0, -1, INT32_MAX + 1, 10**30, 1.5, "2", True]
    ]
    rows += [
        set_rate(f"per={v!r}", InvalidRequest, rate=5, per=v)
        for v in [0, 0.0, -1.0, math.nan, math.inf, "60", True, MAX_RATE_WINDOW * 2]
    ]
    rows += [
        set_rate("rate without per", InvalidRequest, rate=5),
        set_rate("per without rate", InvalidRequest, per=60.0),
        set_rate("rate=1 per=1e-3", None, rate=1, per=1e-3),
        set_rate("rate=2**31-1 per=MAX_RATE_WINDOW", None, rate=INT32_MAX, per=MAX_RATE_WINDOW),
        set_rate("concurrency=0 with a rate", None, concurrency=0, rate=1, per=1.0),
        set_rate("no limit at all (remove)", None),
    ]
    rows += [
        Row(f"reopens_in({name!r})", _op("reopens_in", name), InvalidQueueName)
        for name in BAD_IDENTIFIERS
    ]
    rows.append(Row("reopens_in('edges')", _op("reopens_in", "edges"), None))
    return rows


def _filter(**fields: Any) -> Callable[[Transport], Awaitable[Any]]:
    """List with ``JobFilter(**fields)``: building the filter is the bad call."""

    async def call(transport: Transport) -> Any:
        return await transport.list_jobs(JobFilter(**fields))

    return call


def _reading_rows() -> list[Row]:
    rows = []
    for name in BAD_IDENTIFIERS:
        if name is None:
            continue  # None means "every queue" (or kind) for these
        rows += [
            Row(f"counts({name!r})", _op("counts", name), InvalidQueueName),
            Row(f"JobFilter(queue={name!r})", _filter(queue=name), InvalidQueueName),
            Row(f"JobFilter(kind={name!r})", _filter(kind=name), InvalidQueueName),
            Row(
                f"cleanup(queue={name!r})",
                _op("cleanup", finished_before=0.0, queue=name),
                InvalidQueueName,
            ),
        ]
    for states in [["nope"], [3], ["RUNNING "], "running", 7, [None]]:
        rows.append(Row(f"JobFilter(states={states!r})", _filter(states=states), InvalidRequest))
    for value in BAD_IDS:
        if value is not None:
            rows.append(Row(f"JobFilter(ids=[{value!r}])", _filter(ids=[value]), InvalidRequest))
    rows.append(Row("JobFilter(ids='12')", _filter(ids="12"), InvalidRequest))
    rows.append(
        Row(
            f"JobFilter(ids of {MAX_FILTER_IDS + 1})",
            _filter(ids=range(1, MAX_FILTER_IDS + 2)),
            InvalidRequest,
        )
    )
    for field in ["created_after", "created_before", "finished_after", "finished_before"]:
        for value in BAD_FINITE:
            rows.append(
                Row(f"JobFilter({field}={value!r})", _filter(**{field: value}), InvalidRequest)
            )
        rows.append(Row(f"JobFilter({field}=-5.0)", _filter(**{field: -5.0}), None))
    for value in BAD_LABELS:
        if value is not None:
            rows.append(Row(f"JobFilter(error={value!r})", _filter(error=value), InvalidRequest))
    for value in GOOD_LABELS:
        rows.append(Row(f"JobFilter(error={value!r})", _filter(error=value), None))
    for where in ["q", {"queue": "q"}, 5]:
        rows.append(Row(f"list_jobs({where!r})", _op("list_jobs", where), InvalidRequest))
    for value in BAD_IDS:
        if value is not None:
            rows.append(
                Row(
                    f"list_jobs(after_id={value!r})",
                    _op("list_jobs", after_id=value),
                    InvalidRequest,
                )
            )
            rows.append(
                Row(
                    f"list_jobs(before_id={value!r})",
                    _op("list_jobs", before_id=value),
                    InvalidRequest,
                )
            )
    for value in [None, 1, "yes"]:
        rows.append(
            Row(
                f"list_jobs(newest_first={value!r})",
                _op("list_jobs", newest_first=value),
                InvalidRequest,
            )
        )
    for value in BAD_LIMITS:
        rows += [
            Row(f"list_jobs(limit={value!r})", _op("list_jobs", limit=value), InvalidRequest),
            Row(
                f"cleanup(limit={value!r})",
                _op("cleanup", finished_before=0.0, limit=value),
                InvalidRequest,
            ),
        ]
    for value in [*BAD_FINITE, None]:
        rows.append(
            Row(
                f"cleanup(finished_before={value!r})",
                _op("cleanup", finished_before=value),
                InvalidRequest,
            )
        )
    rows.append(Row("JobFilter(states=['running'])", _filter(states=["running"]), None))
    rows.append(
        Row("list_jobs(after_id=-1, before_id=0)", _op("list_jobs", after_id=-1, before_id=0), None)
    )
    return rows


_ACTIONS = ("retry_jobs", "discard_jobs", "delete_jobs", "cancel_jobs")


def _operator_rows() -> list[Row]:
    def act(method: str, where: Any, **kwargs: Any) -> Callable[[Transport], Awaitable[Any]]:
        if method == "discard_jobs":
            kwargs.setdefault("reason", "edge")
        return _op(method, where, **kwargs)

    # A filter that matches nothing, so the accepted rows change nothing either.
    nothing = JobFilter(queue="nowhere")
    rows = []
    for method in _ACTIONS:
        for where in [None, "q", {"queue": "q"}, JobState.DEAD]:
            rows.append(Row(f"{method}({where!r})", act(method, where), InvalidRequest))
        for value in BAD_LIMITS:
            rows.append(
                Row(f"{method}(limit={value!r})", act(method, nothing, limit=value), InvalidRequest)
            )
        rows.append(Row(f"{method}(limit=2**31-1)", act(method, nothing, limit=INT32_MAX), None))
    for reason in [None, 5, b"bytes"]:
        rows.append(
            Row(
                f"discard_jobs(reason={reason!r})",
                act("discard_jobs", nothing, reason=reason),
                InvalidRequest,
            )
        )
    return rows


_NODE: dict[str, Any] = {
    "id": "edge-node",
    "host": "host",
    "pid": 1,
    "queues": ["edges"],
    "slots": 1,
    "version": "1",
    "started_at": 0.0,
    "heartbeat": 1.0,
}


def _node_rows() -> list[Row]:
    def register(what: str, error: type[TransportError] | None, **fields: Any) -> Row:
        async def call(t: Transport) -> Any:
            return await t.register_node(NodeInfo(**{**_NODE, **fields}))

        return Row(f"register_node {what}", call, error)

    rows = [register(f"id={v!r}", InvalidRequest, id=v) for v in BAD_LABELS]
    rows += [register(f"host={v!r}", InvalidRequest, host=v) for v in BAD_LABELS]
    rows += [register(f"version={v!r}", InvalidRequest, version=v) for v in BAD_LABELS]
    for value in [-1, INT32_MAX + 1, 1.5, "1", True, None]:
        rows.append(register(f"pid={value!r}", InvalidRequest, pid=value))
        rows.append(register(f"slots={value!r}", InvalidRequest, slots=value))
    rows += [register(f"queues=[{v!r}]", InvalidQueueName, queues=[v]) for v in BAD_IDENTIFIERS]
    rows += [
        register("queues='edges' (a string)", InvalidRequest, queues="edges"),
        register("queues=None", InvalidRequest, queues=None),
        register("1001 queues", InvalidRequest, queues=[f"q{n}" for n in range(1001)]),
    ]
    rows += [register(f"started_at={v!r}", InvalidRequest, started_at=v) for v in BAD_TIMES]
    rows += [register(f"heartbeat={v!r}", InvalidRequest, heartbeat=v) for v in BAD_TTLS]
    rows += [register(f"last_seen={v!r}", InvalidRequest, last_seen=v) for v in BAD_TIMES]
    rows += [
        Row("register_node('edge-node')", _op("register_node", "edge-node"), InvalidRequest),
        Row("register_node(None)", _op("register_node", None), InvalidRequest),
    ]
    for value in BAD_LABELS:
        rows += [
            Row(f"node_heartbeat({value!r})", _op("node_heartbeat", value), InvalidRequest),
            Row(f"forget_node({value!r})", _op("forget_node", value), InvalidRequest),
        ]
    for value in [*BAD_FINITE, None]:
        rows.append(
            Row(
                f"prune_nodes(seen_before={value!r})",
                _op("prune_nodes", seen_before=value),
                InvalidRequest,
            )
        )
    rows += [
        register("queues=[] slots=0 (a node that only reaps)", None, queues=[], slots=0),
        register(f"pid={INT32_MAX}", None, pid=INT32_MAX, id="edge-max"),
        register("an id of 255 characters", None, id="x" * 255),
    ]
    return rows


def _stats_rows() -> list[Row]:
    def add(what: str, error: type[TransportError] | None, **fields: Any) -> Row:
        async def call(t: Transport) -> Any:
            fields.setdefault("queue", "edges")
            fields.setdefault("minute", 0.0)
            return await t.add_stats([QueueStats(**fields)])

        return Row(f"add_stats {what}", call, error)

    rows = [add(f"queue={v!r}", InvalidQueueName, queue=v) for v in BAD_IDENTIFIERS]
    rows += [add(f"minute={v!r}", InvalidRequest, minute=v) for v in BAD_TIMES]
    rows += [add(f"minute={v!r}", InvalidRequest, minute=v) for v in [30.0, 61.0, 0.5]]
    for value in [-1, INT64_MAX + 1, 1.5, "1", True, None]:
        rows.append(add(f"succeeded={value!r}", InvalidRequest, succeeded=value))
        rows.append(add(f"finalize_refused={value!r}", InvalidRequest, finalize_refused=value))
    rows += [add(f"wait={v!r}", InvalidRequest, wait=v) for v in [None, [0, 1], "h"]]

    async def one_bad_in_a_batch(t: Transport) -> Any:
        good = QueueStats(queue="edges", minute=0.0, succeeded=1)
        return await t.add_stats([good, "not a row"])  # type: ignore[list-item]

    async def not_a_sequence(t: Transport) -> Any:
        return await t.add_stats(QueueStats(queue="edges", minute=0.0))  # type: ignore[arg-type]

    rows += [
        Row("add_stats with one bad row in a batch", one_bad_in_a_batch, InvalidRequest),
        Row("add_stats(one row, not a list)", not_a_sequence, InvalidRequest),
    ]
    for name in BAD_IDENTIFIERS:
        if name is not None:
            rows.append(
                Row(f"list_stats(queue={name!r})", _op("list_stats", queue=name), InvalidQueueName)
            )
    for value in BAD_FINITE:
        rows += [
            Row(f"list_stats(since={value!r})", _op("list_stats", since=value), InvalidRequest),
            Row(f"list_stats(until={value!r})", _op("list_stats", until=value), InvalidRequest),
        ]
    for value in [*BAD_FINITE, None]:
        rows.append(
            Row(f"prune_stats(before={value!r})", _op("prune_stats", before=value), InvalidRequest)
        )
        rows.append(
            Row(
                f"prune_signals(before={value!r})",
                _op("prune_signals", before=value),
                InvalidRequest,
            )
        )
        rows.append(
            Row(
                f"prune_results(finished_before={value!r})",
                _op("prune_results", finished_before=value),
                InvalidRequest,
            )
        )
    rows += [
        Row(
            f"prune_signals(limit={value!r})",
            _op("prune_signals", before=0.0, limit=value),
            InvalidRequest,
        )
        for value in BAD_LIMITS
    ]
    rows += [
        Row(
            f"prune_results(limit={value!r})",
            _op("prune_results", finished_before=0.0, limit=value),
            InvalidRequest,
        )
        for value in BAD_LIMITS
    ]
    rows += [
        add("minute=0 with a figure of 2**63 - 1", None, minute=0.0, dead=INT64_MAX),
        add(f"minute={MINUTE * 10**9:g}", None, minute=MINUTE * 10**9, dead=1),
        Row("list_stats(since=-1e300)", _op("list_stats", since=-1e300, until=1e300), None),
    ]
    return rows


TABLES: dict[str, Callable[[Transport, Seed], list[Row]]] = {
    "enqueue": lambda t, _s: _enqueue_rows(t.max_payload_bytes),
    "claim": lambda _t, _s: _claim_rows(),
    "renew": lambda _t, s: _renew_rows(s),
    "finalize": lambda _t, s: _finalize_rows(s),
    "reap": lambda _t, _s: _reap_rows(),
    "cancel": lambda _t, _s: _by_id_rows("cancel"),
    "get": lambda _t, _s: _by_id_rows("get"),
    "leader": lambda _t, _s: _leader_rows(),
    "cursor": lambda _t, _s: _cursor_rows(),
    "wait_for_work": lambda _t, _s: _wait_rows(),
    "wait_for_jobs": lambda _t, _s: _wait_jobs_rows(),
    "dependencies": lambda _t, s: _dependency_rows(s),
    "queue_config": lambda _t, _s: _queue_config_rows(),
    "limits": lambda _t, _s: _limit_rows(),
    "reading": lambda _t, _s: _reading_rows(),
    "operators": lambda _t, _s: _operator_rows(),
    "nodes": lambda _t, _s: _node_rows(),
    "stats": lambda _t, _s: _stats_rows(),
}


async def _snapshot(transport: Transport) -> Any:
    """Everything a bad call could have changed, as far as the contract lets one read it."""
    return (
        await transport.counts(),
        await transport.list_jobs(limit=10_000),
        await transport.list_queue_configs(),
        await transport.get_cursor("tick"),
        await transport.list_nodes(),
        await transport.list_stats(),
        await transport.list_leaders(),
        await transport.list_limits(),
    )


class TransportEdges:
    """Bad values for every operation, refused with their exact error and writing nothing."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.mark.parametrize("operation", list(TABLES))
    async def test_bad_values_are_refused_exactly_and_write_nothing(
        self, transport: Transport, clock: ManualClock, operation: str
    ) -> None:
        """Each row of the operation's table raises exactly its error and changes nothing;
        each edge value just inside a limit is accepted."""
        await transport.enqueue(EnqueueRequest(kind="edge.job", queue="q", payload={"n": 1}))
        (lease,) = await transport.claim("q", owner="w1", limit=1, ttl=TTL)
        waiting = await transport.enqueue(EnqueueRequest(kind="edge.job", queue="q"))
        await transport.set_queue_config(QueueConfig(name="q", concurrency=2, retention=60.0))
        assert await transport.advance_cursor("tick", expected=None, new=1.0)
        assert await transport.acquire_leader("cron", holder="a", ttl=TTL) is not None
        await transport.register_node(NodeInfo(**_NODE))
        await transport.add_stats([QueueStats(queue="q", minute=0.0, succeeded=1)])
        seed = Seed(waiting=waiting.job_id, lease=lease)
        rows = TABLES[operation](transport, seed)
        assert rows, f"the {operation} table is empty"
        for row in rows:
            before = await _snapshot(transport)
            if row.error is None:
                await row.call(transport)
                continue
            with pytest.raises(TransportError) as caught:
                await row.call(transport)
            assert type(caught.value) is row.error, (
                f"{operation} {row.what}: raised {type(caught.value).__name__} "
                f"({caught.value}), expected {row.error.__name__}"
            )
            assert "\n" not in str(caught.value), f"{operation} {row.what}: a multi-line message"
            assert await _snapshot(transport) == before, f"{operation} {row.what} wrote something"
        # The seeded lease and leadership survived every bad call.
        job = await transport.get(lease.job_id)
        assert job.state is JobState.RUNNING
        assert job.lease_expires_at == lease.expires_at
        assert await transport.acquire_leader("cron", holder="b", ttl=TTL) is None
