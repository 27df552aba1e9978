"""The actorq dashboard mounted in a FastAPI app, under /ops, behind the app's own check.

Serve it with ``uvicorn examples.dashboard_in_fastapi:app`` and open http://127.0.0.1:8000/ops/
(send ``x-user: admin``, or replace ``is_admin`` with your app's login). Run as a script, it
seeds a store, calls a few pages in-process and prints what it saw.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import anyio
import httpx
from fastapi import FastAPI, Request

import transports
from actors.dashboard import create_dashboard
from transports import EnqueueRequest

STORE = os.environ.get("ACTORQ_TRANSPORT", "sqlite:///dashboard-example.db")


def is_admin(request: Request) -> bool:
    # Your application's authentication goes here (a session, a JWT, an SSO header ...).
    return request.headers.get("x-user") == "admin"


dashboard = create_dashboard(STORE, authorize=is_admin)


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # A mounted app's lifespan does not run by itself: the dashboard opens its store here.
    async with dashboard.router.lifespan_context(dashboard):
        yield


app = FastAPI(lifespan=lifespan)
app.mount("/ops", dashboard)


@app.get("/")
async def home() -> dict[str, str]:
    return {"dashboard": "/ops/"}


async def main() -> None:
    async with transports.connect(STORE) as store:  # the dashboard never creates a store
        await store.enqueue(
            EnqueueRequest(kind="email.send", queue="emails", payload={"to": "a@b.c"})
        )
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
        async with client:
            refused = await client.get("/ops/")
            overview = await client.get("/ops/", headers={"x-user": "admin"})
            counts = await client.get("/ops/api/counts", headers={"x-user": "admin"})
    print(f"without the app's check: {refused.status_code}")
    print(f"overview: {overview.status_code}, queues: {sorted(counts.json())}")


if __name__ == "__main__":
    anyio.run(main)
