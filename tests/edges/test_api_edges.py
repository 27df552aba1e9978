"""Bad input to the Python API, case by case, on every backend and both loops.

Each case asserts the typed error and its message, and that nothing was written (the store's
counts are unchanged). Configuration cases need no store: they are refused at construction.
Test ids start with the kind of bad input.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import transports
from actors.jobs import (
    App,
    ConfigInvalid,
    InvalidCronExpression,
    JobContext,
    PayloadInvalid,
    Topology,
    UnknownJobKind,
    WorkerConfig,
)
from transports import After, InvalidQueueName, InvalidRequest, Transport
from transports.lowlevel import Complete, FinalizeRequest

# Import the SQL backends (they read their .sql files) before any event loop runs.
_BACKENDS = (transports.SQLiteTransport, transports.PostgresTransport)

app = App()


@app.task("report.build", queue="reports")
async def report(ctx: JobContext, payload: int) -> None:
    pass


BIG = 10**30

# (id, enqueue options, payload, error class, message); kind "report.build" unless given.
ENQUEUE_CASES: list[tuple[str, dict[str, Any], Any, type[Exception], str]] = [
    ("non-finite-delay-inf", {"delay": math.inf}, 1, InvalidRequest, "delay"),
    ("non-finite-delay-nan", {"delay": math.nan}, 1, InvalidRequest, "delay"),
    ("non-finite-run-at-inf", {"run_at": math.inf}, 1, InvalidRequest, "run_at"),
    ("non-finite-run-at-nan", {"run_at": math.nan}, 1, InvalidRequest, "run_at"),
    ("bad-option-delay-negative", {"delay": -1.0}, 1, InvalidRequest, "delay"),
    ("huge-integer-priority", {"priority": BIG}, 1, InvalidRequest, "priority"),
    ("huge-integer-max-attempts", {"max_attempts": BIG}, 1, InvalidRequest, "max_attempts"),
    ("bad-option-max-attempts-zero", {"max_attempts": 0}, 1, InvalidRequest, "max_attempts"),
    ("bad-name-queue-space", {"queue": "a b"}, 1, InvalidQueueName, "invalid queue name"),
    ("bad-name-queue-non-ascii", {"queue": "café"}, 1, InvalidQueueName, "invalid queue name"),
    ("bad-name-queue-too-long", {"queue": "q" * 129}, 1, InvalidQueueName, "invalid queue"),
    ("bad-name-dedupe-nul", {"dedupe_key": "a\x00b"}, 1, InvalidRequest, "dedupe"),
    ("bad-payload-wrong-type", {}, "seven", PayloadInvalid, "does not fit int"),
    ("bad-payload-none", {}, None, PayloadInvalid, "report.build"),
    ("unknown-kind", {"kind": "report.buld"}, 1, UnknownJobKind, "report.buld"),
]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'api.db'}"
    dsn = request.getfixturevalue("postgres_dsn")
    return f"{dsn}?schema={request.getfixturevalue('postgres_schema')}"


@pytest.fixture
async def transport(store_url: str, anyio_backend: str) -> AsyncIterator[Transport]:
    # Under trio the SQL backends run bridged to their own asyncio loop: both loops, all three.
    async with transports.connect(store_url) as opened:
        await app.enqueue(report, 1, transport=opened)
        yield opened


async def _counts(transport: Transport) -> list[Any]:
    return sorted(
        (c.queue, tuple(c[s] for s in transports.JobState)) for c in await transport.counts()
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "payload", "error", "message"),
    [c[1:] for c in ENQUEUE_CASES],
    ids=[c[0] for c in ENQUEUE_CASES],
)
async def test_enqueue_refuses_before_writing(
    transport: Transport,
    options: dict[str, Any],
    payload: Any,
    error: type[Exception],
    message: str,
) -> None:
    """A bad enqueue raises its typed error, and the store holds what it held."""
    before = await _counts(transport)
    options = dict(options)
    kind = options.pop("kind", "report.build")
    with pytest.raises(error, match=message):
        await app.enqueue(kind, payload, transport=transport, **options)
    assert await _counts(transport) == before


TRANSPORT_CASES: list[tuple[str, Callable[[Transport], Any], type[Exception], str]] = [
    ("huge-integer-cancel-id", lambda t: t.cancel(2**70), InvalidRequest, "id"),
    ("missing-job-cancel-negative-id", lambda t: t.cancel(-1), transports.JobNotFound, "-1"),
    ("missing-job-cancel", lambda t: t.cancel(10**9), transports.JobNotFound, "10"),
    ("bad-name-get-queue-config", lambda t: t.get_queue_config("a b"), InvalidQueueName, "queue"),
    ("bad-name-counts", lambda t: t.counts("a;b"), InvalidQueueName, "queue"),
    ("bad-payload-not-json",
     lambda t: t.enqueue(transports.EnqueueRequest(kind="k", payload={"x": {1, 2}})),
     transports.PayloadNotSerializable, "JSON"),
    ("bad-payload-too-large",
     lambda t: t.enqueue(transports.EnqueueRequest(kind="k", payload="x" * 1_100_000)),
     transports.PayloadTooLarge, "payload"),
    ("bad-result-not-json",
     lambda t: t.finalize([FinalizeRequest(job_id=1, token=1, outcome=Complete(result={1}))]),
     transports.ResultNotSerializable, "result is not JSON"),
    ("bad-result-too-large",
     lambda t: t.finalize(
         [FinalizeRequest(job_id=1, token=1, outcome=Complete(result="x" * 300_000))]
     ),
     transports.ResultTooLarge, "result is 300002 bytes"),
    ("bad-option-wait-for-jobs-string", lambda t: t.wait_for_jobs("12"), InvalidRequest, "job"),
    ("missing-job-result", lambda t: app.result(10**9, transport=t), transports.JobNotFound, "10"),
    ("bad-option-result-timeout",
     lambda t: app.result(1, transport=t, timeout=-1.0), ConfigInvalid, "timeout"),
    ("non-finite-result-timeout",
     lambda t: app.result(1, transport=t, timeout=math.nan), ConfigInvalid, "timeout"),
    ("bad-option-result-job", lambda t: app.result("1", transport=t), ConfigInvalid, "job"),
    ("missing-parent-after",
     lambda t: app.enqueue(report, 1, transport=t, after=[10**12]),
     transports.UnknownDependency, "does not exist"),
    ("bad-dependency-cycle",
     lambda t: t.enqueue_many([transports.EnqueueRequest(kind="k", after=[After(index=0)])]),
     transports.DependencyCycle, "waits for itself"),
    ("bad-option-after-not-a-job",
     lambda t: app.enqueue(report, 1, transport=t, after=["1"]), ConfigInvalid, "not a job"),
    ("bad-option-chain-policy",
     lambda t: app.chain(app.request(report, 1), on_failure="later", transport=t),
     ConfigInvalid, "on_failure"),
    ("bad-name-signal-key", lambda t: t.signal("a b", 1), transports.InvalidStepName,
     "invalid event key"),
    ("bad-name-get-signal-key", lambda t: t.get_signal(""), transports.InvalidStepName,
     "invalid event key"),
    ("bad-payload-signal-too-large", lambda t: t.signal("k", "x" * 70_000),
     transports.StepTooLarge, "over the limit of 65536"),
    ("bad-payload-signal-not-json", lambda t: t.signal("k", {"x": {1}}),
     transports.PayloadNotSerializable, "JSON"),
    ("bad-name-step", lambda t: t.record_step(1, token=1, name="", value=1),
     transports.InvalidStepName, "step name"),
    ("bad-payload-step-too-large", lambda t: t.record_step(1, token=1, name="s", value="x" * 70_000),
     transports.StepTooLarge, "over the limit"),
    ("huge-integer-step-token", lambda t: t.record_step(1, token=2**70, name="s", value=1),
     InvalidRequest, "token"),
    ("huge-integer-list-steps", lambda t: t.list_steps(2**70), InvalidRequest, "job_id"),
]  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [c[1:] for c in TRANSPORT_CASES],
    ids=[c[0] for c in TRANSPORT_CASES],
)
async def test_transport_refuses_before_writing(
    transport: Transport, call: Callable[[Transport], Any], error: type[Exception], message: str
) -> None:
    """A bad transport call raises its typed error on every backend, writing nothing."""
    before = await _counts(transport)
    with pytest.raises(error, match=message):
        await call(transport)
    assert await _counts(transport) == before


def _task(**options: Any) -> None:
    App().task("k", **options)


def _schedule(expression: str = "* * * * *", payload: Any = 1, **options: Any) -> None:
    local = App()

    @local.task("tick")
    async def tick(ctx: JobContext, payload: int) -> None:
        pass

    local.schedule("every", expression, tick, payload=payload, **options)


W = WorkerConfig


def _signal_without_transport() -> None:
    anyio.run(App().signal, "k")


CONFIG_CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("bad-option-signal-no-transport", _signal_without_transport, ConfigInvalid, "no transport"),
    ("bad-option-lease-ttl-zero", lambda: W(lease_ttl=0), ConfigInvalid, "lease_ttl"),
    ("bad-option-lease-ttl-negative", lambda: W(lease_ttl=-1), ConfigInvalid, "lease_ttl"),
    ("non-finite-lease-ttl", lambda: W(lease_ttl=math.nan), ConfigInvalid, "lease_ttl"),
    ("bad-option-poll-interval-zero", lambda: W(poll_interval=0), ConfigInvalid, "poll"),
    ("non-finite-poll-interval", lambda: W(poll_interval=math.inf), ConfigInvalid, "poll"),
    ("bad-option-concurrency-negative", lambda: W(concurrency=-3), ConfigInvalid, "concurrency"),
    ("huge-integer-concurrency", lambda: W(concurrency=BIG), ConfigInvalid, "concurrency"),
    ("bad-option-batch-size-zero", lambda: W(batch_size=0), ConfigInvalid, "batch_size"),
    ("bad-name-task-queue", lambda: _task(queue="a b"), InvalidQueueName, "queue"),
    ("bad-name-task-kind", lambda: App().task("bad kind!"), InvalidQueueName, "kind"),
    ("bad-option-task-max-attempts", lambda: _task(max_attempts=0), ConfigInvalid, "max_attempts"),
    ("non-finite-task-timeout", lambda: _task(timeout=math.nan), ConfigInvalid, "timeout"),
    ("bad-cron-seven-fields", lambda: _schedule("* * * * * * *"), InvalidCronExpression, "field"),
    ("bad-cron-garbage", lambda: _schedule("every monday"), InvalidCronExpression, "every"),
    ("bad-cron-jitter-negative", lambda: _schedule(jitter=-1), ConfigInvalid, "jitter"),
    ("bad-cron-payload-type", lambda: _schedule(payload={"x": 1}), PayloadInvalid, "tick"),
    ("bad-name-topology-queue",
     lambda: Topology.default(app, transports.MemoryTransport(), queues=["a b"]),
     InvalidQueueName, "queue"),
    ("bad-url-scheme", lambda: transports.connect("redis://x"), transports.UnsupportedURL, "redis"),
    ("bad-url-pool-size",
     lambda: transports.connect("postgresql://u:hunter2@h/db?pool_size=abc"),
     transports.UnsupportedURL, "pool_size"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "error", "message"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_configuration_is_refused_at_construction(
    build: Callable[[], Any], error: type[Exception], message: str
) -> None:
    """A setting no node could honour is a typed error (never a bare ValueError), at once."""
    with pytest.raises(error, match=message) as caught:
        build()
    assert type(caught.value) is not ValueError
    assert "hunter2" not in str(caught.value)
