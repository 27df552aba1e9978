"""Helpers of the dashboard tests: a client around the ASGI app, a counting transport, seeds."""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette

from transports import EnqueueRequest, JsonValue, Transport
from transports.lowlevel import Discard, FinalizeRequest, ForwardingTransport, Retry

T = TypeVar("T")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class CountingTransport(ForwardingTransport):
    """Forwards everything and counts the storage calls, by operation name."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        self.calls[name] += 1
        return await call(self.inner)

    def take(self) -> int:
        """How many calls were made since the last ``take``."""
        total = sum(self.calls.values())
        self.calls.clear()
        return total


@contextlib.asynccontextmanager
async def client(app: Starlette, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``app``, its lifespan running while the client is open."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://dash.test", **options
        ) as http:
            yield http


async def csrf_of(http: httpx.AsyncClient, path: str = "/") -> str:
    """The CSRF value a page gives this client (its cookie is kept by the client)."""
    page = await http.get(path)
    match = CSRF.search(page.text)
    assert match, page.text
    return match.group(1)


async def seed_dead(
    transport: Transport,
    *,
    kind: str = "report.build",
    queue: str = "default",
    payload: JsonValue = None,
    error: str = "ValueError: the report has no rows",
    traceback: str | None = None,
) -> int:
    """A job that died with ``error``: enqueued, claimed and discarded."""
    (result,) = await transport.enqueue_many(
        [EnqueueRequest(kind=kind, queue=queue, payload=payload, max_attempts=2)]
    )
    (lease,) = await transport.claim(queue, owner="worker-1", limit=1, ttl=30)
    assert lease.job.id == result.job_id
    await transport.finalize(
        [
            FinalizeRequest(
                job_id=lease.job.id,
                token=lease.token,
                outcome=Discard(error=error, traceback=traceback),
            )
        ]
    )
    return result.job_id


async def seed_retrying(transport: Transport, *, queue: str, error: str) -> int:
    """A job waiting for its retry, with ``error`` as its last error."""
    (result,) = await transport.enqueue_many([EnqueueRequest(kind="flaky", queue=queue)])
    (lease,) = await transport.claim(queue, owner="worker-2", limit=1, ttl=30)
    await transport.finalize(
        [
            FinalizeRequest(
                job_id=lease.job.id, token=lease.token, outcome=Retry(run_at=1e12, error=error)
            )
        ]
    )
    return result.job_id
