"""The App: a registry of typed handlers, and the enqueue API."""

from __future__ import annotations

import inspect
import string
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import attrs
import cattrs

from actors.core import Clock, RealClock
from transports import (
    DEFAULT_MAX_ATTEMPTS,
    After,
    EnqueueRequest,
    EnqueueResult,
    InvalidRequest,
    Job,
    JobState,
    JsonValue,
    OnFailure,
    Transport,
)
from transports.lowlevel import SignalResult, check_label, validate_name

from ._backoff import Backoff, Exponential
from ._config import integer, number
from ._errors import (
    ConfigInvalid,
    DuplicateJobKind,
    JobFailed,
    PayloadInvalid,
    ResultTimeout,
    UnknownJobKind,
)
from ._outcomes import HandlerOutcome
from ._schedule import CatchUp, CronSchedule, Overlap
from ._tracing import Tracer

if TYPE_CHECKING:
    from ._context import JobContext

__all__ = ["App", "Handler", "Task", "TaskOptions"]

P = TypeVar("P")

Handler = Callable[["JobContext", P], Awaitable[HandlerOutcome | None]]
"""``async def handler(ctx, payload) -> outcome | None``."""

_converter = cattrs.Converter(forbid_extra_keys=True)
_DEFAULT_BACKOFF = Exponential(base=1.0, cap=600.0)

#: The stored integer columns (priority, max_attempts) are 32-bit on every backend.
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _queue_name(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    validate_name(value, "queue")  # type: ignore[arg-type]  # it checks the type too


def _int32(minimum: int) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        integer(f"task option {attr.name}", value, minimum=minimum, maximum=_INT32_MAX)

    return check


def _seconds(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        number(f"task option {attr.name}", value)


def _key_fields(template: str, option: str = "concurrency_key") -> list[tuple[str, str | None]]:
    """A key template (task ``option``) as (literal text, payload field or None) pairs.

    Raises:
        ConfigInvalid: a replacement field is not a plain name (``{tenant_id}``), or the
            template is not a label.
    """
    try:
        check_label(template, f"task option {option}")
        parts = list(string.Formatter().parse(template))
    except (InvalidRequest, ValueError) as exc:
        raise ConfigInvalid(f"task option {option}: {exc}") from exc
    found: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parts:
        if field is not None and (not field.isidentifier() or spec or conversion):
            raise ConfigInvalid(
                f"task option {option} {template!r}: {{{field}}} must name a payload "
                "field, like {tenant_id}"
            )
        found.append((literal, field))
    return found


def _key_template(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _key_fields(value, attr.name)  # type: ignore[arg-type]  # it checks the type too


def _backoff(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if not callable(getattr(value, "delay", None)):
        raise ConfigInvalid(f"task option backoff must be a Backoff, got {value!r}")


@attrs.frozen(kw_only=True)
class TaskOptions:
    """Per-kind settings, fixed at registration; the defaults of every task option.

    Raises:
        ConfigInvalid: an option is of the wrong type or out of range.
        transports.InvalidQueueName: ``queue`` is malformed.
    """

    #: The queue the kind's jobs go to.
    queue: str = attrs.field(default="default", validator=_queue_name)
    #: Runs before the job ends dead.
    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS, validator=_int32(1))
    #: The wait after a failed run.
    backoff: Backoff = attrs.field(factory=lambda: _DEFAULT_BACKOFF, validator=_backoff)
    #: Seconds a run may take; past it the handler is cancelled (None: no limit).
    timeout: float | None = attrs.field(default=None, validator=_seconds)
    #: Seconds a lease lives unrenewed (None: the Worker's ``lease_ttl``).
    lease_ttl: float | None = attrs.field(default=None, validator=_seconds)
    #: Lower runs first.
    priority: int = attrs.field(default=0, validator=_int32(_INT32_MIN))
    #: The jobs' concurrency key (see ``Transport.set_limit``): a name (``"stripe"``) or a
    #: template of payload fields (``"tenant:{tenant_id}"``), filled in at enqueue.
    concurrency_key: str | None = attrs.field(default=None, validator=_key_template)
    #: The jobs' fair-share partition (see *Fair share* in ``transports.Transport``): a name
    #: or a template of payload fields (``"tenant:{tenant_id}"``), filled in at enqueue.
    partition_key: str | None = attrs.field(default=None, validator=_key_template)

    def key_for(self, kind: str, payload: JsonValue) -> str | None:
        """The concurrency key of a job with this JSON ``payload``, or None.

        Raises:
            PayloadInvalid: the template names a field the payload lacks, or whose value is
                neither a string nor an integer.
        """
        return _filled(self.concurrency_key, "concurrency key", kind, payload)

    def partition_for(self, kind: str, payload: JsonValue) -> str | None:
        """The fair-share partition of a job with this JSON ``payload``, or None.

        Raises:
            PayloadInvalid: as :meth:`key_for`.
        """
        return _filled(self.partition_key, "partition key", kind, payload)


def _filled(template: str | None, what: str, kind: str, payload: JsonValue) -> str | None:
    """A key template filled in from a job's JSON payload (None: no template)."""
    if template is None:
        return None
    parts: list[str] = []
    for literal, field in _key_fields(template, what.replace(" ", "_")):
        parts.append(literal)
        if field is None:
            continue
        value = payload.get(field) if isinstance(payload, dict) else None
        if type(value) is not str and type(value) is not int:
            raise PayloadInvalid(
                f"the {what} {template!r} of {kind!r} needs payload "
                f"field {field!r} as a string or an integer"
            )
        parts.append(str(value))
    return "".join(parts)


def _task_options(**given: object) -> TaskOptions:
    """TaskOptions from the options a caller gave (None: the default)."""
    return TaskOptions(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]


class Task(Generic[P]):
    """A registered job kind: its handler, payload type and options.

    Returned by :meth:`App.task`; still callable as the plain handler function.
    """

    __slots__ = ("fn", "kind", "options", "payload_type")

    def __init__(
        self, kind: str, fn: Handler[P], payload_type: type[P] | None, options: TaskOptions
    ) -> None:
        self.kind = validate_name(kind, "kind")
        self.fn = fn
        self.payload_type = payload_type
        self.options = options

    def __repr__(self) -> str:
        return f"Task({self.kind!r}, queue={self.options.queue!r})"

    def __call__(self, ctx: JobContext, payload: P) -> Awaitable[HandlerOutcome | None]:
        return self.fn(ctx, payload)

    def structure(self, raw: JsonValue) -> P:
        """Build the handler's payload from stored JSON.

        Raises:
            PayloadInvalid: the JSON does not fit the payload type.
        """
        if self.payload_type is None:
            return typing.cast(P, raw)
        try:
            return _converter.structure(raw, self.payload_type)
        except Exception as exc:
            # No values in the message: it is stored as the job's error and logged, and a
            # payload must never reach a log.
            raise PayloadInvalid(
                f"payload of {self.kind!r} does not fit {_type_name(self.payload_type)}: "
                f"{_describe(exc, values=False)}"
            ) from exc

    def unstructure(self, payload: P) -> JsonValue:
        """Turn a payload into JSON-ready data, checking it against the payload type.

        The data is structured back into the payload type before it is accepted, so a value
        the handler could not receive (an attrs instance holding a field of the wrong type, a
        string for an ``int``) is refused here, at enqueue, instead of dying as poison later.

        Raises:
            PayloadInvalid: the value is not of the payload type.
        """
        payload_type = self.payload_type
        if payload_type is None or (payload is None and payload_type is type(None)):
            return payload
        if attrs.has(payload_type) and not isinstance(payload, payload_type):
            raise PayloadInvalid(
                f"payload of {self.kind!r} must be {_type_name(payload_type)}, "
                f"got {type(payload).__name__}"
            )
        try:
            raw = _converter.unstructure(payload, payload_type)
        except Exception as exc:
            raise PayloadInvalid(f"payload of {self.kind!r}: {_describe(exc)}") from exc
        self.structure(raw)
        return raw

    def request(
        self,
        payload: P,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float = 0.0,
        run_at: float | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
        concurrency_key: str | None = None,
        partition_key: str | None = None,
    ) -> EnqueueRequest:
        """The ``EnqueueRequest`` for one job of this kind (options default to the task's;
        the task's concurrency key template is filled in from the payload)."""
        raw = self.unstructure(payload)
        if concurrency_key is None:
            concurrency_key = self.options.key_for(self.kind, raw)
        if partition_key is None:
            partition_key = self.options.partition_for(self.kind, raw)
        return EnqueueRequest(
            kind=self.kind,
            payload=raw,
            queue=self.options.queue if queue is None else queue,
            priority=self.options.priority if priority is None else priority,
            delay=delay,
            run_at=run_at,
            max_attempts=self.options.max_attempts if max_attempts is None else max_attempts,
            dedupe_key=dedupe_key,
            concurrency_key=concurrency_key,
            partition_key=partition_key,
        )


def _type_name(tp: object) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def _describe(exc: BaseException, *, values: bool = True) -> str:
    """What went wrong; with ``values=False``, without quoting any part of the data."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc)) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if values else type(exc).__name__


def _is_async_callable(fn: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = type(fn).__call__  # the method, not callable()
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def _payload_type_of(fn: Callable[..., Any]) -> Any:
    """The annotation of the handler's second parameter (the payload), if any."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigInvalid(f"a handler must be a Python function; {fn!r} is not: {exc}") from exc
    try:
        bound = signature.bind(None, None)
    except TypeError as exc:
        raise ConfigInvalid(
            f"a handler is called as fn(ctx, payload); {fn!r} cannot be: {exc}"
        ) from exc
    payload_name = list(bound.arguments)[-1]
    # A callable object's annotations are its __call__ method's.
    annotated = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
    try:
        hints = typing.get_type_hints(annotated)
    except TypeError:
        return None  # not annotatable (a functools.partial): the payload is the stored JSON
    except NameError as exc:
        # A string annotation naming a class local to a function cannot be resolved here.
        raise ConfigInvalid(
            f"cannot resolve the payload annotation of {fn!r} ({exc}); pass payload_type="
        ) from exc
    hint = hints.get(payload_name)
    # No annotation, Any, object or None: the handler takes the stored JSON as it is.
    return None if hint in (None, Any, JsonValue, object, type(None)) else hint


class App:
    """Registered job kinds and how to enqueue them.

    Args:
        transport: where :meth:`enqueue` writes unless given another; optional, since a
            worker node gets its transport from its Topology.
        clock: the time :meth:`result` waits by (default: the wall clock).

    Example::

        app = App()

        @attrs.frozen
        class Welcome:
            user_id: int

        @app.task("email.welcome", queue="emails", max_attempts=5)
        async def welcome(ctx: JobContext, payload: Welcome) -> None:
            ...

        await app.enqueue(welcome, Welcome(user_id=7), transport=transport)
    """

    def __init__(self, transport: Transport | None = None, *, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock = clock
        #: Traces every enqueue and run when set (``actors.telemetry.instrument_tracing``).
        self.tracer: Tracer | None = None
        self._tasks: dict[str, Task[Any]] = {}
        self._schedules: dict[str, CronSchedule] = {}

    # --- registration ---------------------------------------------------------------------

    def task(
        self,
        kind: str,
        *,
        payload_type: type[Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        lease_ttl: float | None = None,
        concurrency_key: str | None = None,
        partition_key: str | None = None,
    ) -> Callable[[Handler[P]], Task[P]]:
        """Decorator registering ``async def fn(ctx, payload)`` as the handler of ``kind``.

        The payload type is ``payload_type`` or the annotation of the handler's second
        parameter; an attrs class is structured from the stored JSON with cattrs. The options
        are checked here, before the decorator is applied; each left out (None) takes its
        :class:`TaskOptions` default.

        Args:
            kind: the job kind, the key jobs name their handler by.
            payload_type: the handler's payload type, when not annotated.
            queue: the queue the kind's jobs go to.
            priority: lower runs first.
            max_attempts: runs before a job ends dead.
            backoff: the wait after a failed run.
            timeout: seconds a run may take before the handler is cancelled.
            lease_ttl: seconds a lease lives unrenewed, when not the Worker's.
            concurrency_key: the jobs' concurrency key, a name or a template of payload
                fields (``"tenant:{tenant_id}"``); a limit set on a key
                (``Transport.set_limit``) caps its running jobs cluster-wide.
            partition_key: the jobs' fair-share partition, a name or a template of payload
                fields (``"tenant:{tenant_id}"``): claims share the queue among partitions,
                so a tenant's backlog cannot starve another's jobs.

        Raises:
            DuplicateJobKind: ``kind`` is already registered (when decorating).
            ConfigInvalid: an option is out of range, or the handler is not an async
                function of ``(ctx, payload)``.
            transports.InvalidQueueName: ``kind`` or ``queue`` is not a valid name.
        """
        validate_name(kind, "kind")
        options = _task_options(
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            backoff=backoff,
            timeout=timeout,
            lease_ttl=lease_ttl,
            concurrency_key=concurrency_key,
            partition_key=partition_key,
        )

        def decorate(fn: Handler[P]) -> Task[P]:
            return self._register(kind, fn, payload_type, options)

        return decorate

    def register(
        self,
        kind: str,
        fn: Handler[P],
        *,
        payload_type: type[P] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        lease_ttl: float | None = None,
        concurrency_key: str | None = None,
        partition_key: str | None = None,
    ) -> Task[P]:
        """Register ``fn`` as the handler of ``kind`` (the plain-call form of :meth:`task`,
        with the same options and errors)."""
        options = _task_options(
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            backoff=backoff,
            timeout=timeout,
            lease_ttl=lease_ttl,
            concurrency_key=concurrency_key,
            partition_key=partition_key,
        )
        return self._register(kind, fn, payload_type, options)

    def _register(
        self, kind: str, fn: Handler[P], payload_type: type[P] | None, options: TaskOptions
    ) -> Task[P]:
        if kind in self._tasks:
            raise DuplicateJobKind(f"job kind {kind!r} is already registered")
        if not _is_async_callable(fn):
            raise ConfigInvalid(f"the handler of {kind!r} must be an async function")
        resolved = payload_type if payload_type is not None else _payload_type_of(fn)
        task: Task[P] = Task(kind, fn, resolved, options)
        self._tasks[kind] = task
        return task

    def schedule(
        self,
        name: str,
        expression: str,
        kind: str | Task[Any],
        *,
        payload: Any = None,
        queue: str | None = None,
        overlap: Overlap | None = None,
        catch_up: CatchUp | None = None,
        jitter: float | None = None,
    ) -> CronSchedule:
        """Enqueue ``kind`` on a cron schedule (fired by the cluster's cron leader).

        Args:
            name: the schedule's name, unique in the App (it keys the schedule's cursor).
            expression: five cron fields (minute hour day month weekday), or six with
                seconds last.
            kind: the task each tick enqueues.
            payload: each job's payload, of the task's payload type (checked now).
            queue: the queue (default: the task's).
            overlap: what a tick does while the previous job is active (default ALLOW).
            catch_up: what happens to ticks missed while no node led (default SKIP).
            jitter: up to this many seconds of delay per tick (default 0).

        Raises:
            InvalidCronExpression: ``expression`` does not parse or has neither 5 nor 6
                fields.
            ConfigInvalid: a schedule of that name exists, or ``jitter`` is negative or
                not finite.
            PayloadInvalid: ``payload`` is not of the task's payload type.
            UnknownJobKind: ``kind`` has no handler in this App.
            transports.InvalidQueueName: ``name`` or ``queue`` is not a valid name.
        """
        task = self._task(kind)
        if name in self._schedules:
            raise ConfigInvalid(f"a schedule named {name!r} already exists")
        given = {"queue": queue, "overlap": overlap, "catch_up": catch_up, "jitter": jitter}
        schedule = CronSchedule(
            name=name,
            expression=expression,
            kind=task.kind,
            payload=payload,
            **{k: v for k, v in given.items() if v is not None},  # type: ignore[arg-type]
        )
        task.unstructure(payload)  # a payload its handler could not take fails here, not later
        self._schedules[name] = schedule
        return schedule

    @property
    def schedules(self) -> list[CronSchedule]:
        """Every registered cron schedule, in registration order."""
        return list(self._schedules.values())

    def get(self, kind: str) -> Task[Any] | None:
        """The task registered for ``kind``, or None."""
        return self._tasks.get(kind)

    @property
    def tasks(self) -> Mapping[str, Task[Any]]:
        """Every registered task by kind."""
        return dict(self._tasks)

    @property
    def queues(self) -> list[str]:
        """The queues the registered tasks use, sorted."""
        return sorted({t.options.queue for t in self._tasks.values()})

    # --- enqueueing -----------------------------------------------------------------------

    def _task(self, kind_or_task: str | Task[Any]) -> Task[Any]:
        if isinstance(kind_or_task, Task):
            return kind_or_task
        task = self._tasks.get(kind_or_task)
        if task is None:
            raise UnknownJobKind(f"no handler is registered for job kind {kind_or_task!r}")
        return task

    def request(
        self,
        kind_or_task: str | Task[Any],
        payload: Any = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float = 0.0,
        run_at: float | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
        concurrency_key: str | None = None,
        partition_key: str | None = None,
        after: Iterable[int | EnqueueResult | Job | After] = (),
        workflow: str | None = None,
    ) -> EnqueueRequest:
        """Build the ``EnqueueRequest`` for a job (see :meth:`enqueue` for the options).

        Raises:
            UnknownJobKind: ``kind`` has no handler in this App.
            PayloadInvalid: ``payload`` is not of the task's payload type.
            transports.InvalidRequest: an option is out of range.
        """
        request = self._task(kind_or_task).request(
            payload,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
            concurrency_key=concurrency_key,
            partition_key=partition_key,
        )
        parents = _parents_of(after)
        if parents or workflow is not None:
            request = attrs.evolve(request, after=parents, workflow=workflow)
        return request

    def _transport(self, transport: Transport | None) -> Transport:
        chosen = transport or self.transport
        if chosen is None:
            raise ConfigInvalid("no transport: pass transport= or build App(transport)")
        return chosen

    @overload
    async def enqueue(
        self,
        kind_or_task: Task[P],
        payload: P,
        *,
        transport: Transport | None = ...,
        queue: str | None = ...,
        priority: int | None = ...,
        delay: float = ...,
        run_at: float | None = ...,
        max_attempts: int | None = ...,
        dedupe_key: str | None = ...,
        concurrency_key: str | None = ...,
        partition_key: str | None = ...,
        after: Iterable[int | EnqueueResult | Job | After] = ...,
        workflow: str | None = ...,
        connection: object | None = ...,
    ) -> EnqueueResult: ...

    @overload
    async def enqueue(
        self,
        kind_or_task: str,
        payload: Any = ...,
        *,
        transport: Transport | None = ...,
        queue: str | None = ...,
        priority: int | None = ...,
        delay: float = ...,
        run_at: float | None = ...,
        max_attempts: int | None = ...,
        dedupe_key: str | None = ...,
        concurrency_key: str | None = ...,
        partition_key: str | None = ...,
        after: Iterable[int | EnqueueResult | Job | After] = ...,
        workflow: str | None = ...,
        connection: object | None = ...,
    ) -> EnqueueResult: ...

    async def enqueue(
        self,
        kind_or_task: str | Task[Any],
        payload: Any = None,
        *,
        transport: Transport | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay: float = 0.0,
        run_at: float | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
        concurrency_key: str | None = None,
        partition_key: str | None = None,
        after: Iterable[int | EnqueueResult | Job | After] = (),
        workflow: str | None = None,
        connection: object | None = None,
    ) -> EnqueueResult:
        """Enqueue one job.

        Args:
            kind_or_task: the task, or its kind.
            payload: the job's payload, of the task's payload type.
            transport: where to write (default: the App's).
            queue: the queue (default: the task's).
            priority: lower runs first (default: the task's).
            delay: seconds from now until the job may run.
            run_at: the time the job may run (instead of ``delay``).
            max_attempts: runs before the job ends dead (default: the task's).
            dedupe_key: fold into an active job of the same queue with this key.
            concurrency_key: the job's concurrency key (default: the task's, filled in from
                the payload).
            partition_key: the job's fair-share partition (default: the task's, filled in
                from the payload).
            after: the jobs this one waits for (ids, enqueue results, jobs, or
                ``transports.After`` with its ``on_failure``): it stays ``pending`` until every
                one succeeded (see ``Transport``'s *Dependencies*).
            workflow: the workflow it belongs to (a label): listed, cancelled and cleaned up
                with the workflow's other jobs.
            connection: PostgreSQL only: an asyncpg connection whose transaction the job
                joins (it commits or rolls back with the caller's work).

        Raises:
            UnknownJobKind, PayloadInvalid: nothing was written.
            ConfigInvalid: no transport is given and the App has none.
            transports.TransportError: storage refused or failed; nothing was written.
        """
        request = self.request(
            kind_or_task,
            payload,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
            concurrency_key=concurrency_key,
            partition_key=partition_key,
            after=after,
            workflow=workflow,
        )
        target = self._transport(transport)
        if self.tracer is not None:
            (result,) = await self._enqueue_traced(target, [request], connection)
            return result
        if connection is not None:
            extra: dict[str, Any] = {"connection": connection}
            results: list[EnqueueResult] = await target.enqueue_many([request], **extra)
            return results[0]
        return await target.enqueue(request)

    async def signal(
        self, event_key: str, value: Any = None, *, transport: Transport | None = None
    ) -> SignalResult:
        """Set the event ``event_key`` to ``value`` and wake the jobs waiting for it.

        Every job suspended in ``ctx.wait_for(event_key, ...)`` becomes available at once and
        its wait returns ``value``. The event is kept, so a job that reaches the wait later
        gets ``value`` without suspending. The first value wins: signalling a key again
        changes nothing (``stored`` is False then). Needs no lease: any producer may signal.

        Raises:
            transports.InvalidStepName: ``event_key`` is not an identifier.
            transports.PayloadNotSerializable, transports.StepTooLarge: a bad ``value``.
            ConfigInvalid: no transport is given and the App has none.
        """
        return await self._transport(transport).signal(event_key, value)

    async def enqueue_many(
        self,
        requests: Iterable[EnqueueRequest],
        *,
        transport: Transport | None = None,
        connection: object | None = None,
    ) -> list[EnqueueResult]:
        """Enqueue a batch built with :meth:`request`, all or nothing (``connection`` as for
        :meth:`enqueue`)."""
        target = self._transport(transport)
        if self.tracer is not None:
            return await self._enqueue_traced(target, list(requests), connection)
        if connection is not None:
            extra: dict[str, Any] = {"connection": connection}
            many: list[EnqueueResult] = await target.enqueue_many(list(requests), **extra)
            return many
        return await target.enqueue_many(list(requests))

    async def _enqueue_traced(
        self, target: Transport, requests: list[EnqueueRequest], connection: object | None
    ) -> list[EnqueueResult]:
        assert self.tracer is not None
        extra: dict[str, Any] = {} if connection is None else {"connection": connection}
        with self.tracer.enqueue(requests) as trace:
            results: list[EnqueueResult] = await target.enqueue_many(trace.requests, **extra)
            trace.done(results)
        return results

    # --- dependencies -----------------------------------------------------------------------

    async def chain(
        self,
        *requests: EnqueueRequest,
        workflow: str | None = None,
        on_failure: OnFailure | str = OnFailure.CANCEL,
        transport: Transport | None = None,
    ) -> list[EnqueueResult]:
        """Enqueue jobs (built with :meth:`request`) that run one after the other, in one
        atomic batch: each waits for the one before it (by ``on_failure`` when that one
        fails: cancelled, the default, and the rest after it; or run anyway).

        Raises:
            ConfigInvalid: no request, or no transport.
            transports.TransportError: storage refused or failed; nothing was written.
        """
        if not requests:
            raise ConfigInvalid("a chain needs at least one request")
        policy = _policy(on_failure)
        linked = [
            _joined(request, [After(index=i - 1, on_failure=policy)] if i else [], workflow)
            for i, request in enumerate(requests)
        ]
        return await self.enqueue_many(linked, transport=transport)

    async def group(
        self,
        members: Iterable[EnqueueRequest],
        *,
        then: EnqueueRequest | None = None,
        workflow: str | None = None,
        on_failure: OnFailure | str = OnFailure.CANCEL,
        transport: Transport | None = None,
    ) -> list[EnqueueResult]:
        """Enqueue ``members`` (run in parallel) and, with ``then``, a fan-in callback that
        runs once after every member succeeded (``on_failure="run"``: once every member
        ended, whatever the outcome), all in one atomic batch. The callback reads its
        members' results with ``await ctx.parent_results()``. Returns the members' results,
        then the callback's.

        Raises:
            ConfigInvalid: no member, or no transport.
            transports.TransportError: storage refused or failed; nothing was written.
        """
        chosen = [_joined(member, [], workflow) for member in members]
        if not chosen:
            raise ConfigInvalid("a group needs at least one member")
        if then is not None:
            policy = _policy(on_failure)
            parents = [After(index=i, on_failure=policy) for i in range(len(chosen))]
            chosen.append(_joined(then, parents, workflow))
        return await self.enqueue_many(chosen, transport=transport)

    # --- results --------------------------------------------------------------------------

    async def result(
        self,
        job: int | EnqueueResult | Job,
        *,
        timeout: float | None = None,
        transport: Transport | None = None,
        poll_interval: float = 1.0,
    ) -> JsonValue:
        """Wait for a job to end and return what its handler returned (None: nothing).

        Waits through the store's wake-up (``Transport.wait_for_jobs``: memory events, the
        SQLite watcher, PostgreSQL ``NOTIFY``), reading the job once per wake-up; since a
        wake-up can be missed, it also reads it every ``poll_interval`` seconds. Time is the
        App's clock.

        Args:
            job: the job, its id, or the :class:`~transports.EnqueueResult` of its enqueue.
            timeout: most seconds to wait (None: as long as it takes; 0: look once).
            transport: where the job is (default: the App's).
            poll_interval: seconds between reads when no wake-up comes.

        Raises:
            JobFailed: the job is dead or was cancelled; its ``state``, ``last_error`` and
                ``errors`` say why.
            ResultTimeout: the job had not ended after ``timeout`` seconds.
            ConfigInvalid: a bad ``timeout``, ``poll_interval`` or job.
            transports.JobNotFound: no job has that id (it never existed or was cleaned up).
        """
        job_id = _job_id_of(job)
        if timeout is not None:
            number("timeout", timeout, strict=False)
        pause = number("poll_interval", poll_interval)
        target = self._transport(transport)
        clock = self.clock if self.clock is not None else _REAL_CLOCK
        deadline = None if timeout is None else clock.now() + timeout
        while True:
            found = await target.get(job_id)
            if found.state is JobState.SUCCEEDED:
                return found.result
            if found.state.is_final:
                raise JobFailed(found)
            now = clock.now()
            if deadline is not None and now >= deadline:
                raise ResultTimeout(
                    f"job {job_id} ({found.kind}) had not ended after {timeout:g}s; it is "
                    f"{found.state.value}"
                )
            wake = now + pause if deadline is None else min(deadline, now + pause)
            with clock.move_on_at(wake):
                await target.wait_for_jobs([job_id])


_REAL_CLOCK = RealClock()


def _job_id_of(job: object) -> int:
    if isinstance(job, EnqueueResult):
        return job.job_id
    if isinstance(job, Job):
        return job.id
    if isinstance(job, bool) or not isinstance(job, int):
        raise ConfigInvalid(f"job must be a job id, a Job or an EnqueueResult, got {job!r}")
    return job


def _parents_of(after: Iterable[int | EnqueueResult | Job | After]) -> list[int | After]:
    if isinstance(after, str | bytes) or not isinstance(after, Iterable):
        raise ConfigInvalid(f"after must be a sequence of jobs, got {after!r}")
    parents: list[int | After] = []
    for item in after:
        if isinstance(item, EnqueueResult):
            parents.append(item.job_id)
        elif isinstance(item, Job):
            parents.append(item.id)
        elif isinstance(item, After) or (isinstance(item, int) and not isinstance(item, bool)):
            parents.append(item)
        else:
            raise ConfigInvalid(f"after names {item!r}, which is not a job")
    return parents


def _policy(value: object) -> OnFailure:
    try:
        return OnFailure(value)  # type: ignore[arg-type]  # anything else raises ValueError
    except ValueError:
        raise ConfigInvalid(f"on_failure must be 'cancel' or 'run', got {value!r}") from None


def _joined(request: EnqueueRequest, parents: list[After], workflow: str | None) -> EnqueueRequest:
    if not isinstance(request, EnqueueRequest):
        raise ConfigInvalid(f"expected a request built with App.request, got {request!r}")
    return attrs.evolve(
        request,
        after=(*request.after, *parents),
        workflow=request.workflow if workflow is None else workflow,
    )
