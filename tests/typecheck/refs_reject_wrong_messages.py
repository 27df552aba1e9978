"""Type-checked by tests/core/test_typecheck.py: lines marked ``# expect: <code>`` must error."""

from __future__ import annotations

import attrs

from actors.core import ActorRef, Reply


@attrs.frozen(kw_only=True)
class Ping:
    """The message the actor accepts."""


@attrs.frozen(kw_only=True)
class Pong:
    """A message the actor does not accept."""


@attrs.frozen(kw_only=True)
class Count:
    """A request answered with an int."""

    reply_to: Reply[int]


async def use(ref: ActorRef[Ping], counter: ActorRef[Count]) -> None:
    await ref.tell(Ping())
    ref.tell_nowait(Ping())
    await ref.tell(Pong())  # expect: arg-type
    ref.tell_nowait(Pong())  # expect: arg-type
    total: int = await counter.ask(lambda r: Count(reply_to=r), timeout=1)
    text: str = await counter.ask(lambda r: Count(reply_to=r), timeout=1)  # expect: arg-type
    wide: ActorRef[Ping | Pong] = ref  # expect: assignment
    del total, text, wide
