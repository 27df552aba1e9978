"""PostgreSQL migrations: applied in order they build exactly ``schema.sql``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from transports import PostgresTransport
from transports._postgres import _render
from transports._sql import load_migrations

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # asyncpg used directly


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def _shape(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """Columns, indexes, constraints and sequences of a schema, with its name taken out."""

    def norm(value: object) -> object:
        # qualified names, then the schema's notification channels ('<schema>_jobs')
        return (
            value.replace(f'"{schema}".', "").replace(f"{schema}.", "").replace(schema, "<s>")
            if isinstance(value, str)
            else value
        )

    queries = {
        "columns": """
            SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
                   column_default, is_identity
            FROM information_schema.columns WHERE table_schema = $1
            ORDER BY table_name, ordinal_position""",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
        "constraints": """
            SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
            FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
            WHERE n.nspname = $1 ORDER BY c.conname""",
        "sequences": """
            SELECT sequence_name, data_type, start_value, increment
            FROM information_schema.sequences WHERE sequence_schema = $1 ORDER BY sequence_name""",
        "functions": """
            SELECT p.proname, pg_get_functiondef(p.oid)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = $1 ORDER BY p.proname""",
        "triggers": """
            SELECT t.tgname, pg_get_triggerdef(t.oid)
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY t.tgname""",
    }
    shape = {}
    for name, sql in queries.items():
        rows = await conn.fetch(sql, schema)
        shape[name] = [tuple(norm(v) for v in row) for row in rows]
    return shape


@asyncio_only
async def test_migrations_build_schema_sql(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """Every migration applied in order yields the same tables, indexes, functions and
    triggers as schema.sql, which is what a new store gets (``migrate`` on version 0)."""
    migrated = postgres_schema
    fresh = f"t_{uuid.uuid4().hex[:12]}"
    try:
        applied = await PostgresTransport(postgres_dsn, schema=migrated)._migrate_on(
            admin, whole=False
        )
        assert applied == len(load_migrations("postgres"))
        assert await PostgresTransport(postgres_dsn, schema=fresh).migrate() == applied
        got, want = await _shape(admin, migrated), await _shape(admin, fresh)
        assert got["columns"], "the migrated schema is empty"
        assert got["functions"], "the migrated schema has no functions"
        assert got["triggers"], "the migrated schema has no triggers"
        for part in ("columns", "indexes", "constraints", "sequences", "functions", "triggers"):
            assert got[part] == want[part], part
        versions = "SELECT version FROM {}.schema_version ORDER BY version"
        assert await admin.fetch(versions.format(f'"{fresh}"')) == await admin.fetch(
            versions.format(f'"{migrated}"')
        )
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')


@asyncio_only
async def test_migrate_is_idempotent(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """A second migrate applies nothing and the version table lists each migration once."""
    transport = PostgresTransport(postgres_dsn, schema=postgres_schema)
    assert await transport.migrate() == len(load_migrations("postgres"))
    assert await transport.migrate() == len(load_migrations("postgres"))
    versions = [
        row[0]
        for row in await admin.fetch(
            f'SELECT version FROM "{postgres_schema}".schema_version ORDER BY version'
        )
    ]
    assert versions == [m.version for m in load_migrations("postgres")]


def test_migrations_are_numbered_from_one() -> None:
    """Migration files are numbered 1..n with no gap."""
    assert [m.version for m in load_migrations("postgres")] == list(
        range(1, len(load_migrations("postgres")) + 1)
    )


@asyncio_only
@pytest.mark.parametrize("at", [1, 6, len(load_migrations("postgres")) - 1])
async def test_an_older_schema_is_migrated_to_the_schema(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str, at: int
) -> None:
    """A schema at an older version (a new one gets schema.sql at once) is brought up by the
    migrations after its version, to what a new schema gets."""
    old = postgres_schema
    fresh = f"t_{uuid.uuid4().hex[:12]}"
    transport = PostgresTransport(postgres_dsn, schema=old)
    try:
        async with admin.transaction():
            await admin.execute(transport._sql["create_schema"])
            for migration in load_migrations("postgres")[:at]:
                await admin.execute(_render(migration.sql, old, notify=True))
                await admin.execute(transport._sql["record_version"], migration.version)
        assert await transport.migrate() == len(load_migrations("postgres"))
        await PostgresTransport(postgres_dsn, schema=fresh).migrate()
        got, want = await _shape(admin, old), await _shape(admin, fresh)
        assert got == want
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')
