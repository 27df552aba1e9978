"""Actor references and reply slots."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from ._errors import ActorStopped, AskTimeout, MailboxFull, ReplyAlreadySent

if TYPE_CHECKING:
    from ._cell import Cell

__all__ = ["ActorRef", "Reply"]

M = TypeVar("M", contravariant=True)
R = TypeVar("R")

_CLOSED = (anyio.ClosedResourceError, anyio.BrokenResourceError)


class Reply(Generic[R]):
    """A one-shot slot for the answer to an ``ask``.

    The asker creates it and puts it in the request (conventionally a ``reply_to`` field); the
    receiver answers with ``send(value)`` or ``fail(exc)``. It costs one small object and, only
    if the asker has to wait, one event. An answer arriving after the asker gave up is dropped.
    """

    __slots__ = ("_done", "_error", "_event", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: R | None = None
        self._error: BaseException | None = None
        self._event: anyio.Event | None = None

    @property
    def done(self) -> bool:
        """True once ``send`` or ``fail`` was called."""
        return self._done

    def send(self, value: R) -> None:
        """Answer with ``value``.

        Raises:
            ReplyAlreadySent: if this reply was already answered.
        """
        if self._done:
            raise ReplyAlreadySent("this reply was already answered")
        self._done = True
        self._value = value
        if self._event is not None:
            self._event.set()

    def fail(self, exc: BaseException) -> None:
        """Answer with an error: the asker's ``ask`` raises ``exc``.

        Raises:
            ReplyAlreadySent: if this reply was already answered.
        """
        if self._done:
            raise ReplyAlreadySent("this reply was already answered")
        self._done = True
        self._error = exc
        if self._event is not None:
            self._event.set()

    async def _wait(self) -> R:
        if not self._done:
            self._event = event = anyio.Event()
            await event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # R may itself include None

    def _fail_if_pending(self, exc: BaseException) -> None:
        if not self._done:
            self.fail(exc)

    def __repr__(self) -> str:
        return f"<Reply {'done' if self._done else 'pending'}>"


class ActorRef(Generic[M]):
    """The address of one actor incarnation; the only way to talk to it.

    ``ActorRef[M]`` accepts messages of type ``M`` only, checked by mypy. Refs are cheap to copy,
    hashable and compare by identity. A supervisor restart creates a new actor with a new ref.
    Messages to a stopped actor go to the system's dead-letter sink; they never vanish silently.
    """

    __slots__ = ("__weakref__", "_calls", "_cell", "_send", "_send_nowait", "name")

    def __init__(self, cell: Cell[Any]) -> None:
        self._cell = cell
        self._calls = 0
        self._send_nowait = cell.tx.send_nowait
        self._send = cell.tx.send
        #: The actor's name (a ``/``-separated path under its parent).
        self.name: str = cell.name

    @property
    def is_alive(self) -> bool:
        """True until the actor has fully stopped."""
        return self._cell.exit_reason is None

    def tell_nowait(self, msg: M) -> None:
        """Put ``msg`` in the mailbox without waiting.

        Raises:
            MailboxFull: if the mailbox is at capacity (an ``anyio.WouldBlock``).
        """
        try:
            self._send_nowait(msg)
        except anyio.WouldBlock:
            raise MailboxFull(f"the mailbox of {self!r} is full") from None
        except _CLOSED:
            self._cell.dead_letter(msg, "actor stopped")

    async def tell(self, msg: M) -> None:
        """Put ``msg`` in the mailbox, waiting while it is full (backpressure).

        A full checkpoint on every call would cost an event-loop turn per message, so it yields
        when it has to wait and otherwise on every 32nd call (per ref): a burst of tells runs
        nearly as fast as ``tell_nowait`` yet cannot starve other tasks or ignore cancellation.
        """
        self._calls = calls = self._calls + 1
        if not calls & 31:
            await anyio.lowlevel.checkpoint()
        try:
            self._send_nowait(msg)
        except anyio.WouldBlock:
            try:
                await self._send(msg)
            except _CLOSED:
                self._cell.dead_letter(msg, "actor stopped")
        except _CLOSED:
            self._cell.dead_letter(msg, "actor stopped")

    async def ask(self, make: Callable[[Reply[R]], M], *, timeout: float) -> R:
        """Send a request built by ``make(reply)`` and wait for the answer.

        The receiver answers with ``msg.reply_to.send(value)`` (or ``.fail(exc)``, which is
        raised here). The timeout covers waiting for mailbox room and for the answer, and is
        measured on the actor system's clock, so it follows virtual time.

        Args:
            make: builds the request around the reply slot, e.g.
                ``lambda r: GetCount(reply_to=r)``.
            timeout: seconds to wait on the system clock (``math.inf`` waits forever).

        Returns:
            The value passed to ``reply.send``.

        Raises:
            AskTimeout: no answer in time.
            ActorStopped: the actor is stopped, or stopped before answering.
        """
        cell = self._cell
        if cell.exit_reason is not None:
            raise ActorStopped(f"{self!r} is stopped ({cell.exit_reason})")
        reply: Reply[R] = Reply()
        msg = make(reply)
        with cell.system.clock.move_on_after(timeout):
            try:
                self._send_nowait(msg)  # the common case, without tell()'s extra checkpoint
            except anyio.WouldBlock:
                await self.tell(msg)
            except _CLOSED:
                self._cell.dead_letter(msg, "actor stopped")
            return await reply._wait()
        raise AskTimeout(
            f"{self.name} did not answer {type(msg).__name__} within {timeout} s"
            f" (clock time {cell.system.clock.now()})"
        )

    def __repr__(self) -> str:
        state = "alive" if self._cell.exit_reason is None else "stopped"
        return f"<ActorRef {self.name} {state}>"
