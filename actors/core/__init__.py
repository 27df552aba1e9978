"""A general actor toolkit on anyio (asyncio and trio), knowing nothing of jobs or storage.

Typed messages and refs (``ActorRef[M]`` with ``tell`` and ``ask``), bounded mailboxes,
lifecycle hooks, OTP-style supervision, death watch, and real or virtual clocks.
See ``_errors`` for the error hierarchy.
"""

from anyio import WouldBlock

from ._actor import Actor, Context
from ._clock import Clock, ClockStatistics, RealClock, VirtualClock
from ._errors import (
    ActorCrashed,
    ActorError,
    ActorStopped,
    AskTimeout,
    ChildAlreadyExists,
    ChildNotFound,
    MailboxFull,
    ReplyAlreadySent,
    RestartIntensityExceeded,
    SupervisorEscalation,
)
from ._messages import ActorFailure, DeadLetter, ExitKind, ExitReason, Terminated
from ._ref import ActorRef, Reply
from ._supervisor import (
    ChildInfo,
    ChildSpec,
    Restart,
    StartChild,
    Strategy,
    Supervisor,
    SupervisorCommand,
    SupervisorRef,
    TerminateChild,
    WhichChildren,
)
from ._system import ActorSystem, MailboxStatistics, SystemStatistics, open_actor_system

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorFailure",
    "ActorRef",
    "ActorStopped",
    "ActorSystem",
    "AskTimeout",
    "ChildAlreadyExists",
    "ChildInfo",
    "ChildNotFound",
    "ChildSpec",
    "Clock",
    "ClockStatistics",
    "Context",
    "DeadLetter",
    "ExitKind",
    "ExitReason",
    "MailboxFull",
    "MailboxStatistics",
    "RealClock",
    "Reply",
    "ReplyAlreadySent",
    "Restart",
    "RestartIntensityExceeded",
    "StartChild",
    "Strategy",
    "Supervisor",
    "SupervisorCommand",
    "SupervisorEscalation",
    "SupervisorRef",
    "SystemStatistics",
    "TerminateChild",
    "Terminated",
    "VirtualClock",
    "WhichChildren",
    "WouldBlock",
    "open_actor_system",
]
