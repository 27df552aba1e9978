"""The App: a registry of typed handlers, and the enqueue API."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import attrs
import cattrs

from transports import DEFAULT_MAX_ATTEMPTS, EnqueueRequest, EnqueueResult, JsonValue, Transport
from transports.lowlevel import validate_name

from ._backoff import Backoff, Exponential
from ._errors import DuplicateJobKind, PayloadInvalid, UnknownJobKind
from ._outcomes import HandlerOutcome
from ._schedule import CronSchedule

if TYPE_CHECKING:
    from ._context import JobContext

__all__ = ["App", "Handler", "Task", "TaskOptions"]

P = TypeVar("P")

Handler = Callable[["JobContext", P], Awaitable[HandlerOutcome | None]]
"""``async def handler(ctx, payload) -> outcome | None``."""

_converter = cattrs.Converter(forbid_extra_keys=True)
_DEFAULT_BACKOFF = Exponential(base=1.0, cap=600.0)


@attrs.frozen(kw_only=True)
class TaskOptions:
    """Per-kind settings, fixed at registration."""

    queue: str = attrs.field(default="default", validator=lambda _i, _a, v: validate_name(v))
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # runs before the job ends dead
    backoff: Backoff = attrs.field(factory=lambda: _DEFAULT_BACKOFF)  # wait after a failed run
    timeout: float | None = None  # seconds a run may take; past it the handler is cancelled
    lease_ttl: float | None = None  # seconds a lease lives unrenewed; None: the worker's
    priority: int = 0  # lower runs first

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.lease_ttl is not None and self.lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be > 0, got {self.lease_ttl}")


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
            raise PayloadInvalid(
                f"payload of {self.kind!r} does not fit {_type_name(self.payload_type)}: "
                f"{_describe(exc)}"
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
    ) -> EnqueueRequest:
        """The ``EnqueueRequest`` for one job of this kind (options default to the task's)."""
        return EnqueueRequest(
            kind=self.kind,
            payload=self.unstructure(payload),
            queue=queue or self.options.queue,
            priority=self.options.priority if priority is None else priority,
            delay=delay,
            run_at=run_at,
            max_attempts=self.options.max_attempts if max_attempts is None else max_attempts,
            dedupe_key=dedupe_key,
        )


def _type_name(tp: object) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc)) or str(exc)
    return f"{type(exc).__name__}: {exc}"


def _is_async_callable(fn: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = type(fn).__call__  # the method, not callable()
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def _payload_type_of(fn: Callable[..., Any]) -> Any:
    """The annotation of the handler's second parameter (the payload), if any."""
    signature = inspect.signature(fn)
    try:
        bound = signature.bind(None, None)
    except TypeError as exc:
        raise TypeError(
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
        raise TypeError(
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

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport
        self._tasks: dict[str, Task[Any]] = {}
        self._schedules: dict[str, CronSchedule] = {}

    # --- registration ---------------------------------------------------------------------

    def task(
        self,
        kind: str,
        *,
        payload_type: type[Any] | None = None,
        **options: Any,
    ) -> Callable[[Handler[P]], Task[P]]:
        """Decorator registering ``async def fn(ctx, payload)`` as the handler of ``kind``.

        The payload type is ``payload_type`` or the annotation of the handler's second
        parameter; an attrs class is structured from the stored JSON with cattrs. Options are
        :class:`TaskOptions` fields.

        Raises:
            DuplicateJobKind: ``kind`` is already registered.
            InvalidQueueName: ``kind`` or ``queue`` is not a valid name.
        """

        def decorate(fn: Handler[P]) -> Task[P]:
            return self.register(kind, fn, payload_type=payload_type, **options)

        return decorate

    def register(
        self,
        kind: str,
        fn: Handler[P],
        *,
        payload_type: type[P] | None = None,
        **options: Any,
    ) -> Task[P]:
        """Register ``fn`` as the handler of ``kind`` (the plain-call form of :meth:`task`)."""
        if kind in self._tasks:
            raise DuplicateJobKind(f"job kind {kind!r} is already registered")
        if not _is_async_callable(fn):
            raise TypeError(f"the handler of {kind!r} must be an async function")
        resolved = payload_type if payload_type is not None else _payload_type_of(fn)
        task: Task[P] = Task(kind, fn, resolved, TaskOptions(**options))
        self._tasks[kind] = task
        return task

    def schedule(
        self, name: str, expression: str, kind: str | Task[Any], **options: Any
    ) -> CronSchedule:
        """Enqueue ``kind`` on a cron schedule (fired by the cluster's cron leader).

        Options are :class:`CronSchedule` fields (``payload``, ``queue``, ``overlap``,
        ``catch_up``, ``jitter``).

        Raises:
            InvalidCronExpression: ``expression`` does not parse.
            UnknownJobKind: ``kind`` has no handler in this App.
            ValueError: a schedule of that name exists.
        """
        task = self._task(kind)
        if name in self._schedules:
            raise ValueError(f"a schedule named {name!r} already exists")
        schedule = CronSchedule(name=name, expression=expression, kind=task.kind, **options)
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
        self, kind_or_task: str | Task[Any], payload: Any = None, **options: Any
    ) -> EnqueueRequest:
        """Build the ``EnqueueRequest`` for a job (see :meth:`Task.request` for options).

        Raises:
            UnknownJobKind: ``kind`` has no handler in this App.
            PayloadInvalid: ``payload`` is not of the task's payload type.
        """
        return self._task(kind_or_task).request(payload, **options)

    def _transport(self, transport: Transport | None) -> Transport:
        chosen = transport or self.transport
        if chosen is None:
            raise RuntimeError("no transport: pass transport= or build App(transport)")
        return chosen

    @overload
    async def enqueue(
        self,
        kind_or_task: Task[P],
        payload: P,
        *,
        transport: Transport | None = ...,
        **options: Any,
    ) -> EnqueueResult: ...

    @overload
    async def enqueue(
        self,
        kind_or_task: str,
        payload: Any = ...,
        *,
        transport: Transport | None = ...,
        **options: Any,
    ) -> EnqueueResult: ...

    async def enqueue(
        self,
        kind_or_task: str | Task[Any],
        payload: Any = None,
        *,
        transport: Transport | None = None,
        **options: Any,
    ) -> EnqueueResult:
        """Enqueue one job.

        Options: ``queue``, ``priority``, ``delay``, ``run_at``, ``max_attempts``,
        ``dedupe_key``. Extra keywords a backend supports pass through, such as PostgreSQL's
        ``connection=`` to enqueue inside the caller's own transaction.

        Raises:
            UnknownJobKind, PayloadInvalid: nothing was written.
            transports.TransportError: storage refused or failed; nothing was written.
        """
        extra = {k: options.pop(k) for k in list(options) if k not in _REQUEST_OPTIONS}
        request = self.request(kind_or_task, payload, **options)
        target = self._transport(transport)
        if extra:
            results: list[EnqueueResult] = await target.enqueue_many([request], **extra)
            return results[0]
        return await target.enqueue(request)

    async def enqueue_many(
        self,
        requests: Iterable[EnqueueRequest],
        *,
        transport: Transport | None = None,
        **extra: Any,
    ) -> list[EnqueueResult]:
        """Enqueue a batch built with :meth:`request`, all or nothing."""
        target = self._transport(transport)
        if extra:
            many: list[EnqueueResult] = await target.enqueue_many(list(requests), **extra)
            return many
        return await target.enqueue_many(list(requests))


_REQUEST_OPTIONS = frozenset({"queue", "priority", "delay", "run_at", "max_attempts", "dedupe_key"})
