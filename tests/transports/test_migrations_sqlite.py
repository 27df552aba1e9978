"""The SQLite migrations, applied in order to an empty database, build exactly schema.sql."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from transports import SQLiteTransport
from transports._sql import load_migrations, load_schema

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite's loop; the bridge is covered by test_sqlite.py


def _normalize(sql: str | None) -> str:
    """SQL text without comments, with whitespace collapsed and case folded."""
    if sql is None:
        return ""
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\s+", " ", sql).strip().lower()
    return re.sub(r"\s*([(),])\s*", r"\1", sql)


def _objects(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[str, object]]:
    """Every schema object by (type, name): its normalized SQL and its columns."""
    found: dict[tuple[str, str], tuple[str, object]] = {}
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    for kind, name, table, sql in rows:
        if kind == "table":
            shape: object = conn.execute(f"PRAGMA table_xinfo({name})").fetchall()
        elif kind == "index":
            shape = (table, conn.execute(f"PRAGMA index_xinfo({name})").fetchall())
        else:
            shape = table
        found[(kind, name)] = (_normalize(sql), shape)
    return found


def _schema_objects(folder: Path) -> dict[tuple[str, str], tuple[str, object]]:
    """The objects schema.sql builds in a new database."""
    expected = sqlite3.connect(folder / "schema.db")
    try:
        expected.executescript(load_schema("sqlite"))
        return _objects(expected)
    finally:
        expected.close()


def test_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations("sqlite")
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


def test_migrations_build_the_schema(tmp_path: Path) -> None:
    """Running every migration gives the same tables, columns and indexes as schema.sql."""
    from_schema = sqlite3.connect(tmp_path / "schema.db")
    from_schema.executescript(load_schema("sqlite"))
    from_migrations = sqlite3.connect(tmp_path / "migrations.db")
    for migration in load_migrations("sqlite"):
        from_migrations.executescript(migration.sql)
    try:
        expected = _objects(from_schema)
        assert {name for _, name in expected} >= {"jobs", "leaders", "queue_configs", "cursors"}
        assert _objects(from_migrations) == expected
    finally:
        from_schema.close()
        from_migrations.close()


async def test_transport_migrates_an_empty_file_to_the_schema(tmp_path: Path) -> None:
    """What ``open()`` builds on a new file is schema.sql, at the latest version."""
    path = tmp_path / "jobs.db"
    async with SQLiteTransport(str(path)) as transport:
        version = transport.schema_version
    built = sqlite3.connect(path)
    try:
        assert _objects(built) == _schema_objects(tmp_path)
        assert built.execute("PRAGMA user_version").fetchone()[0] == version
        assert version == len(load_migrations("sqlite"))
    finally:
        built.close()


@pytest.mark.parametrize("at", range(1, len(load_migrations("sqlite"))))
async def test_an_older_database_is_migrated_to_the_schema(tmp_path: Path, at: int) -> None:
    """A database at an older version (a new one gets schema.sql at once) is brought up by
    the migrations after its version, to exactly schema.sql."""
    path = tmp_path / "jobs.db"
    old = sqlite3.connect(path)
    for migration in load_migrations("sqlite")[:at]:
        old.executescript(migration.sql)
    old.execute(f"PRAGMA user_version = {at}")
    old.close()
    async with SQLiteTransport(str(path)) as transport:
        version = transport.schema_version
    built = sqlite3.connect(path)
    try:
        assert built.execute("PRAGMA user_version").fetchone()[0] == version
        assert _objects(built) == _schema_objects(tmp_path)
    finally:
        built.close()
