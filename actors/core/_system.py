"""The actor system: the root task group every actor task lives in."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
from anyio.abc import TaskGroup

from ._actor import DEFAULT_MAILBOX_SIZE, DEFAULT_SHUTDOWN, Actor
from ._cell import Cell
from ._clock import Clock, RealClock
from ._errors import ActorCrashed, ActorStopped
from ._messages import ActorFailure, DeadLetter, ExitKind, ExitReason
from ._ref import ActorRef

if TYPE_CHECKING:
    from ._supervisor import ChildSpec, Strategy, SupervisorRef

__all__ = ["ActorSystem", "MailboxStatistics", "SystemStatistics", "open_actor_system"]

M = TypeVar("M")

logger = logging.getLogger("actors.core")
dead_letter_logger = logging.getLogger("actors.core.dead_letters")

#: Seconds ``shutdown()`` gives the whole system before cancelling what is left, by default.
DEFAULT_SYSTEM_SHUTDOWN = 10.0


def log_dead_letter(letter: DeadLetter) -> None:
    """The default dead-letter sink: one warning per undelivered message."""
    dead_letter_logger.warning(
        "dead letter to %s: %r (%s)", letter.ref.name, letter.message, letter.reason
    )


@attrs.frozen(kw_only=True)
class SystemStatistics:
    """A snapshot of an actor system, returned by ``ActorSystem.statistics()``."""

    #: Actors started and not yet stopped.
    actors: int
    #: Messages handed to the dead-letter sink so far.
    dead_letters: int
    #: Crashes of top-level actors so far.
    failures: int


@attrs.frozen(kw_only=True)
class MailboxStatistics:
    """One live actor's mailbox, in ``ActorSystem.mailboxes()``."""

    #: The actor's name (a ``/``-separated path under its parent).
    name: str
    #: Messages waiting in it now.
    depth: int
    #: How many it holds before ``tell`` waits.
    capacity: int


class ActorSystem:
    """The root of a tree of actors. Create it with ``open_actor_system``.

    Top-level actors are children of the system. A top-level crash is appended to ``failures``
    and passed to ``on_failure``; without an ``on_failure`` hook it also cancels the body of the
    ``async with`` block, which then raises ``ActorCrashed`` (the crash on ``__cause__``) after
    an orderly shutdown, just as a trio nursery re-raises a failed child.
    """

    def __init__(
        self,
        tg: TaskGroup,
        *,
        name: str,
        clock: Clock,
        dead_letters: Callable[[DeadLetter], None],
        on_failure: Callable[[ActorFailure], None] | None,
        shutdown_timeout: float,
    ) -> None:
        self._tg = tg
        #: The system's name, for logs.
        self.name = name
        #: The clock every actor of this system uses.
        self.clock = clock
        #: Every top-level crash so far, oldest first.
        self.failures: list[ActorFailure] = []
        self.children: list[Cell[Any]] = []
        self._dead_letters_sink = dead_letters
        self._on_failure = on_failure
        self._shutdown_timeout = shutdown_timeout
        self._body_scope = anyio.CancelScope()
        self._closing = False
        self._ids = itertools.count(1)
        self._actor_count = 0
        self._dead_letter_count = 0

    async def spawn(
        self,
        actor: Actor[M] | Callable[[], Actor[M]],
        *,
        name: str | None = None,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        shutdown: float = DEFAULT_SHUTDOWN,
    ) -> ActorRef[M]:
        """Start a top-level actor and return its ref once its ``on_start`` has run.

        Args:
            actor: an actor instance, or a zero-argument factory returning one.
            name: a label for logs and reprs (default: class name and a number).
            mailbox_size: mailbox capacity (>= 1); ``tell`` waits and ``tell_nowait`` raises
                ``MailboxFull`` beyond it.
            shutdown: seconds it gets to stop gracefully before it is cancelled.

        Raises:
            ActorStopped: if the system is shutting down.
        """
        cell = await self._start_cell(
            self, actor, name=name, mailbox_size=mailbox_size, shutdown=shutdown
        )
        return cell.ref

    async def spawn_supervisor(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | None = None,
        max_restarts: int = 3,
        within: float = 5.0,
        name: str | None = None,
        shutdown: float = math.inf,
    ) -> SupervisorRef:
        """Start a top-level ``Supervisor`` with the given children; see ``Supervisor``."""
        from ._supervisor import Strategy, Supervisor, SupervisorRef  # imported late: a cycle

        supervisor = Supervisor(
            children,
            strategy=Strategy.ONE_FOR_ONE if strategy is None else strategy,
            max_restarts=max_restarts,
            within=within,
        )
        ref = await self.spawn(supervisor, name=name, shutdown=shutdown)
        return SupervisorRef(ref)

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop every actor, top-level ones in reverse start order, each after its children.

        Each actor gets its own ``shutdown`` timeout, capped by what is left of ``timeout``,
        then is cancelled; so this returns within about ``timeout`` seconds on the clock.
        No new actors can be spawned afterwards.
        """
        if timeout is None:
            timeout = self._shutdown_timeout
        self._closing = True
        clock = self.clock
        deadline = clock.now() + timeout
        while self.children:
            cell = self.children[-1]
            remaining = max(0.0, deadline - clock.now())
            await cell.stop_and_wait(ExitReason.shutdown(), min(cell.shutdown_timeout, remaining))

    def statistics(self) -> SystemStatistics:
        """Return a snapshot of actor, dead-letter and failure counts."""
        return SystemStatistics(
            actors=self._actor_count,
            dead_letters=self._dead_letter_count,
            failures=len(self.failures),
        )

    def mailboxes(self) -> list[MailboxStatistics]:
        """Return a snapshot of every live actor's mailbox, parents before their children."""
        found: list[MailboxStatistics] = []
        stack = list(reversed(self.children))
        while stack:
            cell = stack.pop()
            if cell.exit_reason is None:
                found.append(
                    MailboxStatistics(
                        name=cell.name,
                        depth=cell.tx.statistics().current_buffer_used,
                        capacity=cell.mailbox_size,
                    )
                )
            stack.extend(reversed(cell.children))
        return found

    # -- used by cells ----------------------------------------------------------------------

    def child_exited(self, cell: Cell[Any], reason: ExitReason) -> None:
        try:
            self.children.remove(cell)
        except ValueError:
            pass
        if reason.kind is not ExitKind.CRASHED:
            return
        assert reason.exception is not None
        failure = ActorFailure(ref=cell.ref, exception=reason.exception)
        self.failures.append(failure)
        if self._on_failure is None:
            logger.error("top-level actor %s %s", cell.name, reason)
            self._body_scope.cancel()
            return
        try:
            self._on_failure(failure)
        except Exception:
            logger.exception("on_failure hook raised for %s", cell.name)

    def _dead_letter(self, letter: DeadLetter) -> None:
        self._dead_letter_count += 1
        try:
            self._dead_letters_sink(letter)
        except Exception:
            logger.exception("dead-letter sink raised")

    async def _start_cell(
        self,
        parent: ActorSystem | Cell[Any],
        actor: Actor[M] | Callable[[], Actor[M]],
        *,
        name: str | None,
        mailbox_size: int,
        shutdown: float,
        index: int | None = None,
    ) -> Cell[M]:
        if self._closing:
            raise ActorStopped(f"actor system {self.name!r} is shutting down")
        if isinstance(parent, Cell) and parent.exit_reason is not None:
            raise ActorStopped(f"{parent.ref!r} is stopped and cannot start children")
        instance = actor if isinstance(actor, Actor) else actor()
        label = name or f"{type(instance).__name__}-{next(self._ids)}"
        full_name = label if parent is self else f"{parent.name}/{label}"
        cell = Cell(
            self, parent, instance, name=full_name, mailbox_size=mailbox_size, shutdown=shutdown
        )
        if index is None:
            parent.children.append(cell)
        else:
            parent.children.insert(index, cell)
        self._actor_count += 1
        await self._tg.start(cell.run)
        return cell

    def __repr__(self) -> str:
        return f"<ActorSystem {self.name} actors={self._actor_count}>"


@asynccontextmanager
async def open_actor_system(
    *,
    name: str = "actors",
    clock: Clock | None = None,
    dead_letters: Callable[[DeadLetter], None] | None = None,
    on_failure: Callable[[ActorFailure], None] | None = None,
    shutdown_timeout: float = DEFAULT_SYSTEM_SHUTDOWN,
) -> AsyncIterator[ActorSystem]:
    """Open an actor system; leaving the block shuts it down and no actor task outlives it.

    Args:
        name: the system's name, for logs.
        clock: the clock for every actor (default ``RealClock()``).
        dead_letters: sink for undeliverable messages (default: log a warning).
        on_failure: called with each top-level crash. Without it, a top-level crash ends the
            block: its body is cancelled, the system shuts down, and ``ActorCrashed`` is raised.
        shutdown_timeout: seconds the final ``shutdown()`` may take before cancelling actors.

    Raises:
        ActorCrashed: a top-level actor crashed and no ``on_failure`` hook was given.
    """
    async with anyio.create_task_group() as tg:
        system = ActorSystem(
            tg,
            name=name,
            clock=RealClock() if clock is None else clock,
            dead_letters=log_dead_letter if dead_letters is None else dead_letters,
            on_failure=on_failure,
            shutdown_timeout=shutdown_timeout,
        )
        body_error: Exception | None = None
        try:
            with system._body_scope:
                yield system
        except Exception as exc:
            # Re-raised below, outside the task group, so it is not wrapped in an ExceptionGroup
            # (actor tasks never raise; cancellation still propagates untouched).
            body_error = exc
        finally:
            try:
                await system.shutdown()
            finally:
                # Only actors that are already stopping remain; cancel whatever still lingers.
                tg.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
    if system.failures and on_failure is None:
        first = system.failures[0]
        raise ActorCrashed(f"{first.ref.name} crashed: {first.exception!r}") from first.exception
