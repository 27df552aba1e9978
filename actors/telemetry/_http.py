"""Serving a node's metrics: their own HTTP server, or a route in the user's ASGI app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

import anyio
import anyio.to_thread
from prometheus_client import make_asgi_app, start_http_server

from ._errors import MetricsServerFailed
from ._metrics import NodeMetrics

__all__ = ["ASGIApp", "metrics_asgi_app", "serve_metrics"]

ASGIApp: TypeAlias = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]
"""An ASGI application (scope, receive, send)."""


def metrics_asgi_app(metrics: NodeMetrics) -> ASGIApp:
    """An ASGI app answering every request with ``metrics`` in the Prometheus text format.

    Mount it in your own app, e.g. with Starlette or FastAPI:
    ``app.mount("/metrics", metrics_asgi_app(metrics))``.
    """
    app: ASGIApp = make_asgi_app(registry=metrics.registry)
    return app


@contextlib.asynccontextmanager
async def serve_metrics(
    metrics: NodeMetrics, *, port: int, host: str = "0.0.0.0"
) -> AsyncIterator[int]:
    """Serve ``metrics`` at ``http://host:port/metrics`` while the block runs; yields the port
    (the one the system chose when ``port`` is 0).

    The server answers in a thread of its own: a scrape reads the registry there, never
    waiting on the event loop.

    Raises:
        MetricsServerFailed: the address is in use, not permitted, or not resolvable.
    """

    def start() -> Any:
        return start_http_server(port, host, registry=metrics.registry)

    try:
        server, thread = await anyio.to_thread.run_sync(start)
    except (OSError, OverflowError) as exc:
        raise MetricsServerFailed(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    try:
        yield int(server.server_port)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.shutdown)
            server.server_close()
            await anyio.to_thread.run_sync(thread.join)
