"""OpenTelemetry: a producer span per enqueue, a consumer span per attempt, linked to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from actors.core import VirtualClock
from actors.jobs import App, Drop, JobContext, RetryLater, SnoozeUntil
from actors.jobs.lowlevel import trace_id_of
from actors.telemetry import (
    OpenTelemetryTracer,
    TracedTransport,
    context_headers,
    instrument_tracing,
    trace_headers,
)
from transports import EnqueueRequest, Job, JobState, MemoryTransport, Transport
from transports.lowlevel import Complete

from ..jobs._support import START, running, topology, wait_final

pytestmark = pytest.mark.anyio

HEADERS = "headers" in attrs.fields_dict(EnqueueRequest)
needs_headers = pytest.mark.skipif(
    not HEADERS, reason="the store keeps no job headers yet (EnqueueRequest.headers)"
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def traced_app(transport: Transport, provider: TracerProvider) -> App:
    app = App(transport)
    instrument_tracing(app, tracer_provider=provider)

    @app.task("mixed", max_attempts=3)
    async def mixed(ctx: JobContext, payload: str) -> Any:
        if payload == "flaky" and ctx.attempt < 3:
            if ctx.attempt == 1:
                raise ConnectionError("mail server busy")
            return RetryLater(delay=1.0, reason="still busy")
        if payload == "drop":
            return Drop(reason="not an address")
        if payload == "snooze" and ctx.clock.now() < START + 5:
            return SnoozeUntil(at=START + 5)
        return None

    return app


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


async def run_jobs(
    transport: Transport, clock: VirtualClock, provider: TracerProvider, payloads: list[str]
) -> list[int]:
    app = traced_app(transport, provider)
    ids = [(await app.enqueue("mixed", p)).job_id for p in payloads]
    async with clock.autojump(), running(topology(app, transport, clock)):
        await wait_final(transport, clock, ids)
    return ids


async def test_each_attempt_is_a_consumer_span_with_its_outcome(
    transport: Transport,
    clock: VirtualClock,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """An enqueue is one PRODUCER span per job; each run a CONSUMER span naming the job's
    id, kind, queue and attempt, whose status is the run's outcome."""
    (flaky, drop, snooze) = await run_jobs(transport, clock, provider, ["flaky", "drop", "snooze"])
    spans = exporter.get_finished_spans()
    producers = by_kind(spans, SpanKind.PRODUCER)
    assert [s.name for s in producers] == ["send default"] * 3
    assert [s.attributes["messaging.message.id"] for s in producers] == [
        str(flaky), str(drop), str(snooze)
    ]  # fmt: skip
    runs: dict[str, list[tuple[int, str, StatusCode]]] = {}
    for span in by_kind(spans, SpanKind.CONSUMER):
        attributes = span.attributes
        assert attributes is not None
        assert span.name == "process default"
        assert attributes["messaging.system"] == "actorq"
        assert attributes["messaging.destination.name"] == "default"
        assert attributes["actorq.job.kind"] == "mixed"
        runs.setdefault(str(attributes["messaging.message.id"]), []).append(
            (
                int(attributes["actorq.job.attempt"]),  # type: ignore[arg-type]
                str(attributes["actorq.job.outcome"]),
                span.status.status_code,
            )
        )
    assert runs == {
        str(flaky): [
            (1, "retried", StatusCode.ERROR),
            (2, "retried", StatusCode.ERROR),
            (3, "succeeded", StatusCode.OK),
        ],
        str(drop): [(1, "dead", StatusCode.ERROR)],
        str(snooze): [(1, "snoozed", StatusCode.UNSET), (1, "succeeded", StatusCode.OK)],
    }
    failed = [s for s in by_kind(spans, SpanKind.CONSUMER) if s.status.description]
    assert {s.status.description for s in failed} >= {"not an address", "still busy"}


@needs_headers
async def test_every_attempt_links_to_the_enqueue_and_shares_its_trace(
    transport: Transport,
    clock: VirtualClock,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """The trace context travels with the job in the store: every attempt, retries
    included, is a child of the job's enqueue span and linked to it."""
    (flaky,) = await run_jobs(transport, clock, provider, ["flaky"])
    assert "traceparent" in trace_headers(await transport.get(flaky))
    spans = exporter.get_finished_spans()
    (producer,) = by_kind(spans, SpanKind.PRODUCER)
    consumers = by_kind(spans, SpanKind.CONSUMER)
    assert len(consumers) == 3
    for span in consumers:
        assert span.context is not None
        assert producer.context is not None
        assert span.context.trace_id == producer.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == producer.context.span_id
        assert [link.context.span_id for link in span.links] == [producer.context.span_id]


def test_a_run_continues_the_trace_its_headers_carry(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Given a job whose headers hold an enqueue span's context (as the store keeps them),
    its run is a child of that span and linked to it, in the same trace."""
    tracer = OpenTelemetryTracer(provider)
    with provider.get_tracer("test").start_as_current_span("send default") as producer:
        headers = context_headers(producer)
    assert set(headers) >= {"traceparent"}
    job = attrs.evolve(_job(), attempt=2, headers=headers)
    with tracer.run(job, worker="w") as run:
        run.done(None)
    consumer = exporter.get_finished_spans()[-1]
    assert consumer.context is not None
    assert consumer.context.trace_id == producer.get_span_context().trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.get_span_context().span_id
    assert [link.context.span_id for link in consumer.links] == [
        producer.get_span_context().span_id
    ]
    assert consumer.status.status_code is StatusCode.ERROR  # a lost lease
    assert trace_id_of(job) == format(producer.get_span_context().trace_id, "032x")


def test_a_run_that_raises_ends_its_span_failed_and_restores_the_context(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The run's span is current inside, and an exception passing through (a shutdown's
    cancel, say) is recorded, sets the status ERROR and ends the span; the caller's context
    is back afterwards."""
    tracer = OpenTelemetryTracer(provider)
    outside = trace.get_current_span()
    seen: list[trace.Span] = []

    def fail() -> None:
        with tracer.run(_job(), worker="w"):
            seen.append(trace.get_current_span())
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fail()
    (inside,) = seen
    assert inside is not outside
    assert inside.get_span_context().is_valid
    assert trace.get_current_span() is outside
    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert span.context.span_id == inside.get_span_context().span_id
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    assert [event.name for event in span.events] == ["exception"]


def test_a_sampled_out_run_records_nothing_and_carries_no_context_at_enqueue(
    exporter: InMemorySpanExporter,
) -> None:
    """With a sampler that keeps nothing, no span is exported; with no SDK at all (a no-op
    tracer), an enqueue writes no trace headers."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with OpenTelemetryTracer(provider).run(_job(), worker="w") as run:
        run.done(Complete())
    assert exporter.get_finished_spans() == ()
    untraced = OpenTelemetryTracer(trace.NoOpTracerProvider())
    with untraced.enqueue([EnqueueRequest(kind="k")]) as enqueue:
        assert [dict(r.headers) for r in enqueue.requests] == [{}]


def _job() -> Job:
    return Job(
        id=7,
        queue="default",
        kind="mixed",
        payload=None,
        state=JobState.RUNNING,
        priority=0,
        run_at=START,
        attempt=1,
        max_attempts=3,
        last_error=None,
        dedupe_key=None,
        created_at=START,
        updated_at=START,
        finished_at=None,
        lease_owner="w",
        lease_expires_at=START + 30,
        cancel_requested=False,
    )


async def test_an_untraced_job_runs_in_a_trace_of_its_own(
    memory: MemoryTransport,
    clock: VirtualClock,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """A job enqueued without tracing (another process, an older version) still gets its
    consumer span, a root without links."""
    app = traced_app(memory, provider)
    job = await memory.enqueue(app.request("mixed", "ok"))  # straight to the store
    async with clock.autojump(), running(topology(app, memory, clock)):
        await wait_final(memory, clock, [job.job_id])
    (consumer,) = exporter.get_finished_spans()
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.parent is None
    assert not consumer.links
    assert (await memory.get(job.job_id)).state is JobState.SUCCEEDED


async def test_storage_calls_are_client_spans_under_the_current_one(
    clock: VirtualClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with TracedTransport(MemoryTransport(clock=clock), tracer_provider=provider) as traced:
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("request") as outer:
            await traced.counts()
    (call, request) = exporter.get_finished_spans()
    assert call.name == "actorq.storage counts"
    assert call.kind is SpanKind.CLIENT
    assert call.parent is not None
    assert call.parent.span_id == outer.get_span_context().span_id
    assert request.name == "request"


@needs_headers
async def test_a_trace_state_too_long_for_a_header_is_left_out(
    memory: MemoryTransport, provider: TracerProvider
) -> None:
    """A W3C tracestate may be longer than a job header holds: the job is enqueued with its
    traceparent and without the state, never refused."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanContext, TraceFlags, TraceState

    app = traced_app(memory, provider)
    remote = SpanContext(
        trace_id=0x1234,
        span_id=0x5678,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v" * 200), ("other", "o" * 200)]),
    )
    with trace.use_span(trace.NonRecordingSpan(remote)):
        job = await app.enqueue("mixed", "ok")
    headers = trace_headers(await memory.get(job.job_id))
    assert headers["traceparent"].split("-")[1] == format(0x1234, "032x")
    assert "tracestate" not in headers


TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENTS = [
    {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"},
    {"traceparent": f"00-{TRACE}-b7ad6b7169203331-00"},  # not sampled
    {"traceparent": f"00-{TRACE}-b7ad6b7169203331-03", "other": "x"},
    {"traceparent": f"00-{TRACE.upper()}-b7ad6b7169203331-01"},  # not W3C: ignored
    {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"},  # invalid trace id
    {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},  # invalid span id
    {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01-tail"},  # version 00 has no tail
    {"traceparent": f"01-{TRACE}-b7ad6b7169203331-01-tail"},  # a later version may
    {"traceparent": f"  00-{TRACE}-b7ad6b7169203331-01"},
    {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01", "tracestate": "vendor=v1,other=o"},
    {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01", "baggage": "user=alice"},
    {"tracestate": "vendor=v1"},
    {"other": "x"},
]


@pytest.mark.parametrize("headers", PARENTS)
def test_a_run_reads_its_parent_as_the_global_propagator_does(headers: dict[str, str]) -> None:
    """The run's parent, read straight from a canonical traceparent when the propagator is the
    default W3C one, is the context ``propagate.extract`` gives, whatever the headers hold."""
    from opentelemetry import baggage, propagate

    from actors.telemetry._tracing import _remote_parent

    extracted = propagate.extract(headers)
    expected = trace.get_current_span(extracted).get_span_context()
    found = _remote_parent(headers)
    if not expected.is_valid:
        assert found is None
        return
    assert found is not None
    context, span_context = found
    assert span_context == expected
    assert trace.get_current_span(context).get_span_context() == expected
    assert baggage.get_all(context) == baggage.get_all(extracted)


def test_a_run_reads_no_parent_when_propagation_is_off() -> None:
    """With another global propagator (here none at all, as ``OTEL_PROPAGATORS=none``), the
    headers are read through it: a traceparent it ignores gives no parent."""
    from opentelemetry import propagate
    from opentelemetry.propagators.composite import CompositePropagator

    from actors.telemetry._tracing import _remote_parent

    headers = PARENTS[0]
    default = propagate.get_global_textmap()
    assert _remote_parent(headers) is not None
    propagate.set_global_textmap(CompositePropagator([]))
    try:
        assert _remote_parent(headers) is None
    finally:
        propagate.set_global_textmap(default)
    assert _remote_parent(headers) is not None
