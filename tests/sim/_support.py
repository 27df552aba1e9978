"""A one-node rig of the simulator's parts, for unit tests of transports, clocks and checks."""

from __future__ import annotations

import attrs

from actors.core import VirtualClock
from actors.sim.lowlevel import (
    Checker,
    FaultyTransport,
    Health,
    NodeClock,
    NodeLink,
    Trace,
    WakeHub,
    derive_rng,
)
from transports import EnqueueRequest, MemoryStore, MemoryTransport
from transports.lowlevel import Lease

START = 1_000.0


@attrs.define
class Rig:
    """One node (slot 0) over a store, with the checker watching."""

    base: VirtualClock
    store: MemoryStore
    trace: Trace
    health: Health
    checker: Checker
    hub: WakeHub
    link: NodeLink
    clock: NodeClock
    transport: FaultyTransport
    oracle: MemoryTransport  # unfaulted, to look at the store
    violations: list[str]


def make_rig(seed: int = 0, *, nodes: int = 1, ttl: float = 10.0) -> Rig:
    """A fresh rig on a VirtualClock at START."""
    base = VirtualClock(START)
    store = MemoryStore()
    trace = Trace(base, START)
    health = Health(nodes)
    checker = Checker(
        trace,
        seed=seed,
        command=f"actorq sim --seed {seed}",
        lease_ttl=ttl,
        reaper_interval=1.0,
        health=health,
    )
    violations: list[str] = []
    checker.on_violation = lambda: violations.append(checker.violation.invariant)  # type: ignore[union-attr]
    hub = WakeHub()
    link = NodeLink()
    clock = NodeClock(base)
    transport = FaultyTransport(
        MemoryTransport(store=store, clock=base),
        node="n0.1",
        link=link,
        clock=clock,
        base=base,
        rng=derive_rng(seed, "test"),
        hub=hub,
        checker=checker,
        trace=trace,
    )
    oracle = MemoryTransport(store=store, clock=base)
    return Rig(base, store, trace, health, checker, hub, link, clock, transport, oracle, violations)


def job(n: int = 0, *, queue: str = "q", max_attempts: int = 3) -> EnqueueRequest:
    """A job request."""
    return EnqueueRequest(kind="k", payload={"n": n}, queue=queue, max_attempts=max_attempts)


async def claim_one(rig: Rig, owner: str = "w1", ttl: float = 10.0) -> Lease:
    """Enqueue a job through the (healthy) faulty transport and claim it."""
    await rig.transport.enqueue(job())
    (lease,) = await rig.transport.claim("q", owner=owner, limit=1, ttl=ttl)
    return lease
