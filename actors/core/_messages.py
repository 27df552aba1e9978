"""Messages and records defined by the core itself.

User messages are plain ``@attrs.frozen(kw_only=True)`` classes; the core adds only the few below.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._ref import ActorRef

__all__ = ["ActorFailure", "DeadLetter", "ExitKind", "ExitReason", "Terminated"]


class ExitKind(enum.Enum):
    """Why an actor stopped."""

    #: The actor stopped itself (``context.stop()``).
    NORMAL = "normal"
    #: Its parent or the system asked it to stop, and it did within its shutdown timeout.
    SHUTDOWN = "shutdown"
    #: ``on_start``, ``receive`` or ``on_stop`` raised; the exception is in ``ExitReason``.
    CRASHED = "crashed"
    #: It was cancelled: it overran its shutdown timeout or the whole system was cancelled.
    KILLED = "killed"


def _check_exception(reason: ExitReason, _: attrs.Attribute[Any], value: object) -> None:
    if (reason.kind is ExitKind.CRASHED) != (value is not None):
        raise ValueError("an exception is required for CRASHED and forbidden otherwise")


@attrs.frozen(kw_only=True)
class ExitReason:
    """How an actor ended; passed to ``on_stop`` and carried by ``Terminated``."""

    #: The kind of exit.
    kind: ExitKind
    #: The exception that crashed the actor (only for ``ExitKind.CRASHED``).
    exception: BaseException | None = attrs.field(default=None, validator=_check_exception)

    @property
    def is_normal(self) -> bool:
        """True for NORMAL and SHUTDOWN; transient children are restarted only otherwise."""
        return self.kind is ExitKind.NORMAL or self.kind is ExitKind.SHUTDOWN

    @classmethod
    def normal(cls) -> ExitReason:
        """The actor stopped itself."""
        return _NORMAL

    @classmethod
    def shutdown(cls) -> ExitReason:
        """The actor was asked to stop and did."""
        return _SHUTDOWN

    @classmethod
    def killed(cls) -> ExitReason:
        """The actor was cancelled."""
        return _KILLED

    @classmethod
    def crashed(cls, exception: BaseException) -> ExitReason:
        """The actor raised ``exception``."""
        return cls(kind=ExitKind.CRASHED, exception=exception)

    def __str__(self) -> str:
        if self.exception is not None:
            return f"crashed with {self.exception!r}"
        return self.kind.value


_NORMAL = ExitReason(kind=ExitKind.NORMAL)
_SHUTDOWN = ExitReason(kind=ExitKind.SHUTDOWN)
_KILLED = ExitReason(kind=ExitKind.KILLED)


@attrs.frozen(kw_only=True)
class Terminated:
    """Death-watch notification.

    Sent by the core to every actor that called ``context.watch(ref)``, once, when ``ref`` stops
    (at once if it was already stopped). Delivered to ``receive`` ahead of queued user messages,
    so an actor that watches should accept ``Terminated`` in its message type.
    """

    #: The actor that stopped.
    ref: ActorRef[Any]
    #: Why it stopped.
    reason: ExitReason


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A message that could not be delivered; handed to the system's dead-letter sink."""

    #: The intended recipient.
    ref: ActorRef[Any]
    #: The undelivered message.
    message: object
    #: Why it was not delivered, for humans.
    reason: str


@attrs.frozen(kw_only=True)
class ActorFailure:
    """A crash of a top-level actor (one spawned by the system itself), in ``system.failures``."""

    #: The actor that crashed (a supervisor that escalated is a crash too).
    ref: ActorRef[Any]
    #: The exception it crashed with.
    exception: BaseException
