"""The SQLite backend: one file (or ``:memory:``) shared by the processes of one machine.

The database runs in WAL mode with ``synchronous=NORMAL``. Each transport holds one aiosqlite
connection guarded by an anyio lock, which serialises this process's calls cheaply; across
processes, SQLite's write lock does it. Every write is either one statement (claim, renew and
finalize of up to ``_CHUNK`` requests, leader and cursor updates) — atomic on its own, and
taking the write lock up front like ``BEGIN IMMEDIATE`` — or a ``BEGIN IMMEDIATE``
transaction, so that any number of processes on one file see exactly one winner per claim.

Errors: every ``sqlite3.Error`` becomes :class:`~transports.ConnectionLost`, and so does the
``ValueError`` aiosqlite raises once its connection is gone. That includes "database is
locked", raised when another process held the write lock for longer than ``busy_timeout``:
like a dropped connection it means the call wrote nothing and may simply be retried, which is
what callers already do for ``ConnectionLost``.

Wake-ups: this transport's own writes (enqueue, finalize, reap, un-pausing) wake its
``wait_for_work`` callers at once. Writes by other processes (or other connections) are seen
by a watcher: while anyone waits, a second, read-only connection asks ``PRAGMA data_version``
(which changes when another connection commits) every ``_WATCH_FASTEST`` seconds, slowing
to every ``_WATCH_SLOWEST`` after ``_WATCH_PATIENCE`` seconds without a change, and wakes every
waiter when it changes. An idle worker costs a look every 25 ms (about 1% of a core); a
job enqueued by another process starts within milliseconds. Nobody waiting: no looking.

aiosqlite speaks asyncio only: :func:`transports.connect` wraps this class in a
:class:`~transports.lowlevel.BridgedTransport` under trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any
from urllib.request import pathname2url

import aiosqlite
import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs

from ._base import Transport
from ._clock import WallClock, poll_pause
from ._errors import (
    ConnectionLost,
    InvalidRequest,
    JobNotFound,
    SchemaVersionMismatch,
    StoreNotFound,
    StoreReadOnly,
    TransportClosed,
    TransportError,
    map_exceptions,
)
from ._observed import NodeInfo, QueueStats, minute_of, rows_of_cells, sum_cells
from ._plumbing import (
    ParentPlan,
    Waiters,
    distinct_pairs,
    encode_outcome,
    external_parents,
    fold_batch,
    plan_parents,
    summaries_of,
    unfold_results,
)
from ._records import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    MAX_ERROR_MESSAGE,
    MAX_ERRORS,
    MAX_PARTITION_COUNT,
    CancelResult,
    Complete,
    Counts,
    Discard,
    Edge,
    EnqueueRequest,
    EnqueueResult,
    FinalizeRequest,
    FinalizeResult,
    Job,
    JobFilter,
    JobState,
    JsonValue,
    KeyLimit,
    LeaderLease,
    Lease,
    OnFailure,
    PartitionInfo,
    QueueConfig,
    Reclaimed,
    RenewRequest,
    RenewResult,
    Retry,
    Signal,
    SignalResult,
    Snooze,
    Step,
    StepResult,
    TimeSource,
    WorkflowSummary,
    check_action,
    check_listing,
    decode_errors,
    decode_headers,
    decode_result,
    encode_payload,
    encode_result,
    encode_step,
    job_waiter_key,
)
from ._sql import load_migrations, load_queries, load_schema
from ._validate import (
    check_advance,
    check_claim,
    check_cleanup,
    check_cursor,
    check_duration,
    check_edges_query,
    check_event_key,
    check_id,
    check_items,
    check_job_ids,
    check_leader,
    check_limit,
    check_name,
    check_node_id,
    check_optional_name,
    check_partitions_query,
    check_queues,
    check_release,
    check_set_limit,
    check_stats_range,
    check_step_name,
    check_time,
    check_workflows_query,
    clean_text,
)

__all__ = ["SQLiteTransport"]

_DIALECT = "sqlite"
_Q = load_queries(_DIALECT)  # read once at import: no file I/O on the event loop
_MIGRATIONS = load_migrations(_DIALECT)
# Rows per statement for batched writes: well under SQLite's limit of bound parameters.
_CHUNK = 500
_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# The watcher of other connections' commits (see the module docstring): seconds between looks.
_WATCH_FASTEST = 0.002
_WATCH_SLOWEST = 0.025
_WATCH_PATIENCE = 0.1  # seconds without a change before looking less often
_FINALIZE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
_COMPLETE_ROW = "(?, ?, ?)"  # finalize_complete's: job id, token, result


def _connection_lost(exc: BaseException) -> TransportError:
    if getattr(exc, "sqlite_errorcode", None) == _SQLITE_READONLY:
        return StoreReadOnly(f"the SQLite database is read-only: {exc}")
    return ConnectionLost(f"SQLite call failed: {exc}")


_SQLITE_READONLY = 8  # the primary result code of "attempt to write a readonly database"


# aiosqlite raises ValueError("Connection closed" / "no active connection") once its
# connection is gone; nothing else inside the mapped blocks raises ValueError.
_DRIVER_ERRORS: dict[type[BaseException], Callable[[BaseException], TransportError]] = {
    sqlite3.Error: _connection_lost,
    ValueError: _connection_lost,
}


def _expand(name: str, row: str, count: int) -> str:
    """The query ``name`` with its ``{rows}`` expanded to ``count`` placeholder tuples."""
    return _expand_text(_Q[name], row, count)


@functools.cache
def _expand_text(sql: str, row: str, count: int) -> str:
    # Cached by the query's text, not its name: a query rewritten at run time (an SQLMutant)
    # is expanded afresh, never served from an expansion of the original.
    return sql.replace("{rows}", ", ".join([row] * count))


def _filtered(name: str, order: str = "ASC") -> str:
    """The query ``name`` with the one JobFilter clause (job_filter) and its order filled in."""
    return _fill_filter(_Q[name], _Q["job_filter"], order)


@functools.cache
def _fill_filter(sql: str, clause: str, order: str) -> str:
    # Cached by text, as _expand_text is, so a rewritten query (an SQLMutant) is honoured.
    return sql.replace("{filter}", clause).replace("{order}", order)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


_STATES = {state.value: state for state in JobState}  # a dict lookup beats JobState(value)


def _job(
    row: Sequence[Any],
    result: str | None = None,
    wait_key: str | None = None,
    workflow: str | None = None,
) -> Job:
    """A job of the claim/get/list_jobs columns; ``result`` is its stored result, if read,
    ``wait_key`` the event it is suspended on, ``workflow`` its workflow."""
    return Job(
        id=row[0],
        kind=row[1],
        queue=row[2],
        payload=json.loads(row[3]),
        state=_STATES[row[4]],
        priority=row[5],
        run_at=float(row[6]),
        attempt=row[7],
        max_attempts=row[8],
        last_error=row[9],
        dedupe_key=row[10],
        created_at=float(row[11]),
        updated_at=float(row[12]),
        finished_at=None if row[13] is None else float(row[13]),
        lease_owner=row[14],
        lease_expires_at=None if row[15] is None else float(row[15]),
        cancel_requested=bool(row[16]),
        started_at=None if row[17] is None else float(row[17]),
        errors=decode_errors(row[18]),
        headers=decode_headers(row[19]),
        concurrency_key=row[20],
        result=decode_result(result),
        wait_key=wait_key,
        workflow=workflow,
        partition_key=row[24],
    )


def _filter_params(where: JobFilter, now: float) -> dict[str, Any]:
    """The job_filter parameters of ``where`` (the cursors unset)."""
    return {
        "queue": where.queue,
        "kind": where.kind,
        "workflow": where.workflow,
        "ids": None if where.ids is None else json.dumps(where.ids),
        "created_after": where.created_after,
        "created_before": where.created_before,
        "finished_after": where.finished_after,
        "finished_before": where.finished_before,
        "error": where.error,
        "states": json.dumps([str(state) for state in where.states]) if where.states else None,
        "after_id": None,
        "before_id": None,
        "now": now,
    }


def _queue_config(row: Sequence[Any]) -> QueueConfig | None:
    return QueueConfig.from_stored(row[0], row[1], row[2], row[3], row[4])


def _finalize_row(request: FinalizeRequest, max_result_bytes: int) -> tuple[Any, ...]:
    outcome = request.outcome
    result: str | None = None
    if isinstance(outcome, Retry | Discard):
        extra: tuple[str | None, str | None] = (outcome.error_type, outcome.traceback)
    else:
        extra = (None, None)
        if isinstance(outcome, Complete):
            result = encode_result(outcome.result, max_result_bytes)
    return (request.job_id, request.token, *encode_outcome(outcome), *extra, result)


def _split_statements(script: str) -> list[str]:
    """The statements of a migration script, so they can run inside one transaction."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


# What every migration applied in order builds (tests/transports/test_migrations_sqlite.py),
# statement by statement: a new database gets it at once.
_SCHEMA = tuple(_split_statements(load_schema(_DIALECT)))


_WAL_TRIES = 20  # attempts to switch a new file to WAL while another connection does


class SQLiteTransport(Transport):
    """A :class:`~transports.Transport` stored in a SQLite database file.

    Several transports — in one process or many — may share one file; ``":memory:"`` gives a
    private database that lives as long as the transport.

    Args:
        path: the database file (created when missing), or ``":memory:"``.
        clock: where "now" comes from; None for the wall clock.
        max_payload_bytes: longest accepted JSON payload, in bytes.
        max_result_bytes: longest accepted JSON result, in bytes.
        busy_timeout: seconds to wait for another process's write lock before giving up with
            :class:`~transports.ConnectionLost`.
        auto_migrate: bring an older (or empty) database's schema up to date on ``open()``;
            when False such a database raises :class:`~transports.SchemaVersionMismatch`.
        create: create the file and its schema when missing. When False, ``open()`` creates
            nothing (no file, no schema, no migration, no journal-mode change) and raises
            :class:`~transports.StoreNotFound` for a missing file or one without actorq's
            schema; an older schema raises :class:`~transports.SchemaVersionMismatch`.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: TimeSource | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        busy_timeout: float = 5.0,
        auto_migrate: bool = True,
        create: bool = True,
    ) -> None:
        self.path = path
        self.create = create
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.max_result_bytes = max_result_bytes
        self.busy_timeout = busy_timeout
        self.auto_migrate = auto_migrate
        self._time: TimeSource = clock if clock is not None else WallClock()
        self._conn: aiosqlite.Connection | None = None
        self._closed = False
        self._lock = anyio.Lock()
        self._waiters = Waiters()
        # Queues whose finalizes may free a slot of a limit: a freed slot wakes their claimers.
        self._flow_queues: set[str] = set()
        self._fair_queues: set[str] = set()  # queues seen with waiting partitioned jobs
        self._pending: set[anyio.Event] = set()  # every waiter, woken by aclose
        # Watches other connections' commits while anyone waits (file databases only).
        self._watcher: asyncio.Task[None] | None = None
        self._watch_conn: aiosqlite.Connection | None = None
        self._waiting = asyncio.Event()  # set while somebody is in wait_for_work

    @property
    def schema_version(self) -> int:
        """The schema version this code writes: the number of its migrations."""
        return len(_MIGRATIONS)

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise TransportClosed("the SQLite transport is closed")
        if self._conn is not None:
            await anyio.lowlevel.checkpoint()
            return
        async with self._lock:
            # isolation_level=None: no implicit transactions; this class issues its own.
            conn = aiosqlite.connect(
                self._target(), timeout=self.busy_timeout, isolation_level=None, uri=True
            )
            try:
                with map_exceptions(self._open_errors()):
                    await conn
            except BaseException:
                # aiosqlite stops its worker thread on a failed connect without waiting for
                # it; wait here, so the thread never outlives this event loop.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(conn._thread.join)
                raise
            try:
                with map_exceptions(_DRIVER_ERRORS):
                    if self.path != ":memory:" and self.create:
                        await self._enable_wal(conn)
                    await conn.execute_fetchall(_Q["synchronous_normal"])
                    version = await self._user_version(conn)
                    if version == 0 and not self.create:
                        raise StoreNotFound(f"{self.path} holds no actorq schema (create=False)")
                    if version != self.schema_version:
                        if version > self.schema_version or not self.auto_migrate:
                            raise self._mismatch(version)
                        if not self.create:
                            raise self._mismatch(version, " (create=False: nothing is migrated)")
                        await self._migrate(conn)
                    elif self.create and self.path != ":memory:":
                        await self._check_writable(conn)
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await conn.close()
                raise
            self._conn = conn
            if self.path != ":memory:":
                await self._start_watcher()

    async def migrate(self) -> int:
        """Bring the schema up to date (what ``actorq migrate`` runs); safe to repeat.

        Returns:
            The schema version now in place.

        Raises:
            SchemaVersionMismatch: the database is newer than this code.
            ConnectionLost: the database cannot be reached.
        """
        async with self._lock:
            conn = self._connection()
            with map_exceptions(_DRIVER_ERRORS):
                return await self._migrate(conn)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            Waiters.wake_pending(self._pending)
            self._waiters.clear()
            watcher, self._watcher = self._watcher, None
            if watcher is not None:
                watcher.cancel()
                with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
                    await watcher
            watch_conn, self._watch_conn = self._watch_conn, None
            if watch_conn is not None:
                # Closed here, not by the watcher: a watcher cancelled before its first step
                # never runs its own cleanup, and the connection's thread would outlive us.
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await watch_conn.close()
            conn, self._conn = self._conn, None
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    # Let a call in flight finish before the connection goes away.
                    async with self._lock:
                        with contextlib.suppress(Exception):
                            await conn.close()
        await anyio.lowlevel.cancel_shielded_checkpoint()

    async def _check_writable(self, conn: aiosqlite.Connection) -> None:
        """Write the schema version it already holds, and roll back: a file this process may
        only read (its permissions, a read-only mount) is a :class:`StoreReadOnly` at open,
        not a worker that starts and then fails on every claim."""
        await conn.execute_fetchall(_Q["begin_immediate"])
        try:
            await conn.execute_fetchall(
                _Q["set_user_version"].format(version=int(self.schema_version))
            )
        finally:
            await self._rollback_quietly(conn)

    @staticmethod
    async def _enable_wal(conn: aiosqlite.Connection) -> None:
        # Of two connections switching a new file at once, SQLite refuses one at once (no
        # busy handler for a journal-mode change) rather than let them deadlock. The loser
        # waits for the winner's lock through the busy handler of an empty write
        # transaction, then asks again.
        for _ in range(_WAL_TRIES):
            try:
                rows = list(await conn.execute_fetchall(_Q["enable_wal"]))
                if str(rows[0][0]).lower() == "wal":
                    return
            except sqlite3.OperationalError:
                pass
            with contextlib.suppress(sqlite3.OperationalError):
                await conn.execute(_Q["begin_immediate"])
                await conn.execute(_Q["rollback"])
        rows = list(await conn.execute_fetchall(_Q["journal_mode"]))
        if str(rows[0][0]).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {conn} to WAL mode")

    async def _user_version(self, conn: aiosqlite.Connection) -> int:
        rows = list(await conn.execute_fetchall(_Q["get_user_version"]))
        return int(rows[0][0])

    def _target(self) -> str:
        """The URI aiosqlite opens: read-write, and created only when ``create`` allows."""
        if self.path == ":memory:":
            return ":memory:"
        mode = "rwc" if self.create else "rw"
        return f"file:{pathname2url(os.fspath(self.path))}?mode={mode}"

    def _open_errors(self) -> dict[type[BaseException], Callable[[BaseException], TransportError]]:
        if self.create:
            return _DRIVER_ERRORS

        def missing(exc: BaseException) -> TransportError:
            # mode=rw: SQLite refuses to open a file that is not there instead of creating it.
            return StoreNotFound(f"no SQLite database at {self.path} (create=False): {exc}")

        return {sqlite3.OperationalError: missing, **_DRIVER_ERRORS}

    def _mismatch(self, version: int, why: str | None = None) -> SchemaVersionMismatch:
        if why is None:
            why = "" if version > self.schema_version else " (auto_migrate is off)"
        return SchemaVersionMismatch(
            f"{self.path} has schema version {version}; this code uses {self.schema_version}" + why
        )

    async def _migrate(self, conn: aiosqlite.Connection) -> int:
        """Apply what the database lacks: schema.sql on a new one (half the statements of the
        migrations in turn), else the migrations after its version."""
        # The write lock is taken before reading the version, so two processes opening a new
        # file at once migrate it once.
        await conn.execute_fetchall(_Q["begin_immediate"])
        try:
            version = await self._user_version(conn)
            if version > self.schema_version:
                raise self._mismatch(version)
            steps = (
                [(_SCHEMA, self.schema_version)]
                if version == 0
                else [(_split_statements(m.sql), m.version) for m in _MIGRATIONS[version:]]
            )
            for statements, reached in steps:
                for statement in statements:
                    await conn.execute_fetchall(statement)
                await conn.execute_fetchall(
                    _Q["set_user_version"].replace("{version}", str(int(reached)))
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._rollback_quietly(conn)
            raise
        with anyio.CancelScope(shield=True):
            await conn.commit()
        return self.schema_version

    # --- plumbing -------------------------------------------------------------------------

    def _connection(self) -> aiosqlite.Connection:
        if self._closed:
            raise TransportClosed("the SQLite transport is closed")
        if self._conn is None:
            raise TransportClosed("the SQLite transport is not open")
        return self._conn

    async def _fetch(self, sql: str, params: Any = ()) -> list[Any]:
        """Run one statement (a read, or a write that is atomic on its own); all its rows."""
        async with self._lock:
            conn = self._connection()
            with map_exceptions(_DRIVER_ERRORS):
                return list(await conn.execute_fetchall(sql, params))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on any error."""
        async with self._lock:
            conn = self._connection()
            with map_exceptions(_DRIVER_ERRORS):
                await conn.execute_fetchall(_Q["begin_immediate"])
                try:
                    yield conn
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._rollback_quietly(conn)
                    raise
                try:
                    with anyio.CancelScope(shield=True):
                        await conn.commit()
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._rollback_quietly(conn)
                    raise

    @staticmethod
    async def _rollback_quietly(conn: aiosqlite.Connection) -> None:
        # The original error is the one worth reporting; a rollback on a broken connection
        # fails too, and SQLite has then rolled back already.
        with contextlib.suppress(Exception):
            await conn.rollback()

    def _wake(self, queues: set[str]) -> None:
        self._waiters.wake(queues, keep=True)  # a claimer between claims finds it kept

    def _wake_everyone(self) -> None:
        """Wake every waiter of this transport (after a write that settled dependents,
        whose queues and ids it did not read back; a spurious wake-up costs one look)."""
        self._waiters.wake(self._waiters.queues())

    def _wake_jobs(self, job_ids: Iterable[int]) -> None:
        """Wake the ``wait_for_jobs`` callers of jobs this transport just ended."""
        self._waiters.wake([job_waiter_key(job_id) for job_id in job_ids])

    # --- producing ------------------------------------------------------------------------

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        check_items(requests, EnqueueRequest, "requests")
        self._connection()
        now = self._time.now()
        # Encode every payload before the first write: a batch is all or nothing.
        rows = []
        for request in requests:
            text = encode_payload(request.payload, self.max_payload_bytes)
            run_at = request.run_at if request.run_at is not None else now + request.delay
            state = "scheduled" if run_at > now else "available"
            rows.append(
                (
                    request.kind,
                    request.queue,
                    text,
                    state,
                    request.priority,
                    run_at,
                    request.max_attempts,
                    request.dedupe_key,
                    now,
                    now,
                    json.dumps(request.headers, ensure_ascii=False),
                    request.concurrency_key,
                    request.workflow,
                    request.partition_key,
                )
            )
        if not rows:
            await anyio.lowlevel.checkpoint()
            return []
        # A dependency on the request itself or a later one is refused before any write.
        parents = external_parents(requests) if any(r.after for r in requests) else None
        # Two requests of the batch with one key fold into the first before reaching SQL.
        sent, folded = fold_batch(requests)
        chosen = [requests[i] for i in sent]
        keys = sorted({(r.queue, r.dedupe_key) for r in chosen if r.dedupe_key is not None})
        if parents is not None:
            written = await self._enqueue_in_transaction(
                chosen,
                [rows[i] for i in sent],
                keys,
                [requests[i].queue for i in folded],
                now,
                deps=(requests, parents, sent, folded),
            )
            # Jobs a parent's end made due were enqueued due; released ones wake below.
            self._wake({row[1] for row in rows})
            return unfold_results(len(requests), sent, written, folded)
        if not keys and len(rows) <= _CHUNK:
            # One statement is atomic by itself: no explicit transaction needed.
            ids = await self._fetch(
                _expand("insert_jobs", _INSERT_ROW, len(rows)),
                [value for row in rows for value in row],
            )
            written = [
                EnqueueResult(job_id=job_id, deduplicated=False) for (job_id,) in sorted(ids)
            ]
        else:
            written = await self._enqueue_in_transaction(
                chosen, [rows[i] for i in sent], keys, [requests[i].queue for i in folded], now
            )
        self._wake({row[1] for row in rows if row[3] == "available"})
        return unfold_results(len(requests), sent, written, folded)

    async def _enqueue_in_transaction(
        self,
        requests: Sequence[EnqueueRequest],
        rows: list[tuple[Any, ...]],
        keys: list[tuple[str, str]],
        batch_folds: list[str],
        now: float,
        *,
        deps: tuple[Sequence[EnqueueRequest], list[int], list[int], dict[int, int]] | None = None,
    ) -> list[EnqueueResult]:
        """Write a batch whose dedupe keys are distinct, folding into active jobs, and count
        every fold (``batch_folds``: the queues of requests folded within the batch).

        With ``deps`` (the whole batch, its existing parents, and how it folded), also write
        the batch's dependencies, under the same write lock: parents that do not exist raise
        before anything is written."""
        async with self._transaction() as conn:
            plans = None
            if deps is not None:
                stored = await conn.execute_fetchall(
                    _Q["parent_states"], {"ids": json.dumps(deps[1])}
                )
                plans = plan_parents(deps[0], {i: JobState(state) for i, state in stored})
            # Under the write lock, the active keys read here stay true until commit.
            active: dict[tuple[str, str], int] = {}
            if keys:
                found = await conn.execute_fetchall(
                    _Q["active_dedupe_keys"], {"keys": json.dumps(keys)}
                )
                active = {(queue, key): job_id for queue, key, job_id in found}
            existing: list[int | None] = []  # per request: its active job, or None to insert
            inserts: list[tuple[Any, ...]] = []
            for request, row in zip(requests, rows, strict=True):
                job_id = None
                if request.dedupe_key is not None:
                    job_id = active.get((request.queue, request.dedupe_key))
                existing.append(job_id)
                if job_id is None:
                    inserts.append(row)
            ids: list[int] = []
            for chunk in _chunks(inserts):
                found = await conn.execute_fetchall(
                    _expand("insert_jobs", _INSERT_ROW, len(chunk)),
                    [value for row in chunk for value in row],
                )
                # Ids grow in insertion order (AUTOINCREMENT under the write lock).
                ids.extend(sorted(job_id for (job_id,) in found))
            folds: dict[str, int] = {}
            for request, job_id in zip(requests, existing, strict=True):
                if job_id is not None:
                    folds[request.queue] = folds.get(request.queue, 0) + 1
            for queue in batch_folds:
                folds[queue] = folds.get(queue, 0) + 1
            if folds:
                minute = minute_of(now)
                cells = [[queue, minute, "deduplicated", n] for queue, n in sorted(folds.items())]
                await conn.execute_fetchall(_Q["add_stats"], {"cells": json.dumps(cells)})
            new = iter(ids)
            written = [
                EnqueueResult(job_id=next(new), deduplicated=False)
                if job_id is None
                else EnqueueResult(job_id=job_id, deduplicated=True)
                for job_id in existing
            ]
            if deps is not None and plans is not None:
                everything = unfold_results(len(deps[0]), deps[2], written, deps[3])
                await self._write_edges(conn, plans, everything, now)
        return written

    @staticmethod
    async def _write_edges(
        conn: aiosqlite.Connection,
        plans: list[ParentPlan],
        results: list[EnqueueResult],
        now: float,
    ) -> None:
        """Store a batch's edges and start each dependent as its parents say."""
        edges: list[list[Any]] = []
        pending: list[int] = []
        parents: set[int] = set()
        for (plan, start), result in zip(plans, results, strict=True):
            if not plan:
                continue
            child = result.job_id
            reason = None
            for job_id, index, on_failure, state in plan:
                parent = job_id if job_id is not None else results[index or 0].job_id
                parents.add(parent)
                edges.append(
                    [child, parent, str(on_failure), None if state is None else str(state)]
                )
                if reason is None and state in _FAILED and on_failure is OnFailure.CANCEL:
                    reason = f"parent {parent} ended {state}"
            if start is JobState.PENDING:
                pending.append(child)
            elif start is JobState.CANCELLED:
                await conn.execute_fetchall(
                    _Q["start_cancelled"], {"id": child, "now": now, "reason": reason}
                )
        if pending:
            await conn.execute_fetchall(_Q["start_pending"], {"ids": json.dumps(pending)})
        await conn.execute_fetchall(_Q["insert_edges"], {"edges": json.dumps(edges)})
        await conn.execute_fetchall(_Q["mark_parents"], {"ids": json.dumps(sorted(parents))})

    # --- working --------------------------------------------------------------------------

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        check_claim(queue, owner, limit, ttl)
        now = self._time.now()
        expires_at = now + ttl
        params = {
            "queue": queue,
            "owner": owner,
            "now": now,
            "expires_at": expires_at,
            "limit": limit,
        }
        rows: list[Any] = []
        if queue not in self._fair_queues:
            # The one-statement claim, which claims nothing while partitioned jobs wait.
            rows = await self._fetch(_Q["claim"], params)
            # RETURNING yields rows in no particular order; hand them out in claim order.
            rows.sort(key=lambda row: (row[5], row[6], row[0]))
            if not rows and (await self._fetch(_Q["partitioned"], params))[0][0]:
                self._fair_queues.add(queue)
        if queue in self._fair_queues:
            rows = await self._claim_fair(params)
        if any(row[20] is not None for row in rows):
            self._flow_queues.add(queue)
        return [
            Lease(
                job=_job(row, None, None, row[23]),
                token=row[21],
                owner=owner,
                expires_at=expires_at,
                lost_at=None if row[22] is None else float(row[22]),
            )
            for row in rows
        ]

    async def _claim_fair(self, params: dict[str, Any]) -> list[Any]:
        """The fair-share claim: three statements under one write lock (see fair_candidates
        in queries.sql), its leases in fair-share order."""
        async with self._transaction() as conn:
            (fair,) = list(await conn.execute_fetchall(_Q["partitioned"], params))
            if not fair[0]:
                self._fair_queues.discard(params["queue"])  # none left: plain claims
                rows = list(await conn.execute_fetchall(_Q["claim"], params))
                rows.sort(key=lambda row: (row[5], row[6], row[0]))
                return rows
            candidates = list(await conn.execute_fetchall(_Q["fair_candidates"], params))
            if not candidates:
                return []
            chosen = json.dumps([[job_id, key] for job_id, key, _ in candidates])
            rows = list(
                await conn.execute_fetchall(_Q["claim_chosen"], {**params, "candidates": chosen})
            )
            order = {job_id: (i, part) for i, (job_id, _, part) in enumerate(candidates)}
            rows.sort(key=lambda row: order[row[0]][0])
            served = list(dict.fromkeys(order[row[0]][1] for row in rows))
            if served:
                await conn.execute_fetchall(
                    _Q["serve_partitions"],
                    {"queue": params["queue"], "served": json.dumps(served), "now": params["now"]},
                )
        return rows

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        check_duration(ttl)
        check_items(requests, RenewRequest, "requests")
        self._connection()
        if not requests:
            await anyio.lowlevel.checkpoint()
            return []
        now = self._time.now()
        # Each (job, token) pair once; a repeated one gets the answer of its first occurrence.
        sent, _ = distinct_pairs(requests)
        distinct = [requests[i] for i in sent]
        params = [
            {
                "requests": json.dumps([[request.job_id, request.token] for request in chunk]),
                "now": now,
                "expires_at": now + ttl,
            }
            for chunk in _chunks(distinct)
        ]
        rows: list[Any] = []
        if len(params) == 1:
            rows = await self._fetch(_Q["renew"], params[0])
        else:
            async with self._transaction() as conn:
                for chunk_params in params:
                    rows.extend(await conn.execute_fetchall(_Q["renew"], chunk_params))
        owned = {(job_id, token): bool(cancel) for job_id, token, cancel in rows}
        results: list[RenewResult] = []
        for request in requests:
            cancel = owned.get((request.job_id, request.token))
            if cancel is None:
                results.append(RenewResult.LOST)
            elif cancel:
                results.append(RenewResult.CANCEL_REQUESTED)
            else:
                results.append(RenewResult.RENEWED)
        return results

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        check_items(requests, FinalizeRequest, "requests")
        # A repeated (job, token) pair is stale after its first occurrence applies; each pair
        # is sent once, so the statement never picks an arbitrary duplicate's outcome.
        sent, _ = distinct_pairs(requests)
        # Every result is checked, a repeated pair's too: a batch is refused whole or not.
        rows = [_finalize_row(request, self.max_result_bytes) for request in requests]
        params = [rows[i] for i in sent]
        self._connection()
        if not params:
            await anyio.lowlevel.checkpoint()
            return []
        now = self._time.now()
        chunks = _chunks(params)
        applied: list[Any] = []
        # Snoozes that cool their key down: written with the finalize, in its transaction.
        cooling = {
            (request.job_id, request.token): request.outcome.run_at
            for request in (requests[i] for i in sent)
            if isinstance(request.outcome, Snooze) and request.outcome.cool_down
        }
        if len(chunks) == 1 and all(row[2] == "complete" for row in params):
            # Successes only (nearly every batch): the statement of that one outcome.
            applied = await self._fetch(
                _expand("finalize_complete", _COMPLETE_ROW, len(params)),
                [now, *(v for row in params for v in (row[0], row[1], row[7]))],
            )
        elif len(chunks) == 1 and not cooling:
            applied = await self._fetch(
                _expand("finalize", _FINALIZE_ROW, len(params)),
                [
                    now,
                    MAX_ERRORS,
                    MAX_ERROR_MESSAGE,
                    repr(now),
                    *(v for row in params for v in row),
                ],
            )
        else:
            async with self._transaction() as conn:
                for chunk in chunks:
                    applied.extend(
                        await conn.execute_fetchall(
                            _expand("finalize", _FINALIZE_ROW, len(chunk)),
                            [
                                now,
                                MAX_ERRORS,
                                MAX_ERROR_MESSAGE,
                                repr(now),
                                *(value for row in chunk for value in row),
                            ],
                        )
                    )
                for job_id, token, _queue, _state, _parent in applied:
                    until = cooling.get((job_id, token))
                    if until is not None:
                        await conn.execute(_Q["cool_down"], {"id": job_id, "until": until})
        owned = {(job_id, token) for job_id, token, _queue, _state, _parent in applied}
        results = [FinalizeResult.STALE] * len(requests)
        for index in sent:
            request = requests[index]
            if (request.job_id, request.token) in owned:
                results[index] = FinalizeResult.APPLIED
        self._wake(
            {
                queue
                for _id, _token, queue, state, _parent in applied
                if state == "available" or queue in self._flow_queues
            }
        )
        self._wake_jobs(job_id for job_id, _token, _queue, state, _ in applied if state in _FINAL)
        if any(parent and state in _FINAL for _id, _token, _queue, state, parent in applied):
            self._wake_everyone()  # dependents were settled: released, or cancelled
        return results

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        check_limit(limit)
        now = self._time.now()
        settled = False
        async with self._transaction() as conn:
            expired = list(
                await conn.execute_fetchall(_Q["expired_leases"], {"now": now, "limit": limit})
            )
            states: dict[int, str] = {}
            if expired:
                ids = json.dumps([row[0] for row in expired])
                rows = await conn.execute_fetchall(
                    _Q["reclaim"],
                    {"now": now, "at": repr(now), "ids": ids, "max_errors": MAX_ERRORS},
                )
                states = {row[0]: row[1] for row in rows}
                settled = any(row[2] and row[1] in _FINAL for row in rows)
        reclaimed = [
            Reclaimed(
                job_id=job_id,
                kind=kind,
                queue=queue,
                attempt=attempt,
                lost_by=owner or "",
                expired_at=float(expired_at),
                state=JobState(states[job_id]),
            )
            for job_id, kind, queue, attempt, owner, expired_at in expired
        ]
        # A job taken back, or one that ended here holding a slot of a limit: both may make
        # a job of its queue claimable (as in finalize).
        self._wake(
            {
                r.queue
                for r in reclaimed
                if r.state is JobState.AVAILABLE or r.queue in self._flow_queues
            }
        )
        self._wake_jobs(r.job_id for r in reclaimed if r.state.is_final)
        if settled:
            self._wake_everyone()
        return reclaimed

    async def cancel(self, job_id: int) -> CancelResult:
        check_id(job_id)
        now = self._time.now()
        rows = await self._fetch(_Q["cancel_job"], {"id": job_id, "now": now})
        if rows:
            if rows[0][0] == "running":
                return CancelResult.REQUESTED
            self._wake_everyone()  # the job, and any dependents it settled
            return CancelResult.CANCELLED
        if await self._fetch(_Q["job_exists"], {"id": job_id}):
            return CancelResult.ALREADY_FINAL
        raise JobNotFound(f"no job has id {job_id}")

    # --- steps and signals ----------------------------------------------------------------

    async def record_step(
        self, job_id: int, *, token: int, name: str, value: JsonValue
    ) -> StepResult:
        check_id(job_id)
        check_id(token, "token")
        check_step_name(name)
        text = encode_step(value)
        params = {"id": job_id, "token": token, "name": name, "value": text}
        params["now"] = self._time.now()
        if await self._fetch(_Q["record_step"], params):
            return StepResult.RECORDED
        # Nothing inserted: the token is stale, or the step was recorded already.
        if await self._fetch(_Q["step_owner"], params):
            return StepResult.RECORDED
        return StepResult.STALE

    async def list_steps(self, job_id: int) -> list[Step]:
        check_id(job_id)
        rows = await self._fetch(_Q["list_steps"], {"id": job_id})
        return [
            Step(name=name, value=json.loads(value), attempt=attempt, recorded_at=float(at))
            for name, value, attempt, at in rows
        ]

    async def signal(self, key: str, value: JsonValue = None) -> SignalResult:
        check_event_key(key)
        text = encode_step(value)
        now = self._time.now()
        params = {"key": key, "value": text, "now": now}
        woken: list[Any] = []
        async with self._transaction() as conn:
            stored = bool(await conn.execute_fetchall(_Q["insert_signal"], params))
            if stored:
                woken = list(await conn.execute_fetchall(_Q["wake_suspended"], params))
        self._wake({queue for _id, queue in woken})
        return SignalResult(stored=stored, woken=tuple(sorted(job_id for job_id, _ in woken)))

    async def prune_results(self, *, finished_before: float, limit: int = 10_000) -> int:
        check_time(finished_before, "finished_before", minimum=None)
        check_limit(limit)
        rows = await self._fetch(_Q["prune_results"], {"before": finished_before, "limit": limit})
        return len(rows)

    async def prune_signals(self, *, before: float, limit: int = 10_000) -> int:
        check_time(before, "before", minimum=None)
        check_limit(limit)
        rows = await self._fetch(_Q["prune_signals"], {"before": before, "limit": limit})
        return len(rows)

    async def get_signal(self, key: str) -> Signal | None:
        check_event_key(key)
        rows = await self._fetch(_Q["get_signal"], {"key": key})
        if not rows:
            return None
        value, at = rows[0]
        return Signal(key=key, value=json.loads(value), signalled_at=float(at))

    # --- leadership -----------------------------------------------------------------------

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        check_leader(name, holder, ttl)
        now = self._time.now()
        rows = await self._fetch(
            _Q["acquire_leader"],
            {"name": name, "holder": holder, "now": now, "expires_at": now + ttl},
        )
        if not rows:
            return None
        epoch, expires_at = rows[0]
        return LeaderLease(name=name, holder=holder, epoch=epoch, expires_at=float(expires_at))

    async def release_leader(self, name: str, *, holder: str) -> bool:
        check_release(name, holder)
        now = self._time.now()
        rows = await self._fetch(_Q["release_leader"], {"name": name, "holder": holder, "now": now})
        return bool(rows and rows[0][0])

    async def get_cursor(self, name: str) -> float | None:
        check_cursor(name)
        rows = await self._fetch(_Q["get_cursor"], {"name": name})
        return float(rows[0][0]) if rows else None

    async def advance_cursor(self, name: str, *, expected: float | None, new: float) -> bool:
        check_advance(name, expected, new)
        if expected is None:
            rows = await self._fetch(_Q["create_cursor"], {"name": name, "new": new})
        else:
            rows = await self._fetch(
                _Q["advance_cursor"], {"name": name, "new": new, "expected": expected}
            )
        return bool(rows)

    # --- waiting --------------------------------------------------------------------------

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        check_queues(queues)
        self._waiting.set()  # the watcher (if any) looks while somebody waits
        await self._waiters.wait(queues, self._pending)

    async def wait_for_jobs(self, job_ids: Sequence[int]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        ids = check_job_ids(job_ids)
        self._waiting.set()  # other processes' finalizes are seen by the watcher
        await self._waiters.wait([job_waiter_key(job_id) for job_id in ids], self._pending)

    async def _start_watcher(self) -> None:
        """Open the watcher's connection and take its first look, then let it run.

        The first look is taken before ``open()`` returns, so any commit after it (a job
        another process enqueued after this one's first claim) counts as a change. A watcher
        that cannot open leaves the waiters to their poll interval: slower, never wrong.
        """
        conn = aiosqlite.connect(
            f"file:{pathname2url(os.fspath(self.path))}?mode=ro",
            timeout=self.busy_timeout,
            isolation_level=None,
            uri=True,
        )
        try:
            await conn
        except (sqlite3.Error, ValueError):
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn._thread.join)
            return
        self._watch_conn = conn
        seen = await self._data_version(conn)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(conn, seen))

    async def _watch(self, conn: aiosqlite.Connection, seen: int | None) -> None:
        """Wake the waiters when another connection commits (see the module docstring).

        Runs until the transport closes (which closes its connection), on a read-only
        connection of its own so that it never waits behind this process's writes; looks only
        while somebody waits. A failing look
        (a lock held too long) counts as a change: waking waiters for nothing costs one empty
        claim, missing a job costs a poll interval.
        """
        pause = _WATCH_FASTEST
        quiet = 0.0  # seconds looked without a change
        while not self._closed:
            if not self._waiters.queues():
                self._waiting.clear()
                await self._waiting.wait()
                pause, quiet = _WATCH_FASTEST, 0.0
            await poll_pause(pause)
            version = await self._data_version(conn)
            if version is not None and version == seen:
                quiet += pause
                if quiet >= _WATCH_PATIENCE:
                    pause = min(pause * 2, _WATCH_SLOWEST)
                continue
            seen = version
            pause, quiet = _WATCH_FASTEST, 0.0
            self._waiters.wake(self._waiters.queues())

    @staticmethod
    async def _data_version(conn: aiosqlite.Connection) -> int | None:
        try:
            rows = await conn.execute_fetchall(_Q["data_version"])
        except (sqlite3.Error, ValueError):
            return None
        return int(next(iter(rows))[0])

    # --- operating ------------------------------------------------------------------------

    async def get_queue_config(self, queue: str) -> QueueConfig:
        check_name(queue)
        rows = await self._fetch(_Q["get_queue_config"], {"name": queue})
        config = _queue_config(rows[0]) if rows else None
        return config if config is not None else QueueConfig(name=queue)

    async def set_queue_config(self, config: QueueConfig) -> None:
        check_items([config], QueueConfig, "config")
        await self._fetch(
            _Q["set_queue_config"],
            {
                "name": config.name,
                "paused": int(config.paused),
                "concurrency": config.concurrency,
                "retention": config.retention,
                "global_concurrency": config.global_concurrency,
            },
        )
        if config.global_concurrency is not None:
            self._flow_queues.add(config.name)
        if not config.paused:
            self._wake({config.name})

    async def list_queue_configs(self) -> list[QueueConfig]:
        configs = [_queue_config(row) for row in await self._fetch(_Q["list_queue_configs"])]
        return [config for config in configs if config is not None]

    async def set_limit(
        self,
        key: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
    ) -> None:
        check_set_limit(key, concurrency, rate, per)
        async with self._transaction() as conn:
            if concurrency is None and rate is None:
                await conn.execute(_Q["delete_limit"], {"key": key})
            else:
                await conn.execute(
                    _Q["set_limit"],
                    {"key": key, "concurrency": concurrency, "rate": rate, "per": per},
                )
            if rate is None:
                await conn.execute(_Q["forget_starts"], {"key": key})
        self._wake(set(self._waiters.queues()))  # a key may have room now: claim again

    async def list_limits(self) -> list[KeyLimit]:
        rows = await self._fetch(_Q["list_limits"], {"now": self._time.now()})
        return [
            KeyLimit(
                key=key,
                concurrency=concurrency,
                running=running,
                waiting=waiting,
                rate=rate,
                per=per,
                started=started,
                cooldown_until=until,
            )
            for key, concurrency, running, waiting, rate, per, started, until in rows
        ]

    async def list_partitions(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> list[PartitionInfo]:
        check_partitions_query(queue, after, limit)
        rows = await self._fetch(
            _Q["list_partitions"],
            {"queue": queue, "after": after, "limit": limit, "most": MAX_PARTITION_COUNT},
        )
        return [
            PartitionInfo(
                queue=queue,
                key=key,
                waiting=waiting,
                running=running,
                served_at=None if served_at is None else float(served_at),
            )
            for key, waiting, running, served_at in rows
        ]

    async def reopens_in(self, queue: str) -> float | None:
        check_name(queue)
        rows = await self._fetch(_Q["reopens_in"], {"now": self._time.now()})
        wait = rows[0][0] if rows else None
        return None if wait is None else float(wait)

    async def cleanup(
        self, *, finished_before: float, queue: str | None = None, limit: int = 10_000
    ) -> int:
        check_cleanup(finished_before, queue, limit)
        rows = await self._fetch(
            _Q["cleanup"], {"finished_before": finished_before, "queue": queue, "limit": limit}
        )
        return len(rows)

    async def counts(self, queue: str | None = None) -> list[Counts]:
        check_optional_name(queue)
        rows = await self._fetch(_Q["counts"], {"queue": queue, "now": self._time.now()})
        by_queue: dict[str, dict[JobState, int]] = {}
        for name, state, count in rows:
            by_queue.setdefault(name, {})[JobState(state)] = count
        return [Counts(queue=name, by_state=states) for name, states in by_queue.items()]

    async def get(self, job_id: int) -> Job:
        check_id(job_id)
        rows = await self._fetch(_Q["get_job"], {"id": job_id, "now": self._time.now()})
        if not rows:
            raise JobNotFound(f"no job has id {job_id}")
        return _job(rows[0], rows[0][21], rows[0][22], rows[0][23])

    async def list_jobs(
        self,
        where: JobFilter | None = None,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        where = check_listing(where, after_id, before_id, newest_first, limit)
        params = _filter_params(where, self._time.now())
        params.update(after_id=after_id, before_id=before_id, limit=limit)
        rows = await self._fetch(_filtered("list_jobs", "DESC" if newest_first else "ASC"), params)
        return [_job(row, row[21], row[22], row[23]) for row in rows]

    async def retry_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        now = self._time.now()
        async with self._transaction() as conn:
            ids = await self._match(conn, where, now, limit, _RETRYABLE, undoomed=True)
            rows = await conn.execute_fetchall(
                _Q["retry_jobs"], {"ids": json.dumps(ids), "now": now}
            )
        self._wake({queue for _id, queue in rows})
        return sorted(job_id for job_id, _queue in rows)

    async def discard_jobs(self, where: JobFilter, *, reason: str, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        text = clean_text(reason)
        if text is None:
            raise InvalidRequest("reason must be a string, got None")
        now = self._time.now()
        async with self._transaction() as conn:
            ids = await self._match(conn, where, now, limit, _WAITING)
            rows = await conn.execute_fetchall(
                _Q["discard_jobs"],
                {
                    "ids": json.dumps(ids),
                    "now": now,
                    "at": repr(now),
                    "reason": text,
                    "max_errors": MAX_ERRORS,
                    "max_message": MAX_ERROR_MESSAGE,
                },
            )
        self._wake_everyone()  # the jobs, and any dependents they settled
        return sorted(job_id for (job_id,) in rows)

    async def delete_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        now = self._time.now()
        async with self._transaction() as conn:
            ids = await self._match(conn, where, now, limit, _DELETABLE)
            await conn.execute_fetchall(_Q["cancel_parents"], {"ids": json.dumps(ids), "now": now})
            rows = await conn.execute_fetchall(_Q["delete_jobs"], {"ids": json.dumps(ids)})
        self._wake_everyone()
        return sorted(job_id for (job_id,) in rows)

    async def cancel_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        now = self._time.now()
        async with self._transaction() as conn:
            ids = await self._match(conn, where, now, limit, _ACTIVE, uncancelled=True)
            rows = await conn.execute_fetchall(
                _Q["cancel_jobs"], {"ids": json.dumps(ids), "now": now}
            )
        self._wake_everyone()  # the jobs, and any dependents they settled
        return sorted(job_id for (job_id,) in rows)

    @staticmethod
    async def _match(
        conn: aiosqlite.Connection,
        where: JobFilter,
        now: float,
        limit: int,
        eligible: str,
        *,
        uncancelled: bool = False,
        undoomed: bool = False,
    ) -> list[int]:
        """The ids of the jobs an operator action takes (see match_jobs)."""
        params = _filter_params(where, now)
        params.update(
            limit=limit, eligible=eligible, uncancelled=int(uncancelled), undoomed=int(undoomed)
        )
        return [
            job_id for (job_id,) in await conn.execute_fetchall(_filtered("match_jobs"), params)
        ]

    async def list_edges(
        self, job_ids: Sequence[int] | None = None, *, workflow: str | None = None
    ) -> list[Edge]:
        ids, workflow = check_edges_query(job_ids, workflow)
        rows = await self._fetch(
            _Q["list_edges"], {"ids": json.dumps(ids or []), "workflow": workflow}
        )
        return [
            Edge(
                parent=parent,
                child=child,
                on_failure=OnFailure(on_failure),
                parent_state=None if state is None else JobState(state),
            )
            for child, parent, on_failure, state in rows
        ]

    async def list_workflows(
        self, *, workflow: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[WorkflowSummary]:
        check_workflows_query(workflow, after, limit)
        rows = await self._fetch(
            _Q["list_workflows"],
            {"workflow": workflow, "after": after, "limit": limit, "now": self._time.now()},
        )
        return summaries_of(rows)

    # --- observing ------------------------------------------------------------------------

    async def register_node(self, info: NodeInfo) -> NodeInfo:
        check_items([info], NodeInfo, "info")
        now = self._time.now()
        await self._fetch(
            _Q["register_node"],
            {
                "id": info.id,
                "host": info.host,
                "pid": info.pid,
                "queues": json.dumps(info.queues),
                "slots": info.slots,
                "version": info.version,
                "started_at": info.started_at,
                "heartbeat": info.heartbeat,
                "now": now,
            },
        )
        return attrs.evolve(info, last_seen=now)

    async def node_heartbeat(self, node_id: str) -> bool:
        check_node_id(node_id)
        rows = await self._fetch(_Q["node_heartbeat"], {"id": node_id, "now": self._time.now()})
        return bool(rows)

    async def forget_node(self, node_id: str) -> bool:
        check_node_id(node_id)
        return bool(await self._fetch(_Q["forget_node"], {"id": node_id}))

    async def list_nodes(self) -> list[NodeInfo]:
        nodes = [_node(row) for row in await self._fetch(_Q["list_nodes"])]
        return [node for node in nodes if node is not None]

    async def prune_nodes(self, *, seen_before: float) -> int:
        check_time(seen_before, "seen_before", minimum=None)
        return len(await self._fetch(_Q["prune_nodes"], {"seen_before": seen_before}))

    async def list_leaders(self) -> list[LeaderLease]:
        rows = await self._fetch(_Q["list_leaders"], {"now": self._time.now()})
        return [
            LeaderLease(name=name, holder=holder, epoch=epoch, expires_at=float(expires_at))
            for name, holder, epoch, expires_at in rows
        ]

    async def add_stats(self, rows: Sequence[QueueStats]) -> None:
        check_items(rows, QueueStats, "rows")
        cells = sum_cells(rows)
        if not cells:
            await anyio.lowlevel.checkpoint()
            return
        await self._fetch(_Q["add_stats"], {"cells": json.dumps(cells)})

    async def list_stats(
        self,
        *,
        queue: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[QueueStats]:
        check_stats_range(queue, since, until)
        rows = await self._fetch(_Q["list_stats"], {"queue": queue, "since": since, "until": until})
        return rows_of_cells(
            (name, float(minute), metric, value) for name, minute, metric, value in rows
        )

    async def prune_stats(self, *, before: float) -> int:
        check_time(before, "before", minimum=None)
        rows = await self._fetch(_Q["prune_stats"], {"before": before})
        return len({(queue, minute) for queue, minute in rows})


def _node(row: Sequence[Any]) -> NodeInfo | None:
    try:
        queues = json.loads(row[3])
    except (TypeError, ValueError):
        return None
    return NodeInfo.from_stored(
        id=row[0],
        host=row[1],
        pid=row[2],
        queues=queues,
        slots=row[4],
        version=row[5],
        started_at=row[6],
        heartbeat=row[7],
        last_seen=row[8],
    )


# The states (as jobs read) each operator action takes, as JSON arrays for match_jobs.
_RETRYABLE = json.dumps(["dead", "cancelled", "scheduled", "suspended"])
_WAITING = json.dumps(["scheduled", "available", "suspended"])
_DELETABLE = json.dumps(
    ["pending", "scheduled", "available", "suspended", "succeeded", "cancelled", "dead"]
)
_ACTIVE = json.dumps(["pending", "scheduled", "available", "running", "suspended"])
_FINAL = frozenset({"succeeded", "cancelled", "dead"})
_FAILED = frozenset({JobState.CANCELLED, JobState.DEAD})
