"""Fixtures of the job runtime tests: a virtual clock, and transports on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actors.core import VirtualClock
from transports import MemoryTransport, PostgresTransport, SQLiteTransport, Transport
from transports.lowlevel import BridgedTransport

from ._support import START, FaultyTransport


@pytest.fixture
def clock() -> VirtualClock:
    """The test's clock: every node, transport and handler of the test reads it."""
    return VirtualClock(start=START)


@pytest.fixture
async def memory(clock: VirtualClock) -> AsyncIterator[MemoryTransport]:
    """An open memory transport on the test's clock, for tests of runtime logic."""
    async with MemoryTransport(clock=clock) as transport:
        yield transport


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Which storage a ``transport`` test runs on."""
    return str(request.param)


@pytest.fixture
async def transport(
    backend: str,
    anyio_backend: str,
    clock: VirtualClock,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Transport]:
    """An open transport of ``backend`` on the test's clock, for tests where storage matters.

    SQLite uses a fresh file; PostgreSQL a fresh schema. Under trio, the SQL backends (asyncio
    drivers) are bridged onto a private asyncio loop.
    """
    made: Transport
    if backend == "memory":
        made = MemoryTransport(clock=clock)
    elif backend == "sqlite":
        path = str(tmp_path / "jobs.db")

        def build_sqlite() -> Transport:
            return SQLiteTransport(path, clock=clock)

        made = BridgedTransport(build_sqlite) if anyio_backend == "trio" else build_sqlite()
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        schema = request.getfixturevalue("postgres_schema")

        def build_postgres() -> Transport:
            return PostgresTransport(dsn, schema=schema, clock=clock, pool_size=4)

        made = BridgedTransport(build_postgres) if anyio_backend == "trio" else build_postgres()
    if backend != "memory":
        # Virtual time stands still while a query runs, as it does for the memory backend.
        made = FaultyTransport(made, hold_time=clock)
    async with made:
        yield made
