"""The chaos run's database side: a fresh schema, an audit trail of job transitions, and an
admin connection that survives a server restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg

from transports import PostgresTransport

from .chaos_app import EXECUTIONS_DDL

# Every change of a job's state or lease token, and any write at all to a finished job, lands
# in `transitions`, written by the database itself in the same transaction as the change. A
# finalize that the store refuses changes no row and leaves no trace; one that it wrongly
# accepts leaves one, so the checks can tell.
AUDIT_DDL = """
CREATE TABLE {schema}.transitions (
    seq bigserial PRIMARY KEY,
    at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
    job_id bigint NOT NULL,
    old_state text NOT NULL,
    new_state text NOT NULL,
    old_token bigint,
    new_token bigint,
    old_owner text,
    new_owner text,
    old_attempt integer NOT NULL,
    new_attempt integer NOT NULL,
    old_expires double precision,
    error_changed boolean NOT NULL,
    new_error text
);
CREATE FUNCTION {schema}.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.transitions (
        job_id, old_state, new_state, old_token, new_token, old_owner, new_owner,
        old_attempt, new_attempt, old_expires, error_changed, new_error
    ) VALUES (
        NEW.id, OLD.state, NEW.state, OLD.lease_token, NEW.lease_token, OLD.lease_owner,
        NEW.lease_owner, OLD.attempt, NEW.attempt, OLD.lease_expires_at,
        OLD.last_error IS DISTINCT FROM NEW.last_error,
        CASE WHEN OLD.last_error IS DISTINCT FROM NEW.last_error THEN left(NEW.last_error, 300) END
    );
    RETURN NULL;
END
$$;
CREATE TRIGGER audit AFTER UPDATE ON {schema}.jobs FOR EACH ROW
WHEN (OLD.state IN ('succeeded', 'dead', 'cancelled')
      OR OLD.state IS DISTINCT FROM NEW.state
      OR OLD.lease_token IS DISTINCT FROM NEW.lease_token)
EXECUTE FUNCTION {schema}.audit();
"""

TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    OSError,
)


def quoted(schema: str) -> str:
    return f'"{schema}"'


async def create_schema(dsn: str, schema: str, *, audit: bool) -> None:
    """actorq's tables (by its own migrations), the executions table and, if ``audit``, the
    transition audit trail. Drops the schema again if any step fails."""
    try:
        async with PostgresTransport(dsn, schema=schema, pool_size=1, notify=False):
            pass
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(EXECUTIONS_DDL.replace("{schema}", quoted(schema)))
            if audit:
                await conn.execute(AUDIT_DDL.replace("{schema}", quoted(schema)))
        finally:
            await conn.close()
    except BaseException:
        await drop_schema(dsn, schema)
        raise


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop the run's schema, waiting out a server that is still coming back."""
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = await asyncpg.connect(dsn)
            break
        except TRANSIENT:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quoted(schema)} CASCADE")
    finally:
        await conn.close()


class Admin:
    """The test's own connection; reconnects (waiting for the server) after a failure."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.dsn, server_settings={"application_name": "chaos driver"}
            )
        return self._conn

    async def fetch(self, sql: str, *args: Any, patience: float = 60.0) -> list[asyncpg.Record]:
        deadline = time.monotonic() + patience
        while True:
            try:
                conn = await self._connection()
                rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
                return rows
            except TRANSIENT:
                self._conn = None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


# --- the server itself ------------------------------------------------------------------------


def cluster_version() -> str | None:
    """The one PostgreSQL version configured on this machine, if the test may manage it."""
    root = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") is None or not root.is_dir():
        return None
    versions = sorted(p.name for p in root.iterdir() if p.is_dir())
    return versions[0] if len(versions) == 1 else None


def may_restart_server() -> str | None:
    """Why the server must not be restarted by this test, or None when it may.

    It may when this machine runs it under ``pg_ctlcluster`` and we are root (as in CI and
    on the development machine); ``ACTORQ_CHAOS_RESTART=0`` forbids it.
    """
    if os.environ.get("ACTORQ_CHAOS_RESTART", "1") == "0":
        return "ACTORQ_CHAOS_RESTART=0"
    if cluster_version() is None:
        return "no single pg_ctlcluster-managed server on this machine"
    if os.geteuid() != 0:
        return "not root"
    return None


def pg_ctlcluster(action: str) -> None:
    """``pg_ctlcluster --skip-systemctl-redirect <version> <cluster> <action>``."""
    version = cluster_version()
    assert version is not None
    cluster = os.environ.get("ACTORQ_CHAOS_CLUSTER", "main")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def ensure_server_started() -> None:
    """Start the server if it is down (after a restart that failed halfway)."""
    version = cluster_version()
    if version is None:
        return
    cluster = os.environ.get("ACTORQ_CHAOS_CLUSTER", "main")
    status = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "status"],
        capture_output=True,
        timeout=60,
    )
    if status.returncode != 0:
        pg_ctlcluster("start")
