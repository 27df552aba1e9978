"""Actors and helpers shared by the actor-core tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs

from actors.core import (
    Actor,
    ActorFailure,
    ActorSystem,
    DeadLetter,
    ExitReason,
    Reply,
    Terminated,
    VirtualClock,
    open_actor_system,
)


@attrs.frozen(kw_only=True)
class Note:
    """A message a Recorder appends to its log."""

    #: Any payload.
    value: object


@attrs.frozen(kw_only=True)
class Crash:
    """Makes a Recorder raise ``Boom``."""

    #: Put in the exception message.
    why: str = "boom"


@attrs.frozen(kw_only=True)
class Echo:
    """A request answered with its value."""

    #: Sent back.
    value: int
    #: Where to answer.
    reply_to: Reply[int]


@attrs.frozen(kw_only=True)
class Nap:
    """Makes a Recorder sleep on the clock before logging ``done``."""

    #: Seconds on the clock.
    seconds: float


Msg = Note | Crash | Echo | Nap | Terminated


class Boom(Exception):
    """The failure Recorders crash with."""


class Recorder(Actor[Msg]):
    """Logs lifecycle events and notes into a shared list as ``(name, event)`` pairs."""

    def __init__(self, log: list[Any], label: str, *, crash_on_start: bool = False) -> None:
        self.log = log
        self.label = label
        self.crash_on_start = crash_on_start

    async def on_start(self) -> None:
        self.log.append((self.label, "start"))
        if self.crash_on_start:
            raise Boom(f"{self.label} cannot start")

    async def receive(self, msg: Msg) -> None:
        match msg:
            case Note(value=value):
                self.log.append((self.label, value))
            case Crash(why=why):
                raise Boom(why)
            case Echo(value=value, reply_to=reply):
                reply.send(value)
            case Nap(seconds=seconds):
                await self.context.clock.sleep(seconds)
                self.log.append((self.label, "napped"))
            case Terminated(ref=ref, reason=reason):
                self.log.append((self.label, ("terminated", ref.name, reason.kind.value)))

    async def on_stop(self, reason: ExitReason) -> None:
        self.log.append((self.label, ("stop", reason.kind.value)))


def recorder(log: list[Any], label: str, **kwargs: Any) -> Callable[[], Recorder]:
    """A ChildSpec factory building a fresh Recorder."""
    return lambda: Recorder(log, label, **kwargs)


@asynccontextmanager
async def virtual_system(
    *,
    clock: VirtualClock | None = None,
    dead_letters: Callable[[DeadLetter], None] | None = None,
    on_failure: Callable[[ActorFailure], None] | None = None,
) -> AsyncIterator[ActorSystem]:
    """An actor system on a VirtualClock with autojump, so timers never really wait."""
    clock = VirtualClock() if clock is None else clock
    async with (
        clock.autojump(),
        open_actor_system(clock=clock, dead_letters=dead_letters, on_failure=on_failure) as system,
    ):
        yield system


async def settle(system: ActorSystem) -> None:
    """Return once every task is blocked: autojump only fires this 1 ms sleep at that point."""
    await system.clock.sleep(0.001)
