"""A small shop on actorq: an order is charged, then its receipt is e-mailed; a report runs nightly.

The jobs:

* ``shop.charge`` charges the order through a payment gateway. An unreachable gateway raises,
  so the runtime retries with the task's backoff; a declined card is final (``Drop``). It
  passes the order id as the gateway's idempotency key, so a charge that runs twice (a worker
  paused past its lease, then finished anyway) takes the money once. Once charged, it
  enqueues the receipt.
* ``shop.receipt`` e-mails the receipt; when the mail provider says "slow down" it snoozes for
  a minute without spending an attempt.
* ``shop.daily_report`` is a cron job (02:00 UTC): it mails the day's takings to the owner.

The gateway and the mailer are in-memory stand-ins a real shop would replace by HTTP clients;
``test_shop.py`` tests the whole App with :mod:`actors.testing`. Run this file to see one
node process three orders: ``python examples/shop/shop.py``.
"""

from __future__ import annotations

import sys

import anyio
import anyio.lowlevel
import attrs

from actors.jobs import App, Drop, Exponential, JobContext, SnoozeUntil, Topology, WorkerConfig
from transports import JobState, MemoryTransport


@attrs.frozen(kw_only=True)
class Order:
    """An order to charge (the payload of ``shop.charge``)."""

    order_id: int
    email: str  # where the receipt goes
    cents: int  # the amount to charge


@attrs.frozen(kw_only=True)
class Receipt:
    """A receipt to e-mail (the payload of ``shop.receipt``)."""

    order_id: int
    email: str
    cents: int


class GatewayUnavailable(Exception):
    """The payment gateway could not be reached (worth retrying)."""


class CardDeclined(Exception):
    """The payment gateway refused the card (not worth retrying)."""


class Gateway:
    """A payment gateway that honours idempotency keys, like Stripe's.

    Args:
        down_for: how many calls fail with GatewayUnavailable before it answers.
        declined: order ids whose card is refused.
    """

    def __init__(self, *, down_for: int = 0, declined: frozenset[int] = frozenset()) -> None:
        self.down_for = down_for
        self.declined = declined
        self.charges: dict[str, int] = {}  # idempotency key -> cents taken
        self.paid: list[int] = []  # the order of each payment taken, in order
        self.calls = 0

    async def charge(self, key: str, cents: int, *, order_id: int) -> None:
        """Take ``cents`` once per ``key``; a repeated key is acknowledged without charging."""
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.down_for > 0:
            self.down_for -= 1
            raise GatewayUnavailable("gateway timed out")
        if order_id in self.declined:
            raise CardDeclined(f"card of order {order_id} declined")
        if key not in self.charges:
            self.charges[key] = cents
            self.paid.append(order_id)


class Mailer:
    """A mail provider's outbox; it rate-limits after ``limit`` messages until ``reset()``.

    Args:
        limit: messages accepted before it answers "slow down" (None: no limit).
    """

    def __init__(self, *, limit: int | None = None) -> None:
        self.limit = limit
        self.outbox: list[tuple[str, str]] = []  # (to, subject)

    def rate_limited(self) -> bool:
        """True when the next message would be refused."""
        return self.limit is not None and len(self.outbox) >= self.limit

    async def send(self, to: str, subject: str) -> None:
        """Deliver one message."""
        await anyio.lowlevel.checkpoint()
        self.outbox.append((to, subject))


OWNER = "owner@shop.example"


def build_app(gateway: Gateway, mailer: Mailer) -> App:
    """The shop's App, its handlers bound to a gateway and a mailer."""
    app = App()

    @app.task(
        "shop.charge",
        queue="payments",
        max_attempts=5,
        backoff=Exponential(base=30.0, jitter=False),
    )
    async def charge(ctx: JobContext, order: Order) -> Drop | None:
        try:
            await gateway.charge(f"order-{order.order_id}", order.cents, order_id=order.order_id)
        except CardDeclined as exc:
            return Drop(reason=str(exc))  # retrying will not help: dead at once
        # GatewayUnavailable propagates: the runtime retries after 30 s, 60 s, 120 s, ...
        await app.enqueue(
            receipt,
            Receipt(order_id=order.order_id, email=order.email, cents=order.cents),
            dedupe_key=f"receipt-{order.order_id}",
        )
        return None

    @app.task("shop.receipt", queue="emails", max_attempts=10)
    async def receipt(ctx: JobContext, payload: Receipt) -> SnoozeUntil | None:
        if mailer.rate_limited():
            return SnoozeUntil(at=ctx.clock.now() + 60.0)  # try again in a minute, no attempt spent
        await mailer.send(payload.email, f"Receipt for order {payload.order_id}")
        return None

    @app.task("shop.daily_report", queue="emails")
    async def daily_report(ctx: JobContext, payload: None) -> None:
        takings = sum(gateway.charges.values())
        await mailer.send(OWNER, f"Takings: {takings / 100:.2f}")

    app.schedule("nightly-report", "0 2 * * *", daily_report)
    return app


async def place_order(app: App, order: Order) -> None:
    """What the shop's web handler calls: charge the order in the background."""
    await app.enqueue("shop.charge", order, dedupe_key=f"charge-{order.order_id}")


async def main() -> int:
    """One node on the memory store processes three orders (one declined) and stops."""
    gateway, mailer = Gateway(declined=frozenset({3})), Mailer()
    async with MemoryTransport() as transport:
        app = build_app(gateway, mailer)
        app.transport = transport
        for n in (1, 2, 3):
            await place_order(app, Order(order_id=n, email=f"c{n}@example.com", cents=1000 * n))
        worker = WorkerConfig(poll_interval=0.05)
        async with Topology.default(app, transport, worker=worker).run():
            with anyio.fail_after(10):
                while {job.state for job in await transport.list_jobs()} & {
                    JobState.AVAILABLE,
                    JobState.RUNNING,
                    JobState.SCHEDULED,
                }:
                    await anyio.sleep(0.05)
    print(f"charged: {gateway.charges}")
    for to, subject in mailer.outbox:
        print(f"mailed {to}: {subject}")
    return 0 if len(gateway.charges) == 2 and len(mailer.outbox) == 2 else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
