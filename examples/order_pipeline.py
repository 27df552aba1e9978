"""An order pipeline as one durable job: charge, reserve stock, fan out e-mails, fan in a receipt.

``order.place`` makes each side effect a step (``ctx.step``): the card is charged and the stock
reserved once, whatever happens after. Its first attempt dies right after reserving the stock
(as a node would); the retry finds both steps recorded and goes on without charging twice. It
then fans out one ``order.email`` job per recipient (itself a step, so a retry enqueues no
second batch) and fans them back in: each e-mail job signals its event when sent, and the
order waits for every one (``ctx.wait_for``), suspended in between, holding no worker. Its
result is the receipt, which ``app.result`` waits for.

Run it with ``python examples/order_pipeline.py``; it prints the receipt and how often the card
was charged (once).
"""

from __future__ import annotations

from typing import Any

import anyio
import attrs

import transports
from actors.jobs import App, Constant, Done, JobContext, Topology

app = App()
charges: list[str] = []  # what the payment provider saw
reserved: list[str] = []  # what the warehouse saw
crashed: set[int] = set()  # orders whose first attempt already died


@attrs.frozen(kw_only=True)
class Order:
    id: int
    cents: int
    sku: str
    notify: tuple[str, ...]  # who gets an e-mail


@attrs.frozen(kw_only=True)
class Email:
    order_id: int
    index: int
    to: str


def charge_card(order_id: int, cents: int) -> dict[str, Any]:
    charges.append(f"order {order_id}")  # the call to the payment provider
    return {"charge": f"ch_{order_id}", "cents": cents}


def reserve_stock(order_id: int, sku: str) -> str:
    reserved.append(sku)  # the call to the warehouse
    return f"res_{order_id}_{sku}"


def sent_event(order_id: int, index: int) -> str:
    return f"order:{order_id}:mail:{index}"


@app.task("order.place", backoff=Constant(seconds=0.2))
async def place(ctx: JobContext, order: Order) -> Done:
    charge = await ctx.step("charge", charge_card, order.id, order.cents)
    reservation = await ctx.step("reserve", reserve_stock, order.id, order.sku)
    if order.id not in crashed:  # the node dies here, after the charge, on the first attempt
        crashed.add(order.id)
        raise RuntimeError("the node running the order went away")

    async def fan_out() -> list[int]:
        emails = [
            app.request(send, Email(order_id=order.id, index=i, to=to))
            for i, to in enumerate(order.notify)
        ]
        return [result.job_id for result in await app.enqueue_many(emails)]

    email_jobs = await ctx.step("emails", fan_out)
    sent = [  # fan in: one wait per e-mail, each suspending the order until it is sent
        await ctx.wait_for(sent_event(order.id, i), timeout=60.0) for i in range(len(email_jobs))
    ]
    receipt = {"order": order.id, "charge": charge["charge"], "reservation": reservation}
    return Done(result={**receipt, "emails": sent})


@app.task("order.email", queue="emails")
async def send(ctx: JobContext, email: Email) -> None:
    await anyio.sleep(0.05)  # the call to the mail relay
    await app.signal(sent_event(email.order_id, email.index), email.to)


async def main() -> None:
    async with transports.connect("sqlite:///orders.db") as transport:
        app.transport = transport
        order = Order(id=42, cents=1999, sku="mug", notify=("ada@example.com", "ops@example.com"))
        job = await app.enqueue(place, order)
        async with Topology.default(app, transport, concurrency=4).run():
            receipt = await app.result(job, timeout=60.0, poll_interval=0.1)
        steps = [step.name for step in await transport.list_steps(job.job_id)]
    print(f"receipt: {receipt}")
    print(f"steps recorded: {', '.join(steps)}")
    print(f"charged {len(charges)} time(s), stock reserved {len(reserved)} time(s)")
    assert charges == ["order 42"], charges
    assert reserved == ["mug"], reserved


if __name__ == "__main__":
    anyio.run(main)
