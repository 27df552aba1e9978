"""The runtime behind one actor incarnation: mailbox, task, lifecycle, links and watches."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from ._actor import Actor, Context
from ._errors import ActorStopped
from ._messages import DeadLetter, ExitKind, ExitReason, Terminated
from ._ref import ActorRef, Reply

if TYPE_CHECKING:
    from ._system import ActorSystem

M = TypeVar("M")
N = TypeVar("N")

logger = logging.getLogger("actors.core")

#: Put in the mailbox to wake an idle actor when a system message arrives; never delivered.
_WAKE = object()
#: System-queue entry asking the loop to stop after the current message.
_STOP = object()
#: Messages handled back to back before the loop yields to other tasks, for fairness.
_BATCH = 64


class Parent(Protocol):
    """What a cell needs from whoever started it: an actor cell or the system."""

    children: list[Cell[Any]]

    def child_exited(self, cell: Cell[Any], reason: ExitReason) -> None: ...


class _ChildExited:
    __slots__ = ("cell", "reason")

    def __init__(self, cell: Cell[Any], reason: ExitReason) -> None:
        self.cell = cell
        self.reason = reason


class Cell(Generic[M]):
    """One actor incarnation. Owned by its parent; its task lives in the system's task group."""

    __slots__ = (
        "_current",
        "_done",
        "_idle",
        "_kill_scope",
        "_loop_scope",
        "_stop_reason",
        "_sysq",
        "_task_error",
        "_task_id",
        "_tasks",
        "actor",
        "children",
        "exit_reason",
        "mailbox_size",
        "name",
        "parent",
        "ref",
        "rx",
        "shutdown_timeout",
        "system",
        "tx",
        "watchers",
        "watching",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: Parent,
        actor: Actor[M],
        *,
        name: str,
        mailbox_size: int,
        shutdown: float,
    ) -> None:
        if mailbox_size < 1:
            raise ValueError(f"mailbox_size must be at least 1, got {mailbox_size}")
        if shutdown < 0:
            raise ValueError(f"shutdown must be >= 0, got {shutdown}")
        if actor._context is not None:
            raise ValueError(f"{actor!r} was already spawned; spawn a new instance")
        self.system = system
        self.parent = parent
        self.actor = actor
        self.name = name
        self.mailbox_size = mailbox_size
        self.shutdown_timeout = shutdown
        self.tx, self.rx = anyio.create_memory_object_stream[object](mailbox_size)
        self.children: list[Cell[Any]] = []
        self.watchers: set[Cell[Any]] = set()
        self.watching: set[Cell[Any]] = set()
        self.exit_reason: ExitReason | None = None
        self._sysq: deque[object] = deque()
        self._idle = False
        self._stop_reason = ExitReason.normal()
        self._kill_scope = anyio.CancelScope()
        self._loop_scope = anyio.CancelScope()
        self._tasks: TaskGroup | None = None
        self._task_error: Exception | None = None
        self._done = anyio.Event()
        self._current: object = None
        self._task_id: int | None = None
        self.ref: ActorRef[M] = ActorRef(self)
        actor._context = Context(self)

    # -- talking to the cell from other tasks -------------------------------------------------

    def post_system(self, item: object) -> None:
        """Queue a system message, handled before user messages, and wake the actor if idle."""
        if self.exit_reason is not None:
            return
        self._sysq.append(item)
        if self._idle:
            try:
                self.tx.send_nowait(_WAKE)
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # a full mailbox means the actor is about to wake anyway

    def request_stop(self, reason: ExitReason) -> None:
        """Ask the actor to stop after its current message (the first request wins)."""
        if self.exit_reason is not None or _STOP in self._sysq:
            return
        self._stop_reason = reason
        self.post_system(_STOP)

    def kill(self) -> None:
        """Cancel the actor's task; it exits with a KILLED reason."""
        self._kill_scope.cancel()

    async def stop_and_wait(self, reason: ExitReason, timeout: float) -> None:
        """Ask the actor to stop, wait up to ``timeout`` on the clock, then kill it."""
        if self.exit_reason is not None:
            return
        self.request_stop(reason)
        with self.system.clock.move_on_after(timeout):
            await self._done.wait()
        if not self._done.is_set():
            self.kill()
            await self._done.wait()

    def is_current_task(self) -> bool:
        """True when called from this actor's own task."""
        return self._task_id == anyio.get_current_task().id

    def drop_terminated(self, target: Cell[Any]) -> None:
        """Forget pending Terminated notifications about ``target`` (after an unwatch)."""
        kept = [i for i in self._sysq if not (type(i) is Terminated and i.ref._cell is target)]
        self._sysq.clear()
        self._sysq.extend(kept)

    def child_exited(self, cell: Cell[Any], reason: ExitReason) -> None:
        """Called by a child when it has stopped; the actor handles it in its own task."""
        try:
            self.children.remove(cell)
        except ValueError:
            pass
        self.post_system(_ChildExited(cell, reason))

    def dead_letter(self, msg: object, reason: str) -> None:
        """Hand an undeliverable message to the system's sink; fail its pending reply."""
        if msg is _WAKE:
            return
        reply = getattr(msg, "reply_to", None)
        if isinstance(reply, Reply):
            reply._fail_if_pending(ActorStopped(f"{self.ref!r} stopped before answering"))
        self.system._dead_letter(DeadLetter(ref=self.ref, message=msg, reason=reason))

    async def spawn_child(
        self,
        actor: Actor[N] | Callable[[], Actor[N]],
        *,
        name: str | None,
        mailbox_size: int,
        shutdown: float,
        index: int | None = None,
    ) -> Cell[N]:
        """Start a child owned by this cell; returns once its ``on_start`` has run."""
        return await self.system._start_cell(
            self, actor, name=name, mailbox_size=mailbox_size, shutdown=shutdown, index=index
        )

    # -- the actor's task ---------------------------------------------------------------------

    def start_task(self, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]) -> None:
        """Run ``fn(*args)`` in a task owned by this actor (see ``Context.start_soon``)."""
        if self._tasks is None or self.exit_reason is not None:
            raise ActorStopped(f"{self.ref!r} is stopped: it cannot start tasks")
        self._tasks.start_soon(self._guard_task, fn, args)

    async def _guard_task(
        self, fn: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            # A failing task crashes its actor, exactly as a failing receive() would.
            if self._task_error is None:
                self._task_error = exc
            self._loop_scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the actor to completion; never raises except the backend's cancellation."""
        self._task_id = anyio.get_current_task().id
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                await self._run(task_status)
            finally:
                tasks.cancel_scope.cancel()

    async def _run(self, task_status: TaskStatus[None]) -> None:
        reason = ExitReason.killed()
        try:
            with self._kill_scope:
                try:
                    with self._loop_scope:
                        try:
                            await self.actor.on_start()
                        finally:
                            task_status.started()
                        await self._loop()
                        reason = self._stop_reason
                    if self._task_error is not None:
                        reason = ExitReason.crashed(self._task_error)
                except Exception as exc:
                    reason = ExitReason.crashed(exc)
        except anyio.get_cancelled_exc_class():
            # The whole system is being cancelled: no waiting, but on_stop still runs up to its
            # first checkpoint and every message still reaches dead letters. Then re-raise.
            try:
                for child in self.children:
                    child.kill()
                await self._on_stop(ExitReason.killed())
            finally:
                self._close(ExitReason.killed())
            raise
        try:
            await self._stop_children(reason)
            reason = await self._on_stop(reason)
            if self._task_error is not None and reason.kind is not ExitKind.CRASHED:
                reason = ExitReason.crashed(self._task_error)
        finally:
            self._close(reason)

    async def _loop(self) -> None:
        receive_nowait = self.rx.receive_nowait
        receive = self.rx.receive
        handle = self.actor.receive
        sysq = self._sysq
        budget = _BATCH
        while True:
            if sysq:
                item = sysq.popleft()
                if item is _STOP:
                    return
                if type(item) is _ChildExited:
                    await self.actor._child_exited(item.cell.ref, item.reason)
                else:
                    await handle(item)  # type: ignore[arg-type]  # Terminated, see watch()
                continue
            try:
                msg = receive_nowait()
            except anyio.WouldBlock:
                self._idle = True
                try:
                    msg = await receive()
                finally:
                    self._idle = False
                budget = _BATCH
            if msg is _WAKE:
                continue
            self._current = msg
            await handle(msg)  # type: ignore[arg-type]  # only ActorRef[M] puts messages here
            self._current = None
            budget -= 1
            if not budget:
                budget = _BATCH
                await anyio.lowlevel.checkpoint()

    async def _stop_children(self, reason: ExitReason) -> None:
        hurry = reason.kind is ExitKind.KILLED
        while self.children:
            child = self.children[-1]
            await child.stop_and_wait(
                ExitReason.shutdown(), 0.0 if hurry else child.shutdown_timeout
            )
            if self.children and self.children[-1] is child:  # pragma: no cover - defensive
                self.children.pop()

    async def _on_stop(self, reason: ExitReason) -> ExitReason:
        if reason.kind is ExitKind.KILLED:
            # Killed actors must not wait: on_stop runs until its first checkpoint.
            with anyio.CancelScope() as scope:
                scope.cancel()
                try:
                    await self.actor.on_stop(reason)
                except Exception:
                    logger.exception("%s: on_stop raised after being killed", self.name)
            return reason
        try:
            await self.actor.on_stop(reason)
        except Exception as exc:
            if reason.kind is ExitKind.CRASHED:
                logger.exception("%s: on_stop raised after a crash (%s)", self.name, reason)
                return reason
            return ExitReason.crashed(exc)
        return reason

    def _close(self, reason: ExitReason) -> None:
        """Synchronously finish: dead letters, pending replies, watchers, parent, done."""
        if self._current is not None:
            reply = getattr(self._current, "reply_to", None)
            if isinstance(reply, Reply):
                error = ActorStopped(f"{self.ref!r} stopped ({reason}) while handling the request")
                error.__cause__ = reason.exception
                reply._fail_if_pending(error)
            self._current = None
        self.exit_reason = reason
        self._sysq.clear()
        while True:
            try:
                msg = self.rx.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            self.dead_letter(msg, f"left in the mailbox when the actor stopped ({reason})")
        self.rx.close()
        self.tx.close()
        for target in self.watching:
            target.watchers.discard(self)
        self.watching.clear()
        if self.watchers:
            terminated = Terminated(ref=self.ref, reason=reason)
            for watcher in self.watchers:
                watcher.post_system(terminated)
            self.watchers.clear()
        self.system._actor_count -= 1
        self.parent.child_exited(self, reason)
        self._done.set()

    def __repr__(self) -> str:
        return f"<Cell {self.name}>"
