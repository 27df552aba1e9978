"""Test your own App on a simulated, faulty cluster: hours of crashes in a few seconds.

The App below charges customers through a payment gateway. Its handler is written the way
every actorq handler must be under at-least-once delivery: it passes the job id as an
idempotency key, so a charge that runs twice (a node paused past its lease, then woke up and
finished anyway) is applied once. The simulation proves it: nodes crash, pause, lose the store
and drift in time while jobs run, the runtime's invariants are checked on every storage call,
and this file checks the App's own invariant at the end: nobody is charged twice.

Run without its idempotency key (``Gateway(idempotent=False)``), the same seeds charge some
customers twice: the simulator finds the bug a test on one healthy node never would.

What a simulation needs from you:

* ``build_app()``: your App. Handlers take their time from ``ctx.clock`` (never
  ``asyncio.sleep``), so virtual time drives them.
* ``make_job(rng, n)``: the n-th job to enqueue, drawn only from ``rng``.
* optionally ``topology(ctx)``: your node layout, from a ``SimNodeContext`` (its node id,
  faulty transport, clock and RNG); here, two queues and an actor of our own.

Run it with ``python examples/simulate_my_app.py`` (add a seed to replay one run). In a test,
call ``simulate_app`` (or ``sweep_app``): it raises ``SimulationFailed``, an AssertionError
whose message holds the failing invariant, the last events and the call that replays it::

    def test_no_double_charges() -> None:
        gateway = Gateway()
        simulate_app(build_app(gateway), make_job, seed=3, duration="30m", jobs=300)
        assert gateway.double_charges == 0
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from random import Random
from typing import Any

import attrs

from actors.core import Actor, ExitReason
from actors.jobs import (
    App,
    Exponential,
    JobContext,
    JobSucceeded,
    RetryLater,
    RuntimeEvent,
    Topology,
)
from actors.jobs.lowlevel import EventBus
from actors.sim import SimNodeContext, SimulationFailed, simulate_app
from transports import EnqueueRequest


@attrs.frozen(kw_only=True)
class Charge:
    """Charge a customer (the payload of ``billing.charge``)."""

    customer: int  # who pays
    cents: int  # how much


class Gateway:
    """A payment gateway outside the cluster that honours idempotency keys, like Stripe.

    Args:
        idempotent: False makes it charge every call, as a naive integration would.
    """

    def __init__(self, *, idempotent: bool = True) -> None:
        self.idempotent = idempotent
        self.charged: dict[str, int] = {}  # idempotency key -> cents
        self.calls = 0
        self.repeats = 0  # calls with a key already charged: repeated executions
        self.double_charges = 0  # repeats that took the customer's money again

    async def charge(self, ctx: JobContext, key: str, cents: int) -> None:
        """Charge once per key; a repeated key is acknowledged without charging again."""
        self.calls += 1
        await ctx.clock.sleep(0.2)  # the network round trip, on the job's (virtual) clock
        if key in self.charged:
            self.repeats += 1
            if not self.idempotent:
                self.double_charges += 1
            return
        self.charged[key] = cents


def build_app(gateway: Gateway) -> App:
    """The App under test: a charge handler and a slow, rate-limited report handler."""
    app = App()

    @app.task("billing.charge", queue="billing", max_attempts=5, timeout=60.0)
    async def charge(ctx: JobContext, payload: Charge) -> RetryLater | None:
        await ctx.clock.sleep(0.5)  # look the customer up
        if payload.cents > 90_000:
            return RetryLater(delay=30.0, reason="over the instant limit: wait for review")
        await gateway.charge(ctx, key=f"job-{ctx.job_id}", cents=payload.cents)
        # A crash or a long pause from here on makes the job run again, charge included:
        # only the idempotency key keeps the customer from paying twice.
        await ctx.clock.sleep(3.0)  # render and send the receipt
        return None

    @app.task("billing.report", queue="reports", timeout=300.0, backoff=Exponential(cap=60.0))
    async def report(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(45.0)  # longer than a lease: the heartbeat keeps it

    return app


#: Builds requests only (validated against the payload types); each run has its own App.
_requests = build_app(Gateway())


def make_job(rng: Random, n: int) -> EnqueueRequest:
    """Mostly charges, now and then a report; the job's randomness comes from ``rng``."""
    if n % 25 == 0:
        return _requests.request("billing.report", None)
    customer, cents = rng.randrange(1000), rng.randrange(100, 100_000)
    return _requests.request("billing.charge", Charge(customer=customer, cents=cents))


class Auditor(Actor[RuntimeEvent]):
    """A user actor beside the runtime's: follows its node's events, counts charges done."""

    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._unsubscribe: Callable[[], None] = lambda: None
        self.succeeded = 0

    async def on_start(self) -> None:
        self._unsubscribe = self._events.subscribe(self.context.self_ref.tell_nowait)

    async def receive(self, msg: RuntimeEvent) -> None:
        if isinstance(msg, JobSucceeded) and msg.kind == "billing.charge":
            self.succeeded += 1

    async def on_stop(self, reason: ExitReason) -> None:
        self._unsubscribe()


def topology(ctx: SimNodeContext) -> Topology:
    """Each node: 3 billing workers, 1 report worker, a reaper, and the Auditor."""
    return (
        Topology(ctx.app, ctx.transport, node_id=ctx.node_id, clock=ctx.clock, rng=ctx.rng)
        .actor("auditor", lambda node: Auditor(node.events))
        .queue("billing", concurrency=3, worker=ctx.worker)
        .queue("reports", concurrency=1, worker=ctx.worker)
        .reaper(interval=ctx.config.reaper_interval)
    )


def simulate_billing(seed: int, gateway: Gateway) -> None:
    """One simulated hour: 3 nodes, 600 jobs, every fault, pauses and crashes more often.

    Raises:
        SimulationFailed: a runtime invariant broke (the message replays it).
    """
    report = simulate_app(
        build_app(gateway),
        make_job,
        topology_factory=topology,
        seed=seed,
        nodes=3,
        jobs=600,
        duration="1h",
        lease_ttl="20s",
        rates="pause=6,crash=4",
    )
    print(report.render())
    print(
        f"  gateway: {len(gateway.charged)} charges, {gateway.calls} calls, {gateway.repeats} "
        f"repeated executions, {gateway.double_charges} double charges\n"
    )


def main(seeds: list[int]) -> int:
    """Simulate each seed; then show what the same runs do to a naive integration."""
    naive_doubles = 0
    for seed in seeds:
        try:
            gateway = Gateway()
            simulate_billing(seed, gateway)
            naive = Gateway(idempotent=False)
            simulate_billing(seed, naive)
        except SimulationFailed as failure:
            print(failure)
            return 1
        if gateway.double_charges:
            print(f"seed {seed}: customers were charged twice")
            return 1
        naive_doubles += naive.double_charges
    print(
        f"With idempotency keys nobody paid twice; without them the same seeds charged "
        f"{naive_doubles} customer(s) twice."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]] or [1, 2]))
