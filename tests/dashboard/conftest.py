"""Stores for the dashboard tests: memory on both loops, SQLite and PostgreSQL on asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import transports
from transports import PostgresTransport, SQLiteTransport, Transport

# Load the SQL backends (and their query files) now, not on the event loop of a test.
assert PostgresTransport is not None
assert SQLiteTransport is not None


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh store of each backend."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dash.db'}"
    dsn = request.getfixturevalue("postgres_dsn")
    return f"{dsn}?schema={request.getfixturevalue('postgres_schema')}"


@pytest.fixture
async def backend_store(store_url: str) -> AsyncIterator[Transport]:
    """An open transport of ``store_url``."""
    async with transports.connect(store_url) as transport:
        yield transport
