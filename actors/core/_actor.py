"""The ``Actor`` base class and the ``Context`` it runs in."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._errors import ActorCrashed, ActorStopped
from ._messages import ExitKind, ExitReason, Terminated

if TYPE_CHECKING:
    from ._cell import Cell
    from ._clock import Clock
    from ._ref import ActorRef
    from ._system import ActorSystem

__all__ = ["Actor", "Context"]

M = TypeVar("M")
N = TypeVar("N")

#: Mailbox capacity used when none is given.
DEFAULT_MAILBOX_SIZE = 1000
#: Seconds a stopping actor gets to finish before it is cancelled, when none is given.
DEFAULT_SHUTDOWN = 5.0


class Actor(Generic[M]):
    """Base class for actors handling messages of type ``M``.

    Subclass it and override ``receive`` (and optionally ``on_start`` / ``on_stop``). The runtime
    calls them one at a time, never concurrently, in the actor's own task. An exception raised by
    any of them crashes the actor: ``on_stop`` is called with a CRASHED reason and the failure
    goes to the parent (a supervisor restarts it; the system records it). Cancellation is not a
    crash and is never swallowed.
    """

    _context: Context[M] | None = None

    @property
    def context(self) -> Context[M]:
        """The running actor's context (self ref, clock, system, watch, stop, logger).

        Raises:
            RuntimeError: before the actor was spawned.
        """
        if self._context is None:
            raise RuntimeError(f"{type(self).__name__} has not been spawned yet")
        return self._context

    async def on_start(self) -> None:
        """Called once before the first message; ``spawn`` returns after it finished."""

    async def receive(self, msg: M) -> None:
        """Handle one message. Override this."""
        raise NotImplementedError(f"{type(self).__name__} does not override receive()")

    async def on_stop(self, reason: ExitReason) -> None:
        """Called once when the actor stops, after its children stopped, for every reason.

        When the actor is KILLED it runs under cancellation: only its code up to the first
        checkpoint runs.
        """

    async def _child_exited(self, child: ActorRef[Any], reason: ExitReason) -> None:
        # Children spawned with context.spawn are linked: a crash takes the parent down with it,
        # like a task in a trio nursery. Supervisors override this with their restart policy.
        if reason.kind is ExitKind.CRASHED:
            raise ActorCrashed(f"child {child.name} {reason}") from reason.exception


class Context(Generic[M]):
    """What a running actor knows about itself and its system; ``actor.context``."""

    __slots__ = ("_cell", "logger")

    def __init__(self, cell: Cell[M]) -> None:
        self._cell = cell
        #: A logger named after the actor class (``actors.core.actor.<Class>``).
        self.logger = logging.getLogger(f"actors.core.actor.{type(cell.actor).__name__}")

    @property
    def self_ref(self) -> ActorRef[M]:
        """This actor's own ref."""
        return self._cell.ref

    @property
    def name(self) -> str:
        """This actor's name."""
        return self._cell.name

    @property
    def clock(self) -> Clock:
        """The system's clock; use it for every sleep, timeout and timestamp."""
        return self._cell.system.clock

    @property
    def system(self) -> ActorSystem:
        """The actor system this actor runs in."""
        return self._cell.system

    @property
    def parent(self) -> ActorRef[Any] | None:
        """The parent actor's ref, or None for a top-level actor."""
        parent = self._cell.parent
        return getattr(parent, "ref", None)

    async def spawn(
        self,
        actor: Actor[N] | Callable[[], Actor[N]],
        *,
        name: str | None = None,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        shutdown: float = DEFAULT_SHUTDOWN,
    ) -> ActorRef[N]:
        """Start a linked child, stopped (in reverse start order) before this actor stops.

        A crash of the child crashes this actor with ``ActorCrashed``; use a ``Supervisor``
        child when failures should be restarted instead.
        """
        cell = await self._cell.spawn_child(
            actor, name=name, mailbox_size=mailbox_size, shutdown=shutdown
        )
        return cell.ref

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` in a background task owned by this actor.

        For work that must not block the mailbox: timers, a long call racing a message, a job
        handler that a later message may cancel. The task runs concurrently with ``receive``
        (interleaving only at awaits, on the actor's own event loop) and is cancelled after
        ``on_stop`` returns, so ``on_stop`` may still wait for it. An exception it raises
        crashes the actor like one raised in ``receive``.

        Raises:
            ActorStopped: the actor has stopped.
        """
        self._cell.start_task(fn, args)

    def watch(self, ref: ActorRef[Any]) -> None:
        """Receive ``Terminated(ref=ref, ...)`` when ``ref`` stops (at once if already stopped).

        Raises:
            ActorStopped: if this actor itself has stopped.
        """
        cell = self._cell
        if cell.exit_reason is not None:
            raise ActorStopped(f"{cell.ref!r} cannot watch: it is stopped")
        target = ref._cell
        if target is cell:
            raise ValueError("an actor cannot watch itself")
        if target.exit_reason is not None:
            cell.post_system(Terminated(ref=ref, reason=target.exit_reason))
            return
        target.watchers.add(cell)
        cell.watching.add(target)

    def unwatch(self, ref: ActorRef[Any]) -> None:
        """Stop watching ``ref``; no ``Terminated`` for it arrives afterwards."""
        cell = self._cell
        target = ref._cell
        target.watchers.discard(cell)
        cell.watching.discard(target)
        cell.drop_terminated(target)

    def stop(self) -> None:
        """Stop this actor normally once the current message is handled.

        Messages still in the mailbox go to dead letters.
        """
        self._cell.request_stop(ExitReason.normal())
