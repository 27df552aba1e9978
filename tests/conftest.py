"""Fixtures shared by every test: both event loops, and the real PostgreSQL server."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

POSTGRES_DSN = os.environ.get("ACTORQ_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run every ``anyio``-marked test on asyncio and on trio, failing on blocking calls.

    While the test runs, blockbuster turns a blocking call made by actorq's own code on the
    event loop's thread (a sync ``sleep``, file or socket I/O) into an error.
    """
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(["actors", "transports"]) as detector:
        for function in detector.functions.values():
            # asyncpg reads ~/.pgpass and TLS files while parsing a DSN: once per connection.
            function.can_block_in("asyncpg/connect_utils.py", {"_parse_connect_dsn_and_args"})
        yield str(request.param)


@pytest.hookimpl(wrapper=True, trylast=True)  # inside pytest-cov's own pause
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run ``no_cover`` tests with no trace function at all, in this thread and in the threads
    they start. In an xdist worker pytest-cov's pause stops its coverage, and the tracer of
    the one started before it takes over again: those tests ran two to three times slower
    there (a 10-seed sweep block: 7.8 s against 2.8 s)."""
    if item.get_closest_marker("no_cover") is None:
        return (yield)
    import sys
    import threading

    tracer, thread_tracer = sys.gettrace(), threading.gettrace()
    sys.settrace(None)
    threading.settrace(None)  # type: ignore[arg-type]  # None removes it
    try:
        return (yield)
    finally:
        sys.settrace(tracer)
        threading.settrace(thread_tracer)  # type: ignore[arg-type]


def _postgres_reachable(dsn: str) -> bool:
    parts = urlsplit(dsn)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of the real test server; skips without one, but fails the run when CI=true."""
    if not _postgres_reachable(POSTGRES_DSN):
        message = f"PostgreSQL is not reachable at {POSTGRES_DSN}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    return POSTGRES_DSN


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema name for one test, dropped afterwards (sync, so it works on any loop)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


__all__ = ["IN_CI", "POSTGRES_DSN", "AsyncIterator"]
