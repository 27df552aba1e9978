"""The shop's tests, written with actorq's test kit (``actors.testing``).

Each test gets a fresh App (``actorq_app`` in ``conftest.py``) on a memory store and a
virtual clock (``job_tester``): jobs run only when the test drains them, and time moves only
when the test moves it, so an hour of retries takes no time at all.
"""

from __future__ import annotations

from random import Random

import pytest
from shop import OWNER, Gateway, Mailer, Order, Receipt, place_order

from actors.jobs import App, Topology
from actors.sim import SimNodeContext
from actors.testing import JobTester, RunOutcome
from actors.testing.pytest_plugin import AppSimulation
from transports import EnqueueRequest

ORDER = Order(order_id=1, email="ada@example.com", cents=2500)


@pytest.mark.anyio
async def test_an_order_is_charged_and_its_receipt_mailed(
    actorq_app: App, job_tester: JobTester, gateway: Gateway, mailer: Mailer
) -> None:
    await place_order(actorq_app, ORDER)
    await job_tester.assert_enqueued("shop.charge", payload=ORDER, queue="payments")
    await job_tester.refute_enqueued("shop.receipt")

    result = await job_tester.drain()

    assert [(run.kind, run.outcome) for run in result] == [
        ("shop.charge", RunOutcome.SUCCEEDED),
        ("shop.receipt", RunOutcome.SUCCEEDED),  # enqueued by the charge, drained too
    ]
    assert gateway.charges == {"order-1": 2500}
    assert mailer.outbox == [("ada@example.com", "Receipt for order 1")]
    await job_tester.assert_enqueued(
        "shop.receipt",
        payload=Receipt(order_id=1, email="ada@example.com", cents=2500),
        state="succeeded",
    )


@pytest.mark.anyio
async def test_an_unreachable_gateway_is_retried_with_backoff(
    actorq_app: App, job_tester: JobTester, gateway: Gateway, mailer: Mailer
) -> None:
    gateway.down_for = 2
    await place_order(actorq_app, ORDER)

    first = await job_tester.drain()
    assert first.counts() == {"retried": 1}
    assert [run.error for run in first] == ["shop.GatewayUnavailable: gateway timed out"]
    await job_tester.refute_enqueued("shop.receipt")

    # The task's backoff waits 30 s after the first failure: not due 29 s later.
    await job_tester.advance(29)
    assert len(await job_tester.drain()) == 0

    rest = await job_tester.run_for(600)
    assert [(run.kind, run.attempt, run.outcome) for run in rest] == [
        ("shop.charge", 2, RunOutcome.RETRIED),
        ("shop.charge", 3, RunOutcome.SUCCEEDED),
        ("shop.receipt", 1, RunOutcome.SUCCEEDED),
    ]
    assert gateway.charges == {"order-1": 2500}
    assert len(mailer.outbox) == 1


@pytest.mark.anyio
async def test_a_declined_card_is_not_retried(
    actorq_app: App, job_tester: JobTester, gateway: Gateway
) -> None:
    gateway.declined = frozenset({1})
    await place_order(actorq_app, ORDER)

    result = await job_tester.drain(with_scheduled=True)

    assert result.counts() == {"dead": 1}
    assert result.errors == ["card of order 1 declined"]
    await job_tester.assert_enqueued("shop.charge", state="dead")
    await job_tester.refute_enqueued("shop.receipt", state=["available", "scheduled", "succeeded"])


@pytest.mark.anyio
async def test_a_rate_limited_mailer_snoozes_the_receipt(
    actorq_app: App, job_tester: JobTester, mailer: Mailer
) -> None:
    mailer.limit = 0
    await place_order(actorq_app, ORDER)

    result = await job_tester.drain()
    assert result.counts() == {"succeeded": 1, "snoozed": 1}
    receipt = await job_tester.assert_enqueued("shop.receipt", state="scheduled")
    assert receipt.run_at == job_tester.now() + 60

    mailer.limit = None
    await job_tester.advance(60)
    later = await job_tester.drain()
    assert [(run.kind, run.attempt, run.outcome) for run in later] == [
        ("shop.receipt", 1, RunOutcome.SUCCEEDED)  # a snooze gives its attempt back
    ]


@pytest.mark.anyio
async def test_the_report_is_mailed_every_night(
    actorq_app: App, job_tester: JobTester, mailer: Mailer
) -> None:
    await place_order(actorq_app, ORDER)
    await job_tester.drain()
    await job_tester.refute_enqueued("shop.daily_report")

    # The tester's clock starts at midnight UTC: the cron tick is at 02:00.
    await job_tester.advance(2 * 3600)
    await job_tester.assert_enqueued("shop.daily_report")
    await job_tester.drain()
    assert mailer.outbox[-1] == (OWNER, "Takings: 25.00")

    week = await job_tester.run_for(7 * 24 * 3600)
    assert len(week.of_kind("shop.daily_report")) == 7


@pytest.mark.trio
async def test_the_kit_runs_under_pytest_trio(
    actorq_app: App, job_tester: JobTester, mailer: Mailer
) -> None:
    """The same fixture in a test run by pytest-trio instead of anyio's plugin."""
    await place_order(actorq_app, ORDER)
    assert (await job_tester.drain()).succeeded == 2
    assert len(mailer.outbox) == 1


def test_nobody_pays_twice_on_a_faulty_cluster(
    actorq_app: App, actorq_sim: AppSimulation, gateway: Gateway
) -> None:
    """Nodes crash and pause mid-charge, so charges run twice; the idempotency key keeps
    every order paid once. (A sync test: the simulator runs its own event loop.)"""

    def make_order(rng: Random, n: int) -> EnqueueRequest:
        cents = rng.randrange(100, 10_000)
        return actorq_app.request(
            "shop.charge", Order(order_id=n, email="x@example.com", cents=cents)
        )

    def topology(ctx: SimNodeContext) -> Topology:
        # Each node: the shop's two queues and a reaper (no cron, no cleanup).
        return (
            Topology(ctx.app, ctx.transport, node_id=ctx.node_id, clock=ctx.clock, rng=ctx.rng)
            .queue("payments", worker=ctx.worker)
            .queue("emails", worker=ctx.worker)
            .reaper(interval=ctx.config.reaper_interval)
        )

    report = actorq_sim(
        make_order, seed=3, nodes=2, jobs=60, duration="10m", topology_factory=topology
    )

    assert report.final_states.get("succeeded", 0) > 0
    assert len(gateway.paid) == len(set(gateway.paid)), "an order was paid twice"
