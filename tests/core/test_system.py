"""``ActorSystem.mailboxes()``: a snapshot of every live actor's mailbox, children included."""

from __future__ import annotations

import anyio
import pytest

from actors.core import Actor, ChildSpec, MailboxStatistics, open_actor_system

pytestmark = pytest.mark.anyio


class Stuck(Actor[str]):
    """Takes one message and then waits forever, so the rest pile up in its mailbox."""

    def __init__(self, started: anyio.Event) -> None:
        self._started = started

    async def receive(self, msg: str) -> None:
        self._started.set()
        await anyio.sleep_forever()


async def test_mailboxes_show_each_live_actors_depth_and_capacity() -> None:
    started = anyio.Event()
    async with open_actor_system(name="s") as system:
        supervisor = await system.spawn_supervisor(
            [ChildSpec(id="stuck", factory=lambda: Stuck(started), mailbox_size=8)], name="sup"
        )
        stuck = await supervisor.child_ref("stuck")
        for i in range(4):
            stuck.tell_nowait(f"m{i}")
        await started.wait()
        found = {m.name: m for m in system.mailboxes()}
        assert found["sup/stuck"] == MailboxStatistics(name="sup/stuck", depth=3, capacity=8)
        assert found["sup"].depth == 0
        assert list(found) == ["sup", "sup/stuck"]  # parents before their children
        await supervisor.terminate_child("stuck")
        assert [m.name for m in system.mailboxes()] == ["sup"]
