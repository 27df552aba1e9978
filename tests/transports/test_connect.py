"""``transports.connect``: read-only opening, URL errors, libpq options and password redaction."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import anyio
import asyncpg
import pytest

import transports
from transports import (
    ConnectionLost,
    EnqueueRequest,
    SchemaVersionMismatch,
    SQLiteTransport,
    StoreNotFound,
    UnsupportedURL,
    connect,
    redact_url,
)

# Imported here, not first by connect() inside a test: importing a backend reads its SQL files.
assert SQLiteTransport is not None

pytestmark = pytest.mark.anyio

SECRET = "s3cret-pw"


# --- read-only opening: create=False creates nothing -------------------------------------


async def test_sqlite_missing_file_without_create_raises_and_creates_nothing(
    tmp_path: Path,
) -> None:
    """create=False on a missing SQLite file raises StoreNotFound and leaves no file behind."""
    path = tmp_path / "missing.db"
    with pytest.raises(StoreNotFound, match=r"missing\.db"):
        async with connect(f"sqlite:///{path}", create=False):
            pass
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


async def test_sqlite_missing_folder_without_create_raises_store_not_found(
    tmp_path: Path,
) -> None:
    """A path under a folder that does not exist is a missing store too, not a lost connection."""
    with pytest.raises(StoreNotFound):
        async with connect(f"sqlite:///{tmp_path / 'nowhere' / 'jobs.db'}", create=False):
            pass
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


async def test_sqlite_file_without_schema_is_not_migrated(tmp_path: Path) -> None:
    """create=False on a SQLite file that holds no actorq schema raises and migrates nothing."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    with pytest.raises(StoreNotFound, match="no actorq schema"):
        async with connect(f"sqlite:///{path}", create=False):
            pass
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
    assert tables == ["unrelated"]


async def test_sqlite_existing_store_opens_without_create(tmp_path: Path) -> None:
    """create=False opens an existing store and reads and writes it as usual."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with connect(url) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
    async with connect(url, create=False) as transport:
        assert [c.total for c in await transport.counts()] == [1]
        await transport.enqueue(EnqueueRequest(kind="k"))
        assert [c.total for c in await transport.counts()] == [2]


async def test_sqlite_newer_schema_without_create_is_a_mismatch(tmp_path: Path) -> None:
    """create=False on a store of another version raises SchemaVersionMismatch, migrating nothing."""
    path = tmp_path / "jobs.db"
    async with connect(f"sqlite:///{path}"):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaVersionMismatch):
        async with connect(f"sqlite:///{path}", create=False):
            pass


async def test_memory_url_ignores_create() -> None:
    """memory:// has nothing to find: create=False opens it as usual."""
    async with connect("memory://", create=False) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
        assert [c.total for c in await transport.counts()] == [1]


async def _schema_exists(dsn: str, schema: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
        )
        return found
    finally:
        await conn.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_postgres_missing_schema_without_create_raises_and_creates_nothing(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """create=False on a schema that does not exist (a typo) raises StoreNotFound, creating none."""
    with pytest.raises(StoreNotFound, match=postgres_schema):
        async with connect(f"{postgres_dsn}?schema={postgres_schema}", create=False):
            pass
    assert not await _schema_exists(postgres_dsn, postgres_schema)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_postgres_missing_schema_without_create_on_both_loops(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """The bridged transport (trio) raises the same StoreNotFound."""
    with pytest.raises(StoreNotFound):
        async with connect(f"{postgres_dsn}?schema={postgres_schema}", create=False):
            pass


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_postgres_existing_schema_opens_without_create(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """create=False opens a schema that exists and works on it."""
    url = f"{postgres_dsn}?schema={postgres_schema}"
    async with connect(url) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
    async with connect(url, create=False) as transport:
        assert [c.total for c in await transport.counts()] == [1]


# --- bad URLs: one line, the exact type, no password ---------------------------------------

PG = f"postgresql://root:{SECRET}@127.0.0.1:5432/test"
BAD_URLS = [
    f"{PG}?pool_size=abc",
    f"{PG}?pool_size=0",
    f"{PG}?pool_size=-3",
    f"{PG}?pool_size=1001",
    f"{PG}?pool_sise=3",
    f"{PG}?frobnicate=1",
    f"{PG}?schema=bad-name",
    f"{PG}?schema=",
    f"{PG}?schema=1starts_with_a_digit",
    f"{PG}?keepalives=1",
    f"{PG}?sslmode=sometimes",
    f"{PG}?connect_timeout=soon",
    f"{PG}?connect_timeout=-1",
    f"{PG}?options=--",
    f"{PG}?options=-x",
    f"{PG}?port=99999",
    f"postgresql://root:{SECRET}@127.0.0.1:99999/test",
    f"postgresql://root:{SECRET}@127.0.0.1:port/test",
    f"postgresql://root:{SECRET}@[::1/test",
    f"postgresql://root:{SECRET}@a:5432,b:70000/test",
    "memory://?x=1",
    "sqlite:///jobs.db?mode=ro",
    f"ftp://root:{SECRET}@host/x",
    "jobs.db",
    "",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_are_one_line_typed_errors_without_the_password(url: str) -> None:
    """Each bad URL raises exactly UnsupportedURL at connect(), one line, password hidden."""
    with pytest.raises(UnsupportedURL) as caught:
        connect(url)
    message = str(caught.value)
    assert type(caught.value) is UnsupportedURL
    assert "\n" not in message
    assert SECRET not in message
    assert SECRET not in repr(caught.value)
    assert isinstance(caught.value, transports.InvalidRequest)


def test_a_url_that_is_not_a_string_is_refused() -> None:
    """connect(None) is a typed error too."""
    with pytest.raises(UnsupportedURL):
        connect(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        f"{PG}?sslmode=require&sslrootcert=/etc/ca.pem&target_session_attrs=read-write",
        f"{PG}?connect_timeout=5&application_name=shop&options=-c%20statement_timeout%3D5s",
        f"{PG}?sslcert=/c.pem&sslkey=/k.pem&fallback_application_name=x&pool_size=4&schema=s",
        f"postgresql://root:{SECRET}@a:5432,b:5433/test?target_session_attrs=any",
        f"postgresql://root:{SECRET}@[::1]:5432/test",
        "postgres:///test?host=/var/run/postgresql&port=5432",
    ],
)
def test_libpq_options_are_accepted(url: str) -> None:
    """Standard libpq options are accepted (nothing connects until the transport is opened)."""
    transport = connect(url)
    assert SECRET not in repr(transport)


# --- libpq options reach the driver ---------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_libpq_options_reach_the_server(postgres_dsn: str, postgres_schema: str) -> None:
    """application_name, options=-c and connect_timeout are honoured on every connection."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    url = (
        f"{postgres_dsn}?schema={postgres_schema}&application_name={name}"
        "&options=-c%20statement_timeout%3D4321&connect_timeout=7&sslmode=disable"
    )
    async with connect(url) as transport:
        pool = transport._pool  # type: ignore[attr-defined]
        assert await pool.fetchval("SHOW application_name") == name
        assert await pool.fetchval("SHOW statement_timeout") == "4321ms"
        await transport.enqueue(EnqueueRequest(kind="k"))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sslmode_reaches_the_driver(postgres_dsn: str, postgres_schema: str) -> None:
    """sslmode=require is honoured: the test server has no TLS, so the connection is refused."""
    with pytest.raises(ConnectionLost, match="SSL"):
        async with connect(f"{postgres_dsn}?schema={postgres_schema}&sslmode=require"):
            pass


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_wrong_password_is_never_shown(postgres_dsn: str, postgres_schema: str) -> None:
    """A failed connection's error names neither the password nor shows it in the repr."""
    url = postgres_dsn.replace("root@", f"nobody:{SECRET}@") + f"?schema={postgres_schema}"
    transport = connect(url)
    assert SECRET not in repr(transport)
    with pytest.raises(transports.TransportError) as caught:
        async with transport:
            pass
    assert SECRET not in str(caught.value)


# --- redact_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://ada:{SECRET}@db:5432/x", "postgresql://ada:***@db:5432/x"),
        (
            f"postgresql://ada:{SECRET}@db/x?sslmode=require",
            "postgresql://ada:***@db/x?sslmode=require",
        ),
        (
            f"postgresql://db/x?user=ada&password={SECRET}",
            "postgresql://db/x?user=ada&password=***",
        ),
        (f"postgresql://db/x?sslpassword={SECRET}", "postgresql://db/x?sslpassword=***"),
        ("postgresql://ada@db/x", "postgresql://ada@db/x"),
        (f"postgresql://ada:p%40ss{SECRET}@db/x", "postgresql://ada:***@db/x"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
        (f"sqlite:///jobs.db?password={SECRET}", "sqlite:///jobs.db?password=***"),
        (f"postgresql:///x?password={SECRET}", "postgresql:///x?password=***"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    """The password becomes ***; everything else stays as written."""
    assert redact_url(url) == shown


def test_redact_url_never_raises() -> None:
    """A URL too broken to parse is not shown at all."""
    assert SECRET not in redact_url(f"postgresql://a:{SECRET}@[::1/x")


def test_libpq_options_become_driver_arguments() -> None:
    """Options asyncpg reads stay in its DSN; the others become its timeout and settings."""
    from transports._url import postgres_connect_args

    args = postgres_connect_args(
        "postgresql://u@h/db?sslmode=verify-full&sslrootcert=%2Fca.pem&connect_timeout=2.5"
        "&fallback_application_name=fb&options=-c%20a%3D1%20-cb%3D2%20--lock-timeout%3D3s"
    )
    assert args.dsn == "postgresql://u@h/db?sslmode=verify-full&sslrootcert=%2Fca.pem"
    assert args.timeout == 2.5
    assert args.server_settings == {
        "a": "1",
        "b": "2",
        "lock_timeout": "3s",
        "application_name": "fb",
    }
    named = postgres_connect_args("postgresql://h/db?application_name=app&connect_timeout=0")
    assert named.server_settings == {"application_name": "app"}
    assert named.timeout is None  # libpq's 0: wait forever
