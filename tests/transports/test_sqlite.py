"""SQLiteTransport: the conformance suite on asyncio and trio, plus SQLite's own guarantees."""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from transports import (
    ConnectionLost,
    EnqueueRequest,
    InvalidRequest,
    JobState,
    QueueConfig,
    SchemaVersionMismatch,
    SQLiteTransport,
    StoreReadOnly,
    Transport,
    TransportClosed,
    connect,
)
from transports.lowlevel import (
    BridgedTransport,
    Complete,
    FinalizeRequest,
    FinalizeResult,
    RenewRequest,
    Retry,
)
from transports.testing import ManualClock, TransportConformance, TransportFactory

pytestmark = pytest.mark.anyio


def _sqlite_factory(path: str, anyio_backend: str) -> TransportFactory:
    """``make(clock)`` on ``path``; under trio, bridged onto a private asyncio loop."""

    def make(clock: ManualClock) -> Transport:
        if anyio_backend == "trio":
            return BridgedTransport(lambda: SQLiteTransport(path, clock=clock))
        return SQLiteTransport(path, clock=clock)

    return make


class TestSQLiteConformance(TransportConformance):
    supports_second_instance = True

    @pytest.fixture
    def transport_factory(self, tmp_path: Path, anyio_backend: str) -> TransportFactory:
        return _sqlite_factory(str(tmp_path / "jobs.db"), anyio_backend)


class TestSQLiteMemoryConformance(TransportConformance):
    """``:memory:`` is one private database per transport, so no second instance."""

    @pytest.fixture
    def transport_factory(self, anyio_backend: str) -> TransportFactory:
        return _sqlite_factory(":memory:", anyio_backend)


# --- SQLite-specific ------------------------------------------------------------------------
# These talk to SQLiteTransport directly, so they run on asyncio (aiosqlite's only loop).


asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


def _pragma(path: str, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


@asyncio_only
async def test_open_creates_the_schema_in_wal_mode(db_path: str) -> None:
    """A new file gets WAL mode and the current schema version."""
    async with SQLiteTransport(db_path, clock=ManualClock()) as transport:
        assert _pragma(db_path, "journal_mode") == "wal"
        assert _pragma(db_path, "user_version") == transport.schema_version >= 1


@asyncio_only
async def test_reopening_keeps_the_jobs(db_path: str) -> None:
    """Jobs survive closing and reopening the file; ids keep growing."""
    clock = ManualClock()
    async with SQLiteTransport(db_path, clock=clock) as transport:
        first = await transport.enqueue(EnqueueRequest(kind="k", payload={"n": 1}))
    async with SQLiteTransport(db_path, clock=clock) as transport:
        job = await transport.get(first.job_id)
        assert job.payload == {"n": 1}
        second = await transport.enqueue(EnqueueRequest(kind="k"))
        assert second.job_id > first.job_id


@asyncio_only
async def test_ids_are_never_reused_after_cleanup(db_path: str) -> None:
    """AUTOINCREMENT: a deleted job's id is not handed out again."""
    clock = ManualClock()
    async with SQLiteTransport(db_path, clock=clock) as transport:
        job_id = (await transport.enqueue(EnqueueRequest(kind="k"))).job_id
        await transport.cancel(job_id)
        clock.advance(1)
        assert await transport.cleanup(finished_before=clock.now()) == 1
        assert (await transport.enqueue(EnqueueRequest(kind="k"))).job_id > job_id


@asyncio_only
async def test_newer_schema_raises_mismatch(db_path: str) -> None:
    """A database written by newer code is refused, migrations or not."""
    async with SQLiteTransport(db_path) as transport:
        newer = transport.schema_version + 1
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(SchemaVersionMismatch):
        await SQLiteTransport(db_path).open()


@asyncio_only
async def test_old_schema_without_auto_migrate_raises_mismatch(db_path: str) -> None:
    """With auto_migrate off, an empty file is refused until ``migrate()`` runs."""
    with pytest.raises(SchemaVersionMismatch):
        await SQLiteTransport(db_path, auto_migrate=False).open()
    assert _pragma(db_path, "user_version") == 0


@asyncio_only
async def test_migrate_is_idempotent(db_path: str) -> None:
    """``migrate()`` on an up-to-date database changes nothing and reports the version."""
    async with SQLiteTransport(db_path) as transport:
        assert await transport.migrate() == transport.schema_version
        assert await transport.migrate() == transport.schema_version


@asyncio_only
async def test_two_opens_of_a_new_file_migrate_once(db_path: str) -> None:
    """Opening one new file from two transports at once leaves one good schema."""
    import anyio

    first, second = SQLiteTransport(db_path), SQLiteTransport(db_path)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.open)
            tg.start_soon(second.open)
        assert await first.enqueue(EnqueueRequest(kind="k"))
        assert (await second.counts())[0].total == 1
    finally:
        await first.aclose()
        await second.aclose()


@asyncio_only
async def test_unreachable_file_raises_connection_lost(tmp_path: Path) -> None:
    """A path that cannot be opened gives a typed error, not a driver exception."""
    with pytest.raises(ConnectionLost) as info:
        await SQLiteTransport(str(tmp_path / "missing" / "jobs.db")).open()
    assert isinstance(info.value.__cause__, sqlite3.Error)


@pytest.fixture
def garbage_path(db_path: str) -> str:
    Path(db_path).write_bytes(b"this is not a database" * 100)
    return db_path


@asyncio_only
async def test_not_a_database_raises_connection_lost(garbage_path: str) -> None:
    """A file that is not SQLite gives a typed error."""
    with pytest.raises(ConnectionLost):
        await SQLiteTransport(garbage_path).open()


@asyncio_only
async def test_connection_closed_underneath_raises_connection_lost(db_path: str) -> None:
    """If the driver's connection dies mid-run, calls raise ConnectionLost."""
    transport = SQLiteTransport(db_path)
    await transport.open()
    try:
        conn = transport._conn
        assert conn is not None
        await conn.close()
        with pytest.raises(ConnectionLost):
            await transport.enqueue(EnqueueRequest(kind="k"))
        with pytest.raises(ConnectionLost):
            await transport.claim("default", owner="w", limit=1, ttl=1)
        with pytest.raises(ConnectionLost):
            await transport.reap()
    finally:
        await transport.aclose()


@asyncio_only
async def test_driver_connection_closed_underneath_raises_connection_lost(db_path: str) -> None:
    """If the sqlite3 connection itself is closed under aiosqlite, calls raise ConnectionLost."""
    transport = SQLiteTransport(db_path)
    await transport.open()
    try:
        conn = transport._conn
        assert conn is not None
        await conn._execute(conn._conn.close)  # on aiosqlite's thread, behind its back
        with pytest.raises(ConnectionLost) as info:
            await transport.enqueue_many([EnqueueRequest(kind="k", dedupe_key="d")])
        assert isinstance(info.value.__cause__, sqlite3.Error)
        with pytest.raises(ConnectionLost):
            await transport.get(1)
    finally:
        await transport.aclose()


@asyncio_only
async def test_database_removed_underneath_gives_only_typed_errors(tmp_path: Path) -> None:
    """Removing the database's directory mid-run never lets a driver exception out.

    SQLite keeps writing to the unlinked files it holds open, so calls may still succeed;
    reopening the path fails with ConnectionLost.
    """
    folder = tmp_path / "store"
    folder.mkdir()
    path = str(folder / "jobs.db")
    transport = SQLiteTransport(path)
    await transport.open()
    try:
        await transport.enqueue(EnqueueRequest(kind="k"))
        for name in os.listdir(folder):
            os.remove(folder / name)
        folder.rmdir()
        for _ in range(5):
            try:
                await transport.enqueue_many([EnqueueRequest(kind="k", payload="x" * 4000)] * 50)
                await transport.counts()
            except ConnectionLost:
                pass
    finally:
        await transport.aclose()
    with pytest.raises(ConnectionLost):
        await SQLiteTransport(path).open()


@asyncio_only
async def test_lock_timeout_raises_connection_lost(db_path: str) -> None:
    """Another process holding the write lock past busy_timeout gives ConnectionLost."""
    async with SQLiteTransport(db_path, busy_timeout=0.05) as transport:
        holder = sqlite3.connect(db_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(ConnectionLost, match="locked"):
                await transport.enqueue(EnqueueRequest(kind="k"))
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        # Nothing was written, and the transport works again.
        assert await transport.counts() == []
        assert await transport.enqueue(EnqueueRequest(kind="k"))


@asyncio_only
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_non_finite_times_are_rejected_before_writing(db_path: str, bad: float) -> None:
    """NaN and infinities never reach the database (SQLite would store NaN as NULL)."""
    async with SQLiteTransport(db_path, clock=ManualClock()) as transport:
        with pytest.raises(InvalidRequest):
            await transport.enqueue_many(
                [EnqueueRequest(kind="k"), EnqueueRequest(kind="k", run_at=bad)]
            )
        assert await transport.counts() == []
        await transport.enqueue(EnqueueRequest(kind="k"))
        (lease,) = await transport.claim("default", owner="w", limit=1, ttl=10)
        with pytest.raises(InvalidRequest):
            await transport.claim("default", owner="w", limit=1, ttl=bad)
        with pytest.raises(InvalidRequest):
            await transport.finalize(
                [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Retry(run_at=bad))]
            )
        assert (await transport.get(lease.job_id)).state is JobState.RUNNING
        with pytest.raises(InvalidRequest):
            await transport.advance_cursor("c", expected=None, new=bad)


@asyncio_only
async def test_use_before_open_raises_closed(db_path: str) -> None:
    with pytest.raises(TransportClosed):
        await SQLiteTransport(db_path).counts()


@asyncio_only
async def test_large_batches_span_statements(db_path: str) -> None:
    """Batches over one statement's size still answer in order, all or nothing."""
    clock = ManualClock()
    async with SQLiteTransport(db_path, clock=clock) as transport:
        requests = [
            EnqueueRequest(kind="k", payload=i, dedupe_key=f"d{i % 700}") for i in range(1200)
        ]
        results = await transport.enqueue_many(requests)
        assert [r.deduplicated for r in results] == [i >= 700 for i in range(1200)]
        assert [r.job_id for r in results[:700]] == sorted(r.job_id for r in results[:700])
        assert results[1199].job_id == results[1199 - 700].job_id
        leases = await transport.claim("default", owner="w", limit=1000, ttl=10)
        assert len(leases) == 700
        renewed = await transport.renew(
            [RenewRequest(job_id=lease.job_id, token=lease.token) for lease in leases], ttl=5
        )
        assert len(renewed) == 700
        done = await transport.finalize(
            [
                FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())
                for lease in leases
            ]
        )
        assert set(done) == {FinalizeResult.APPLIED}


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_connect_file_url(tmp_path: Path, anyio_backend: str) -> None:
    """``connect("sqlite:///path")`` opens the file; under trio through the bridge."""
    path = tmp_path / "jobs.db"
    async with connect(f"sqlite:///{path}", clock=ManualClock()) as transport:
        expected = SQLiteTransport if anyio_backend == "asyncio" else BridgedTransport
        assert isinstance(transport, expected)
        job_id = (await transport.enqueue(EnqueueRequest(kind="k"))).job_id
        assert (await transport.get(job_id)).kind == "k"
    assert path.exists()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_connect_url_with_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """``sqlite:///jobs.db`` is a file in the working directory, not at the filesystem root."""
    monkeypatch.chdir(tmp_path)
    async with connect("sqlite:///relative.db", clock=ManualClock()) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
    assert await anyio.Path(tmp_path / "relative.db").exists()
    assert not await anyio.Path("/relative.db").exists()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_connect_memory_url(anyio_backend: str) -> None:
    """``connect("sqlite://:memory:")`` gives a private in-memory database."""
    async with connect("sqlite://:memory:") as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
        assert (await transport.counts())[0].total == 1


@asyncio_only
async def test_read_only_database_raises_store_read_only(db_path: str) -> None:
    """Writes to a database that refuses them are StoreReadOnly (not retried as a lost
    connection); reads still work."""
    async with SQLiteTransport(db_path) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
        await transport._conn.execute("PRAGMA query_only = ON")  # type: ignore[union-attr]
        with pytest.raises(StoreReadOnly, match="read-only"):
            await transport.enqueue(EnqueueRequest(kind="k"))
        with pytest.raises(StoreReadOnly):
            await transport.claim("default", owner="w", limit=1, ttl=30)
        assert [c.total for c in await transport.counts()] == [1]


@asyncio_only
async def test_stored_config_out_of_range_reads_as_the_default(db_path: str) -> None:
    """A queue config another tool stored out of range reads back as unset (the node default),
    and a row with an invalid name is skipped: no stored value can crash a node."""
    async with SQLiteTransport(db_path) as transport:
        await transport.set_queue_config(QueueConfig(name="good", concurrency=3, retention=60.0))
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO queue_configs (name, paused, concurrency, retention) VALUES "
            "('bad', 0, -5, -1.0), ('huge', 1, 1000000000, 7.5), ('a b', 0, 2, 1.0)"
        )
    async with SQLiteTransport(db_path) as transport:
        assert await transport.get_queue_config("bad") == QueueConfig(name="bad")
        assert await transport.list_queue_configs() == [
            QueueConfig(name="bad"),
            QueueConfig(name="good", concurrency=3, retention=60.0),
            QueueConfig(name="huge", paused=True, retention=7.5),
        ]


# --- wake-ups across connections and processes ---------------------------------------------

WAKE_SAFETY = 4.0  # real seconds: a safety net, never a wait (the wake-up takes milliseconds)


async def _waits_until(transport: Transport, queues: list[str], action: object) -> None:
    """``wait_for_work(queues)`` started before ``action()`` returns after it."""
    returned = anyio.Event()

    async def waiter() -> None:
        await transport.wait_for_work(queues)
        returned.set()

    with anyio.fail_after(WAKE_SAFETY):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.lowlevel.checkpoint()
            await action()  # type: ignore[operator]
            await returned.wait()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_commit_by_another_connection_wakes_a_waiter(
    db_path: str, anyio_backend: str
) -> None:
    """A job enqueued through another transport on the same file (another connection, as
    another process would be) wakes this transport's waiter: no poll interval to wait out."""
    async with connect(f"sqlite:///{db_path}") as waiting, connect(f"sqlite:///{db_path}") as other:

        async def enqueue() -> None:
            await other.enqueue(EnqueueRequest(kind="k", queue="emails"))

        await _waits_until(waiting, ["emails"], enqueue)


@asyncio_only
async def test_a_commit_by_another_process_wakes_a_waiter(db_path: str) -> None:
    """An enqueue by another OS process wakes a waiter within the safety net."""
    import sys

    async with SQLiteTransport(db_path) as transport:

        async def enqueue_elsewhere() -> None:
            script = (
                "import anyio, sys\n"
                "from transports import EnqueueRequest, SQLiteTransport\n"
                "async def main():\n"
                "    async with SQLiteTransport(sys.argv[1]) as t:\n"
                "        await t.enqueue(EnqueueRequest(kind='k', queue='emails'))\n"
                "anyio.run(main)\n"
            )
            done = await anyio.run_process([sys.executable, "-c", script, db_path], check=False)
            assert done.returncode == 0, done.stderr

        await _waits_until(transport, ["emails"], enqueue_elsewhere)


@asyncio_only
async def test_the_watcher_looks_only_while_somebody_waits_and_stops_on_close(
    db_path: str,
) -> None:
    """A file database gets a watcher when it opens (``:memory:`` none); it is gone after
    close."""
    async with SQLiteTransport(":memory:") as private:
        with anyio.move_on_after(0.05):
            await private.wait_for_work(["q"])
        assert private._watcher is None
    transport = SQLiteTransport(db_path)
    async with transport:
        with anyio.move_on_after(0.05):
            await transport.wait_for_work(["q"])
        watcher = transport._watcher
        assert watcher is not None
        assert not watcher.done()
    assert watcher.done()


@asyncio_only
async def test_open_and_close_at_once_leaves_no_connection_thread(db_path: str) -> None:
    """A transport closed right after it opened (its watcher never ran a step) still closes
    the watcher's connection: no aiosqlite thread outlives it (one would hang the exit)."""
    import threading

    def connection_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}

    before = connection_threads()
    for _ in range(3):
        async with SQLiteTransport(db_path):
            pass
    for thread in connection_threads() - before:
        # A closed connection's thread ends within moments; a leaked one never does.
        await anyio.to_thread.run_sync(thread.join, 5.0)
        assert not thread.is_alive(), f"{thread.name} outlived its transport"
