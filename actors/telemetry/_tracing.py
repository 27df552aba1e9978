"""OpenTelemetry traces from enqueue to every attempt, on the API alone (bring your own SDK).

An enqueue is a PRODUCER span (``send <queue>``) per job, whose context (W3C ``traceparent``
and ``tracestate``) is stored with the job in its headers. Every run of the job, on whatever
node and after however many retries, is a CONSUMER span (``process <queue>``) in that trace:
a child of the enqueue's span, and linked to it, as the messaging conventions ask. It carries
the job's id, kind, queue and attempt, and ends with the outcome as its status: OK for a
success, ERROR (with the reason) for a failed attempt, a dead job or a lost lease, unset for a
snooze, a cancel or a job given back unstarted. Optionally each storage call is a CLIENT
span (``actorq.storage <operation>``) under whatever is current.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import attrs
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from transports import EnqueueRequest, EnqueueResult, Job, Transport
from transports.lowlevel import (
    MAX_HEADERS,
    MAX_LABEL_LENGTH,
    Cancel,
    Complete,
    Discard,
    ForwardingTransport,
    Outcome,
    Release,
    Retry,
    Snooze,
    Suspend,
)

from ..jobs import App

__all__ = [
    "MESSAGING_SYSTEM",
    "OpenTelemetryTracer",
    "TracedTransport",
    "context_headers",
    "instrument_tracing",
    "trace_headers",
]

T = TypeVar("T")

#: ``messaging.system`` of every span.
MESSAGING_SYSTEM = "actorq"
_SCOPE = "actorq"
# Built once: every span of a run shares them (the SDK copies what it keeps).
_SEND_LINK = {"messaging.operation.type": "send"}
_OK = Status(StatusCode.OK)
_LEASE_LOST = Status(StatusCode.ERROR, "the lease was lost")
_NO_PARENT = Context()
#: A ``traceparent`` as ``context_headers`` writes it (version 00, lowercase hex, no tail).
_TRACEPARENT = re.compile("00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_W3C_PROPAGATORS = (TraceContextTextMapPropagator, W3CBaggagePropagator)
#: The global propagator last looked at, and whether it reads W3C trace context alone.
_known_textmap: tuple[Any, bool] = (None, False)


def _reads_w3c_only(textmap: TextMapPropagator) -> bool:
    """Whether ``textmap`` extracts W3C trace context and nothing else a job's headers hold
    (the default ``tracecontext,baggage``, or ``tracecontext`` alone)."""
    if type(textmap) is TraceContextTextMapPropagator:
        return True
    parts = getattr(textmap, "_propagators", None) if type(textmap) is CompositePropagator else None
    if not isinstance(parts, list | tuple):
        return False
    kinds = {type(part) for part in parts}
    return TraceContextTextMapPropagator in kinds and kinds <= set(_W3C_PROPAGATORS)


def _remote_parent(headers: Mapping[str, str]) -> tuple[Context, SpanContext] | None:
    """The context a job's headers carry, and its span's, if valid: what
    ``propagate.extract(headers)`` gives, read straight from a canonical ``traceparent`` when
    the global propagator is the W3C one (the general path costs a few microseconds a job)."""
    textmap = propagate.get_global_textmap()
    global _known_textmap
    known, w3c = _known_textmap  # one tuple, replaced whole: threads see a consistent pair
    if textmap is not known:
        w3c = _reads_w3c_only(textmap)
        _known_textmap = (textmap, w3c)
    if w3c and "tracestate" not in headers and "baggage" not in headers:
        value = headers.get("traceparent")
        if value is None:
            return None
        match = _TRACEPARENT.fullmatch(value) if type(value) is str else None
        if match is not None:
            trace_id = int(match[1], 16)
            span_id = int(match[2], 16)
            if not trace_id or not span_id:
                return None  # an invalid parent, which the propagator ignores too
            span_context = SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(int(match[3], 16))
            )
            parent = trace.set_span_in_context(NonRecordingSpan(span_context), Context())
            return parent, span_context
    extracted = propagate.extract(headers)
    created = trace.get_current_span(extracted).get_span_context()
    return (extracted, created) if created.is_valid else None


def context_headers(span: trace.Span) -> dict[str, str]:
    """The W3C trace context (``traceparent``, ``tracestate``) of ``span``, as job headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def trace_headers(job: Job) -> Mapping[str, str]:
    """The trace context stored with ``job`` (empty when it was enqueued untraced)."""
    return job.headers


class _Enqueue:
    """The PRODUCER spans of one enqueue, one per request."""

    def __init__(self, requests: list[EnqueueRequest], spans: list[trace.Span]) -> None:
        self.requests = requests
        self._spans = spans

    def done(self, results: Sequence[EnqueueResult]) -> None:
        for span, result in zip(self._spans, results, strict=True):
            span.set_attribute("messaging.message.id", str(result.job_id))
            if result.deduplicated:
                span.set_attribute("actorq.job.deduplicated", True)


class _Run:
    """The CONSUMER span of one run, current while the run lasts (its context manager).

    A plain class rather than ``start_as_current_span``'s generator: it runs for every job,
    and does the same (the span current inside, an exception recorded and its status ERROR,
    the span ended on the way out) with less machinery.
    """

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> _Run:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            if exc is not None and span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            otel_context.detach(self._token)  # type: ignore[arg-type]  # attach's token
            span.end()

    def done(self, outcome: Outcome | None) -> None:
        span = self._span
        if not span.is_recording():
            return  # sampled out: nothing would be kept
        kind = type(outcome)
        if kind is Complete:
            span.set_attribute("actorq.job.outcome", "succeeded")
            span.set_status(_OK)
        elif outcome is None:
            span.set_attribute("actorq.job.outcome", "lease_lost")
            span.set_status(_LEASE_LOST)
        elif isinstance(outcome, Retry):
            span.set_attribute("actorq.job.outcome", "retried")
            span.set_status(Status(StatusCode.ERROR, outcome.error or "retry"))
        elif isinstance(outcome, Discard):
            span.set_attribute("actorq.job.outcome", "dead")
            span.set_status(Status(StatusCode.ERROR, outcome.error))
        elif isinstance(outcome, Snooze):
            span.set_attribute("actorq.job.outcome", "snoozed")
        elif isinstance(outcome, Cancel):
            span.set_attribute("actorq.job.outcome", "cancelled")
        elif isinstance(outcome, Release):
            span.set_attribute("actorq.job.outcome", "released")
        elif isinstance(outcome, Suspend):
            span.set_attribute("actorq.job.outcome", "suspended")


class OpenTelemetryTracer:
    """The runtime's :class:`~actors.jobs.lowlevel.Tracer` on OpenTelemetry.

    Args:
        tracer_provider: where spans go (default: the global one, set by your SDK setup).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    @contextlib.contextmanager
    def enqueue(self, requests: list[EnqueueRequest]) -> Iterator[_Enqueue]:
        # Siblings under whatever is current (the caller's request, say): one per job.
        spans = [
            self._tracer.start_span(
                f"send {request.queue}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": MESSAGING_SYSTEM,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "enqueue",
                    "messaging.destination.name": request.queue,
                    "actorq.job.kind": request.kind,
                },
            )
            for request in requests
        ]
        try:
            written = [self._with_context(r, span) for r, span in zip(requests, spans, strict=True)]
            yield _Enqueue(written, spans)
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            for span in spans:
                span.end()

    def _with_context(self, request: EnqueueRequest, span: trace.Span) -> EnqueueRequest:
        if not span.get_span_context().is_valid:
            return request  # a no-op tracer: there is no context to carry
        headers: dict[str, str] = dict(request.headers)
        for key, value in context_headers(span).items():
            # A header is a label (at most 255 characters; a W3C tracestate may be longer)
            # and a job holds a bounded number: what does not fit is left out, never refused.
            if len(value) <= MAX_LABEL_LENGTH and (key in headers or len(headers) < MAX_HEADERS):
                headers[key] = value
        return attrs.evolve(request, headers=headers)

    def run(self, job: Job, *, worker: str) -> _Run:
        headers = job.headers
        parent = _NO_PARENT
        links: tuple[Link, ...] = ()
        if headers:
            found = _remote_parent(headers)
            if found is not None:
                parent, created = found
                links = (Link(created, _SEND_LINK),)
        span = self._tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "run",
                "messaging.destination.name": job.queue,
                "messaging.message.id": str(job.id),
                "actorq.job.kind": job.kind,
                "actorq.job.attempt": job.attempt,
                "actorq.job.max_attempts": job.max_attempts,
                "actorq.worker": worker,
            },
        )
        return _Run(span)


class TracedTransport(ForwardingTransport):
    """A transport whose every call (but ``wait_for_work``, which waits by design) is a
    CLIENT span ``actorq.storage <operation>`` under the current span."""

    def __init__(
        self, inner: Transport, *, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        super().__init__(inner)
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], **extra: Any
    ) -> list[EnqueueResult]:
        # PostgreSQL's enqueue_many takes the caller's connection: pass it through.
        return await self._forward("enqueue_many", lambda t: t.enqueue_many(requests, **extra))

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        if name in ("wait_for_work", "wait_for_jobs"):
            return await call(self.inner)
        with self._tracer.start_as_current_span(
            f"actorq.storage {name}",
            kind=SpanKind.CLIENT,
            attributes={"db.operation.name": name},
        ):
            return await call(self.inner)


def instrument_tracing(
    app: App, *, tracer_provider: trace.TracerProvider | None = None
) -> OpenTelemetryTracer:
    """Trace ``app``'s enqueues and runs with OpenTelemetry (``tracer_provider``, default the
    global one); returns the tracer, now ``app.tracer``."""
    tracer = OpenTelemetryTracer(tracer_provider)
    app.tracer = tracer
    return tracer
