"""Errors raised by the actor core.

Every error derives from one root, so ``except ActorError`` catches them all::

    ActorError
    ├── ActorStopped              the target actor is stopped (tell/ask/watch after death)
    ├── AskTimeout                no reply within the ask timeout (also a TimeoutError)
    ├── MailboxFull               tell_nowait on a full mailbox (also an anyio.WouldBlock)
    ├── ReplyAlreadySent          a Reply slot was answered twice
    ├── ActorCrashed              an unsupervised actor crashed; the exception is on __cause__
    ├── ChildNotFound             a supervisor has no child with that id
    ├── ChildAlreadyExists        a supervisor already has a child with that id
    └── SupervisorEscalation      a supervisor gave up and failed itself
        └── RestartIntensityExceeded  more than max_restarts restarts within the window

The exception that made an actor fail is always kept on ``__cause__``.
"""

from __future__ import annotations

import anyio


class ActorError(Exception):
    """Root of every error raised by ``actors.core``."""


class ActorStopped(ActorError):
    """The target actor has stopped, so it cannot answer."""


class AskTimeout(ActorError, TimeoutError):
    """An ``ask`` got no reply within its timeout (measured on the system's clock)."""


class MailboxFull(ActorError, anyio.WouldBlock):
    """``tell_nowait`` found the mailbox at capacity; ``tell`` would have waited."""


class ReplyAlreadySent(ActorError):
    """``Reply.send`` or ``Reply.fail`` was called on an already answered reply."""


class ActorCrashed(ActorError):
    """An actor without a supervisor crashed; its exception is on ``__cause__``."""


class ChildNotFound(ActorError, LookupError):
    """A supervisor has no child with the given id."""


class ChildAlreadyExists(ActorError):
    """A supervisor already has a child with the given id."""


class SupervisorEscalation(ActorError):
    """A supervisor failed itself, stopping all its children, and escalated to its parent."""


class RestartIntensityExceeded(SupervisorEscalation):
    """A supervisor restarted children more than ``max_restarts`` times within ``within`` s."""
