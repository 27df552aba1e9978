"""The recipe's jobs: one App, shared by the web app and by the separate worker.

The web app (``app.py``) imports it to enqueue and to run a node in its lifespan; a worker
process loads it by name, without importing FastAPI::

    actorq worker examples.fastapi_app.jobs:app -t "$ACTORQ_TRANSPORT" --queue emails
"""

from __future__ import annotations

import attrs

from actors.jobs import App, Exponential, JobContext

app = App()


@attrs.frozen(kw_only=True)
class Welcome:
    """The payload of ``email.welcome``: who signed up, and where to write."""

    user_id: int  # the row in the web app's ``users`` table
    address: str  # the address given at signup


@app.task("email.welcome", queue="emails", max_attempts=5, backoff=Exponential(cap=60.0))
async def send_welcome(ctx: JobContext, mail: Welcome) -> None:
    """Send the welcome mail (here: log it; a real app calls its mail provider).

    Delivery is at least once: a provider call should carry an idempotency key, such as
    ``f"welcome-{mail.user_id}"``, so a repeated run does not mail twice.
    """
    await ctx.clock.sleep(0.01)  # the provider's round trip, on the node's clock
    ctx.log.info("welcome mail for user %d sent to %s", mail.user_id, mail.address)
