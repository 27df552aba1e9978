"""``transports.connect(url)``: one entry point for every backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import sniffio

from ._base import Transport
from ._errors import UnsupportedURL
from ._records import DEFAULT_MAX_PAYLOAD_BYTES, TimeSource

__all__ = ["connect"]


def connect(
    url: str,
    *,
    clock: TimeSource | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Transport:
    """Build the transport a URL names; use it as ``async with connect(url) as transport:``.

    URLs:
        ``memory://`` — in-process, deterministic (tests, simulation, demos).
        ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db`` or
        ``sqlite://:memory:`` — embedded, one machine.
        ``postgresql://user@host:port/db?pool_size=10&schema=actorq`` — many machines.

    Under trio, SQL backends (whose drivers are asyncio-only) are wrapped in a
    :class:`~transports.lowlevel.BridgedTransport` that runs them on a private asyncio loop.

    Args:
        url: the store to use.
        clock: where "now" comes from; None for the backend's own clock.
        max_payload_bytes: longest accepted JSON payload.

    Raises:
        UnsupportedURL: unknown scheme or option.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query))
    common: dict[str, Any] = {"clock": clock, "max_payload_bytes": max_payload_bytes}
    if scheme == "memory":
        from ._memory import MemoryTransport

        _no_options(url, options)
        return MemoryTransport(**common)
    if scheme == "sqlite":
        from ._sqlite import SQLiteTransport

        # As SQLAlchemy reads them: sqlite:///jobs.db is relative, sqlite:////var/jobs.db absolute.
        path = url[len("sqlite://") :].split("?", 1)[0].removeprefix("/")
        if path in ("", ":memory:"):
            path = ":memory:"
        _no_options(url, options)
        return _bridged_if_needed(lambda: SQLiteTransport(path, **common))
    if scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresTransport

        dsn = url.split("?", 1)[0]
        kwargs: dict[str, Any] = {}
        if "pool_size" in options:
            kwargs["pool_size"] = int(options.pop("pool_size"))
        if "schema" in options:
            kwargs["schema"] = options.pop("schema")
        _no_options(url, options)
        return _bridged_if_needed(lambda: PostgresTransport(dsn, **kwargs, **common))
    raise UnsupportedURL(
        f"unsupported transport URL {url!r}: use memory://, sqlite:// or postgresql://"
    )


def _no_options(url: str, options: dict[str, str]) -> None:
    if options:
        raise UnsupportedURL(f"unknown option(s) {sorted(options)} in {url!r}")


def _bridged_if_needed(factory: Any) -> Transport:
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "asyncio"
    if library == "asyncio":
        transport: Transport = factory()
        return transport
    from ._bridge import BridgedTransport

    return BridgedTransport(factory)
