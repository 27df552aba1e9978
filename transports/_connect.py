"""``transports.connect(url)``: one entry point for every backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import sniffio

from ._base import Transport
from ._errors import InvalidRequest, UnsupportedURL
from ._records import DEFAULT_MAX_PAYLOAD_BYTES, TimeSource
from ._url import redact_url

__all__ = ["connect"]


def connect(
    url: str,
    *,
    create: bool = True,
    clock: TimeSource | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Transport:
    """Build the transport a URL names; use it as ``async with connect(url) as transport:``.

    URLs:
        ``memory://`` — in-process, deterministic (tests, simulation, demos).
        ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db`` or
        ``sqlite://:memory:`` — embedded, one machine.
        ``postgresql://user:password@host:port/db?pool_size=10&schema=actorq&sslmode=require``
        — many machines. Besides actorq's ``pool_size`` (1-1000) and ``schema``, the libpq
        options reach the driver: ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``,
        ``connect_timeout``, ``application_name``, ``options=-c name=value``,
        ``target_session_attrs``, ...; one the driver cannot honour is refused.

    Under trio, SQL backends (whose drivers are asyncio-only) are wrapped in a
    :class:`~transports.lowlevel.BridgedTransport` that runs them on a private asyncio loop.
    The URL is checked here, before anything connects; no message ever shows its password
    (see :func:`redact_url`).

    Args:
        url: the store to use.
        create: create the store (SQLite file, PostgreSQL schema) and migrate it when needed.
            With False, opening creates nothing and raises :class:`StoreNotFound` when the
            store does not exist: what read-only tools want. ``memory://`` ignores it.
        clock: where "now" comes from; None for the backend's own clock.
        max_payload_bytes: longest accepted JSON payload.

    Raises:
        UnsupportedURL: an unknown scheme or option, or a bad value in the URL (a port
            outside 1-65535, ``pool_size=abc``, a schema name that is not an identifier).
    """
    shown = redact_url(url)
    if not isinstance(url, str):
        raise UnsupportedURL(f"a transport URL is a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsupportedURL(f"malformed transport URL {shown}: {exc}") from None
    scheme = parts.scheme.lower()
    common: dict[str, Any] = {"clock": clock, "max_payload_bytes": max_payload_bytes}
    if scheme == "memory":
        from ._memory import MemoryTransport

        _no_options(shown, parse_qsl(parts.query, keep_blank_values=True))
        return MemoryTransport(**common)
    if scheme == "sqlite":
        from ._sqlite import SQLiteTransport

        # As SQLAlchemy reads them: sqlite:///jobs.db is relative, sqlite:////var/jobs.db absolute.
        path = url[len("sqlite://") :].split("?", 1)[0].removeprefix("/")
        if path in ("", ":memory:"):
            path = ":memory:"
        _no_options(shown, parse_qsl(parts.query, keep_blank_values=True))
        return _bridged_if_needed(lambda: SQLiteTransport(path, create=create, **common))
    if scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresTransport, validate_schema
        from ._url import postgres_connect_args

        kwargs: dict[str, Any] = {"create": create}
        rest: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "pool_size":
                kwargs["pool_size"] = _pool_size(value, shown)
            elif key == "schema":
                try:
                    kwargs["schema"] = validate_schema(value)
                except InvalidRequest as exc:
                    raise UnsupportedURL(f"schema={value!r} in {shown}: {exc}") from None
            else:
                rest.append((key, value))
        query = urlencode(rest, quote_via=quote)
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
        postgres_connect_args(dsn)  # refuse a bad option now, not when the bridge opens it
        return _bridged_if_needed(lambda: PostgresTransport(dsn, **kwargs, **common))
    raise UnsupportedURL(
        f"unsupported transport URL {shown}: use memory://, sqlite:// or postgresql://"
    )


def _pool_size(value: str, shown: str) -> int:
    from ._postgres import MAX_POOL_SIZE

    if not value.isdigit() or not 1 <= int(value) <= MAX_POOL_SIZE:
        raise UnsupportedURL(
            f"pool_size={value!r} in {shown}: use a whole number from 1 to {MAX_POOL_SIZE}"
        )
    return int(value)


def _no_options(shown: str, options: list[tuple[str, str]]) -> None:
    if options:
        names = sorted({key for key, _ in options})
        raise UnsupportedURL(
            f"unknown option(s) {', '.join(names)} in {shown}: this URL takes none"
        )


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
