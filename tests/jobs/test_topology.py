"""Topology building: checks at build time, user actors' mailboxes, cron quiet while draining."""

from __future__ import annotations

import random

import anyio
import pytest

from actors.core import Actor, VirtualClock
from actors.jobs import (
    App,
    CronFired,
    CronSchedule,
    JobContext,
    NodeContext,
    RuntimeEvent,
    ShutdownPhase,
    Topology,
    UnknownJobKind,
)
from transports import MemoryTransport

pytestmark = pytest.mark.anyio


def _app() -> App:
    app = App()

    @app.task("tick")
    async def tick(ctx: JobContext, payload: None) -> None:
        return None

    return app


def test_cron_with_an_unknown_kind_fails_at_build_time() -> None:
    """A schedule naming a kind the App lacks is refused when the topology is built."""
    schedule = CronSchedule(name="s", expression="* * * * *", kind="nope")
    with pytest.raises(UnknownJobKind, match="nope"):
        Topology(_app(), MemoryTransport()).cron([schedule])


class _Idle(Actor[RuntimeEvent]):
    async def receive(self, msg: RuntimeEvent) -> None:
        return None


async def test_user_actor_gets_its_mailbox_size() -> None:
    """`Topology.actor(..., mailbox_size=n)` bounds that actor's mailbox at n."""
    clock = VirtualClock(1_000.0)
    transport = MemoryTransport(clock=clock)
    topology = Topology(_app(), transport, clock=clock, rng=random.Random(1), node_id="n")
    topology.actor("idle", lambda node: _Idle(), mailbox_size=2)
    async with transport, clock.autojump(), topology.run() as node:
        ref = await node.child("idle")
        accepted = 0
        while accepted < 100:
            try:
                ref.tell_nowait(ShutdownPhase(at=0.0, phase="x"))
            except anyio.WouldBlock:
                break
            accepted += 1
        # Two in the mailbox, plus the one handed straight to the actor waiting to receive.
        assert accepted == 3


async def test_cron_stops_before_the_queues_drain() -> None:
    """Once shutdown starts draining, no cron tick fires any more."""
    clock = VirtualClock(1_000.0)
    transport = MemoryTransport(clock=clock)
    app = _app()
    app.schedule("every-second", "* * * * * *", "tick")
    fired: list[float] = []
    draining_at: list[float] = []

    def on_event(event: RuntimeEvent) -> None:
        if isinstance(event, CronFired):
            fired.append(event.at)
        elif isinstance(event, ShutdownPhase) and event.phase == "draining" and not draining_at:
            draining_at.append(event.at)

    topology = Topology.default(app, transport, clock=clock, rng=random.Random(1), node_id="n")
    async with transport, clock.autojump():
        async with topology.run() as node:
            node.events.subscribe(on_event)
            await clock.sleep(5)
        assert fired, "cron never fired before shutdown"
        assert draining_at
        assert all(t <= draining_at[0] for t in fired)


def test_node_context_is_what_factories_get() -> None:
    """A user actor's factory receives the node's shared parts (id, app, transport, events)."""
    seen: list[NodeContext] = []
    transport = MemoryTransport()
    topology = Topology(_app(), transport, node_id="node-7")
    topology.actor("idle", lambda node: seen.append(node) or _Idle())
    from actors.jobs.lowlevel import EventBus

    (spec,) = topology.child_specs(EventBus())
    spec.factory()
    assert seen[0].node_id == "node-7"
    assert seen[0].transport is transport
