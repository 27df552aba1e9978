"""The PostgreSQL backend (asyncpg): many workers on many machines share one database.

Design choices, in brief:

* **SQL in files.** Queries live in ``sql/postgres/queries.sql`` with a ``{schema}``
  placeholder that is replaced, once, by the validated and quoted schema name when the
  transport is built. Every statement is therefore schema-qualified and asyncpg caches one
  prepared statement per query and connection; nothing depends on ``search_path``, so a
  connection pooler in front of the server cannot mix schemas up.
* **One statement per call.** Every write (batches included) is a single statement whose
  data-modifying CTEs do the work, so it is atomic without an explicit transaction and costs
  one round trip. Only an enqueue batch with dedupe keys may need a transaction (see
  :meth:`PostgresTransport.enqueue_many`).
* **Time.** Times are stored as ``double precision`` POSIX seconds, the unit of every backend.
  Without an injected clock "now" is the database's ``statement_timestamp()``, so every
  machine decides lease expiry against the same clock; with one, ``now`` is passed in.
* **Fencing.** Each claim draws its token from the ``lease_tokens`` sequence, so a token is
  never reused; ``renew`` and ``finalize`` match ``id``, token and ``state = 'running'``.
* **Wake-ups.** Writes that make a job available send ``NOTIFY`` on ``<schema>_jobs`` with the
  queue name, inside the same statement; a dedicated listener connection (outside the pool)
  wakes this process's waiters. If it drops, every waiter is woken (they poll) and it is
  reconnected in the background, without ever sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import anyio.lowlevel
import asyncpg  # type: ignore[import-untyped]
import asyncpg.exceptions  # type: ignore[import-untyped]
import attrs

from ._base import Transport
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
from ._observed import NodeInfo, QueueStats, rows_of_cells, sum_cells
from ._plumbing import (
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
    Suspend,
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
from ._url import postgres_connect_args, redact_url
from ._validate import (
    check_advance,
    check_claim,
    check_cleanup,
    check_cursor,
    check_duration,
    check_edges_query,
    check_event_key,
    check_id,
    check_int,
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

# Read once at import: file I/O does not belong on the event loop. The dict is the one
# load_queries caches, so a query rewritten in it (an SQLMutant) reaches transports built
# afterwards: each transport expands its own copy when built (see _with_filters).
_QUERIES = load_queries("postgres")
# The listings (oldest and newest first) and the operator actions share job_filter's clause.
_FILTERED = (
    "list_jobs",
    "retry_jobs",
    "discard_jobs",
    "delete_jobs",
    "cancel_jobs",
    "choose_deletable",
)


def _with_filters(queries: dict[str, str]) -> dict[str, str]:
    """The named queries with job_filter's clause and the listing order filled in, plus
    ``list_jobs_newest``; a new dict (``queries`` is left as it is)."""
    clause = queries["job_filter"]
    expanded = {name: sql for name, sql in queries.items() if name != "job_filter"}
    expanded["list_jobs_newest"] = queries["list_jobs"].replace("{order}", "DESC")
    for name in (*_FILTERED, "list_jobs_newest"):
        expanded[name] = expanded[name].replace("{filter}", clause).replace("{order}", "ASC")
    return expanded


_MIGRATIONS = load_migrations("postgres")
_SCHEMA = load_schema("postgres")  # what every migration applied in order builds

__all__ = ["PostgresTransport"]

# An unquoted-style identifier, short enough that "<schema>_jobs" fits PostgreSQL's 63 bytes.
_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,57}")
_DEDUPE_RETRIES = 5
MAX_POOL_SIZE = 1000
T = TypeVar("T")


def _connection_lost(exc: BaseException) -> TransportError:
    return ConnectionLost(f"lost the PostgreSQL connection: {exc}")


def _interface_error(exc: BaseException) -> TransportError:
    message = str(exc)
    if "closed" in message or "connection" in message:
        return ConnectionLost(f"lost the PostgreSQL connection: {message}")
    return TransportError(f"PostgreSQL client error: {message}")


def _read_only(exc: BaseException) -> TransportError:
    return StoreReadOnly(f"the PostgreSQL server refuses writes: {exc}")


def _other_error(exc: BaseException) -> TransportError:
    return TransportError(f"PostgreSQL error: {exc}")


_DRIVER_ERRORS: dict[type[BaseException], Callable[[BaseException], TransportError]] = {
    asyncpg.PostgresConnectionError: _connection_lost,
    asyncpg.exceptions.AdminShutdownError: _connection_lost,
    asyncpg.exceptions.CannotConnectNowError: _connection_lost,
    asyncpg.exceptions.CrashShutdownError: _connection_lost,
    asyncpg.exceptions.TooManyConnectionsError: _connection_lost,
    OSError: _connection_lost,
    asyncpg.InterfaceError: _interface_error,
    # A standby, or default_transaction_read_only: no write will pass until that changes.
    asyncpg.exceptions.ReadOnlySQLTransactionError: _read_only,
    asyncpg.PostgresError: _other_error,
    # The protocol fell out of step with the server, as when a FATAL error (the server
    # process was killed) reaches an idle connection: that connection is gone.
    asyncpg.exceptions.InternalClientError: _connection_lost,
}


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    with map_exceptions(_DRIVER_ERRORS):
        yield


def validate_schema(schema: str) -> str:
    """Return ``schema`` if it is a plain identifier of at most 58 characters.

    Raises:
        InvalidRequest: otherwise.
    """
    if not isinstance(schema, str) or _SCHEMA_RE.fullmatch(schema) is None:
        raise InvalidRequest(
            f"invalid schema name {schema!r}: use a letter or _ then up to 57 of [A-Za-z0-9_]"
        )
    return schema


# One NOTIFY per statement on <schema>_done naming the jobs of its "upd" CTE that ended, so
# every process's wait_for_jobs callers wake; a list too long for a payload sends "*" (all).
_DONE_NOTIFY = """
    SELECT pg_notify({done_channel}, CASE WHEN length(d.ids) > 7000 THEN '*' ELSE d.ids END)
    FROM (
        SELECT string_agg(id::text, ',') AS ids FROM upd
        WHERE state IN ('succeeded', 'cancelled', 'dead')
    ) AS d
    WHERE {notify} AND d.ids IS NOT NULL
"""


_DEADLOCK_TRIES = 5
"""Times a call chosen as a deadlock's victim is made before its error goes on."""


def _render(sql: str, schema: str, *, notify: bool) -> str:
    # str.replace, not str.format: SQL is full of braces ('{}'::int[]).
    return (
        sql.replace("{done_notify}", _DONE_NOTIFY)
        .replace("{schema}", f'"{schema}"')
        .replace("{done_channel}", f"'{_done_channel(schema)}'")
        .replace("{channel}", f"'{_channel(schema)}'")
        .replace("{notify}", "true" if notify else "false")
        .replace("{max_errors}", str(int(MAX_ERRORS)))
        .replace("{max_message}", str(int(MAX_ERROR_MESSAGE)))
    )


def _channel(schema: str) -> str:
    return f"{schema}_jobs"


def _done_channel(schema: str) -> str:
    return f"{schema}_done"


_STATES = {state.value: state for state in JobState}  # a dict lookup beats JobState(value)


def _nulls_as_none(column: list[T]) -> list[T] | None:
    """``None`` for an all-NULL column: ``unnest`` pads a NULL array with NULLs, and sending
    nothing is cheaper than encoding an array of NULLs."""
    return None if all(value is None for value in column) else column


def _job(
    row: asyncpg.Record,
    result: str | None = None,
    wait_key: str | None = None,
    workflow: str | None = None,
) -> Job:
    # Column order is the one of the claim/get/list_jobs queries; ``result`` is the stored
    # result when the query read it (get, list_jobs).
    return Job(
        id=row[0],
        kind=row[1],
        queue=row[2],
        payload=json.loads(row[3]),
        state=_STATES[row[4]],
        priority=row[5],
        run_at=row[6],
        attempt=row[7],
        max_attempts=row[8],
        last_error=row[9],
        dedupe_key=row[10],
        created_at=row[11],
        updated_at=row[12],
        finished_at=row[13],
        lease_owner=row[14],
        lease_expires_at=row[15],
        cancel_requested=row[16],
        started_at=row[17],
        errors=decode_errors(row[18]),
        headers=decode_headers(row[19]),
        concurrency_key=row[20],
        result=decode_result(result),
        wait_key=wait_key,
        workflow=workflow,
        partition_key=row[24],
    )


def _claim_order(row: asyncpg.Record) -> tuple[int, float, int]:
    """A claimed row's place in claim order: priority, run_at, id."""
    return (row[5], row[6], row[0])


# The states (as jobs read) each operator action takes.
_RETRYABLE = ["dead", "cancelled", "scheduled", "suspended"]
_WAITING = ["scheduled", "available", "suspended"]
_DELETABLE = ["pending", "scheduled", "available", "suspended", "succeeded", "cancelled", "dead"]
_ACTIVE = ["pending", "scheduled", "available", "running", "suspended"]
_FINAL = frozenset({"succeeded", "cancelled", "dead"})


def _filter_args(
    where: JobFilter, after_id: int | None, before_id: int | None, now: float | None
) -> tuple[Any, ...]:
    """The 14 parameters of job_filter (see queries.sql)."""
    shown = [state.value for state in where.states] if where.states else None
    stored = None
    if shown is not None:
        # A due scheduled (or timed-out suspended) job reads as available: "available" is
        # stored as any of the three.
        due = ["scheduled", "suspended"] if "available" in shown else []
        stored = sorted({*shown, *due})
    return (
        where.queue,
        where.kind,
        None if where.ids is None else list(where.ids),
        where.created_after,
        where.created_before,
        where.finished_after,
        where.finished_before,
        where.error,
        shown,
        stored,
        after_id,
        before_id,
        now,
        where.workflow,
    )


def _finalize_columns(
    requests: Sequence[FinalizeRequest], max_result_bytes: int
) -> tuple[list[Any] | None, ...]:
    ids: list[int] = []
    tokens: list[int] = []
    actions: list[str] = []
    run_ats: list[float | None] = []
    errors: list[str | None] = []
    types: list[str | None] = []
    tracebacks: list[str | None] = []
    results: list[str | None] = []
    cools: list[bool] = []
    for request in requests:
        outcome = request.outcome
        action, run_at, error = encode_outcome(outcome)
        results.append(
            encode_result(outcome.result, max_result_bytes)
            if isinstance(outcome, Complete)
            else None
        )
        cools.append(isinstance(outcome, Snooze) and outcome.cool_down)
        ids.append(request.job_id)
        tokens.append(request.token)
        actions.append(action)
        run_ats.append(run_at)
        errors.append(error)
        if isinstance(outcome, Retry | Discard):
            types.append(outcome.error_type)
            tracebacks.append(outcome.traceback)
        else:
            types.append(None)
            tracebacks.append(None)
    return (
        ids,
        tokens,
        actions,
        _nulls_as_none(run_ats),
        _nulls_as_none(errors),
        _nulls_as_none(types),
        _nulls_as_none(tracebacks),
        _nulls_as_none(results),
        cools if any(cools) else None,
    )


# An enqueue's graph: the whole batch, its existing parents, and how the batch folded.
_Graph = tuple[Sequence[EnqueueRequest], list[int], list[int], dict[int, int]]
_FAILED = frozenset({JobState.CANCELLED, JobState.DEAD})


class _DedupeRace(Exception):
    """A dedupe key's active job was committed by another transaction after our snapshot."""


class PostgresTransport(Transport):
    """A :class:`~transports.Transport` stored in PostgreSQL, shared by many processes.

    Args:
        dsn: a libpq connection URL, e.g. ``postgresql://user@host:5432/db?sslmode=require``;
            its libpq options reach the driver (see :mod:`transports._url`).
        schema: the schema holding actorq's tables (created when migrating); lets several
            independent actorq installations share one database.
        pool_size: most connections the pool opens (the LISTEN connection is extra).
        clock: where "now" comes from; None for the database clock.
        max_payload_bytes: longest accepted JSON payload, in bytes.
        max_result_bytes: longest accepted JSON result, in bytes.
        auto_migrate: migrate the schema at ``open()``; when False, a schema of another
            version raises :class:`~transports.SchemaVersionMismatch` instead.
        notify: send and listen for ``NOTIFY`` wake-ups; when False only this process's own
            writes wake its waiters.
        create: create and migrate the schema when missing. When False, ``open()`` creates
            nothing and raises :class:`~transports.StoreNotFound` when the schema does not
            exist, :class:`~transports.SchemaVersionMismatch` when it is of another version.

    Raises:
        InvalidRequest: the schema name is not a plain identifier of at most 58 characters,
            or ``pool_size`` is not an integer from 1 to 1000.
        UnsupportedURL: the DSN has an option the driver cannot honour, or a bad value.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "actorq",
        pool_size: int = 10,
        clock: TimeSource | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        auto_migrate: bool = True,
        notify: bool = True,
        create: bool = True,
    ) -> None:
        check_int(pool_size, "pool_size", 1, MAX_POOL_SIZE)
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.max_result_bytes = max_result_bytes
        self.dsn = dsn
        self.schema = validate_schema(schema)
        self.pool_size = pool_size
        self.auto_migrate = auto_migrate
        self.notify = notify
        self.create = create
        self._connect_args = postgres_connect_args(dsn)
        self._sql = {
            name: _render(sql, self.schema, notify=notify)
            for name, sql in _with_filters(_QUERIES).items()
        }
        self._pool: asyncpg.Pool | None = None
        self._opened = False
        self._closed = False
        self._listener: asyncpg.Connection | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._waiters = Waiters()
        self._limited = False  # a limit was seen: claims take the limited path (see claim)
        self._fair: set[str] = set()  # queues seen with waiting partitioned jobs (see claim)
        self._pending: set[anyio.Event] = set()

    def __repr__(self) -> str:
        return f"PostgresTransport({redact_url(self.dsn)!r}, schema={self.schema!r})"

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise TransportClosed("the PostgreSQL transport is closed")
        if self._opened:
            await anyio.lowlevel.checkpoint()
            return
        try:
            with _mapped():
                self._pool = await asyncpg.create_pool(
                    self._connect_args.dsn,
                    min_size=min(2, self.pool_size),
                    max_size=self.pool_size,
                    reset=_keep_session,
                    **self._driver_kwargs(),
                )
                if self.auto_migrate and self.create:
                    await self.migrate()
                else:
                    await self._check_version()
                if self.notify:
                    await self._connect_listener()
        except BaseException:
            await self._release()
            raise
        self._opened = True

    async def migrate(self) -> int:
        """Bring the schema to this code's version; safe to run from many processes at once.

        Migrations run in one transaction under an advisory lock, so concurrent starters
        apply each migration once. Uses the pool when open, else a connection of its own.

        Returns:
            The schema version now in place.

        Raises:
            SchemaVersionMismatch: the schema is newer than this code.
            ConnectionLost: the server cannot be reached.
        """
        with _mapped():
            if self._pool is not None:
                async with self._pool.acquire() as conn:
                    return await self._migrate_on(conn)
            conn = await asyncpg.connect(self._connect_args.dsn, **self._driver_kwargs())
            try:
                return await self._migrate_on(conn)
            finally:
                await conn.close()

    async def _migrate_on(self, conn: asyncpg.Connection, *, whole: bool = True) -> int:
        """Apply what the schema lacks. A new schema (version 0) gets ``schema.sql`` in one
        script, the state every migration builds in turn (tests/transports/
        test_migrations_postgres.py proves they agree), in about two thirds of the time;
        ``whole=False`` applies the migrations one by one even then."""
        migrations = _MIGRATIONS
        async with conn.transaction():
            await conn.execute(self._sql["migration_lock"], f"actorq.migrate.{self.schema}")
            await conn.execute(self._sql["create_schema"])
            current: int = await conn.fetchval(self._sql["schema_version"])
            if current > len(migrations):
                raise SchemaVersionMismatch(
                    f"schema {self.schema!r} is at version {current}, newer than this code's "
                    f"{len(migrations)}: upgrade actorq"
                )
            if current == 0 and whole:
                await conn.execute(_render(_SCHEMA, self.schema, notify=self.notify))
                await conn.executemany(
                    self._sql["record_version"], [(m.version,) for m in migrations]
                )
                return len(migrations)
            for migration in migrations[current:]:
                await conn.execute(_render(migration.sql, self.schema, notify=self.notify))
                await conn.execute(self._sql["record_version"], migration.version)
        return len(migrations)

    async def _check_version(self) -> None:
        assert self._pool is not None
        wanted = len(_MIGRATIONS)
        async with self._pool.acquire() as conn:
            exists = await conn.fetchval(self._sql["schema_version_exists"], self.schema)
            current = await conn.fetchval(self._sql["schema_version"]) if exists else 0
        if not exists and not self.create:
            raise StoreNotFound(
                f"schema {self.schema!r} does not exist in the database (create=False): "
                "check the schema name, or run `actorq migrate`"
            )
        if current != wanted:
            raise SchemaVersionMismatch(
                f"schema {self.schema!r} is at version {current}, this code needs {wanted}: "
                "run `actorq migrate`"
            )

    def _driver_kwargs(self) -> dict[str, Any]:
        """asyncpg's connect arguments besides the DSN: server settings and timeout."""
        # The application name lets operators (and tests) find this schema's connections.
        # The queries are short and run over and over as prepared statements: planning them
        # afresh each time (PostgreSQL keeps custom plans for these CTE-heavy statements)
        # would cost more than running them, and JIT only slows such statements down. The
        # generic plans are checked by the tests (the claim's reads the due index). Settings
        # the URL gives (application_name, options=-c ...) win over these defaults.
        kwargs: dict[str, Any] = {
            "server_settings": {
                "application_name": f"actorq {self.schema}",
                "plan_cache_mode": "force_generic_plan",
                "jit": "off",
                **self._connect_args.server_settings,
            }
        }
        if self._connect_args.timeout is not None:
            kwargs["timeout"] = self._connect_args.timeout
        return kwargs

    async def aclose(self) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        self._closed = True
        self._wake_all()
        await self._release()

    async def _release(self) -> None:
        task, self._listener_task = self._listener_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        listener, self._listener = self._listener, None
        pool, self._pool = self._pool, None
        with contextlib.suppress(Exception):
            if listener is not None:
                await listener.close(timeout=5)
        with contextlib.suppress(Exception):
            if pool is not None:
                await pool.close()

    @property
    def _db(self) -> asyncpg.Pool:
        if self._closed or self._pool is None:
            raise TransportClosed("the PostgreSQL transport is not open")
        return self._pool

    def _now(self) -> float | None:
        # None makes the queries use the database clock.
        return self.clock.now() if self.clock is not None else None

    # --- producing ------------------------------------------------------------------------

    async def enqueue(
        self, request: EnqueueRequest, *, connection: asyncpg.Connection | None = None
    ) -> EnqueueResult:
        """Add one job; see :meth:`enqueue_many` for ``connection``."""
        (result,) = await self.enqueue_many([request], connection=connection)
        return result

    async def enqueue_many(
        self,
        requests: Sequence[EnqueueRequest],
        *,
        connection: asyncpg.Connection | None = None,
    ) -> list[EnqueueResult]:
        """Add jobs, all or none (see :meth:`Transport.enqueue_many`).

        Args:
            requests: the jobs to add.
            connection: an asyncpg connection of the caller's, usually inside a transaction
                the caller controls: the jobs then commit or roll back with the caller's own
                writes, and their wake-ups are sent only on commit.
        """
        check_items(requests, EnqueueRequest, "requests")
        pool = self._db
        payloads = [encode_payload(r.payload, self.max_payload_bytes) for r in requests]
        if not requests:
            await anyio.lowlevel.checkpoint()
            return []
        # Two requests of the batch with one key fold into the first before reaching SQL.
        sent, folded = fold_batch(requests)
        dedupe = any(requests[i].dedupe_key is not None for i in sent)
        chosen = [requests[i] for i in sent]
        args = (
            [r.kind for r in chosen],
            [r.queue for r in chosen],
            [payloads[i] for i in sent],
            [r.priority for r in chosen],
            _nulls_as_none([r.run_at for r in chosen]),
            [r.delay for r in chosen],
            [r.max_attempts for r in chosen],
            _nulls_as_none([r.dedupe_key for r in chosen]),
            _nulls_as_none(
                [json.dumps(r.headers, ensure_ascii=False) if r.headers else None for r in chosen]
            ),
            self._now(),
            _nulls_as_none([r.concurrency_key for r in chosen]),
            _nulls_as_none([r.partition_key for r in chosen]),
        )
        batch_folds = [requests[i].queue for i in folded]
        graph = None
        if any(r.after or r.workflow is not None for r in requests):
            # A dependency on the request itself or a later one is refused before any write.
            graph = (requests, external_parents(requests), sent, folded)
        if connection is not None:
            with _mapped():  # the caller's connection: theirs to renew
                rows = await self._enqueue_on(
                    connection, args, dedupe=dedupe, folds=batch_folds, graph=graph
                )
        else:
            rows = await self._run(
                lambda: self._enqueue_pooled(
                    pool, args, dedupe=dedupe, folds=batch_folds, graph=graph
                )
            )
        written = [EnqueueResult(job_id=row[0], deduplicated=row[1]) for row in rows]
        self._wake({request.queue for request in requests})
        return unfold_results(len(requests), sent, written, folded)

    async def _enqueue_pooled(
        self,
        pool: asyncpg.Pool,
        args: tuple[Any, ...],
        *,
        dedupe: bool,
        folds: list[str],
        graph: _Graph | None = None,
    ) -> list[asyncpg.Record]:
        async with pool.acquire() as conn:
            return await self._enqueue_on(conn, args, dedupe=dedupe, folds=folds, graph=graph)

    async def _enqueue_on(
        self,
        conn: asyncpg.Connection,
        args: tuple[Any, ...],
        *,
        dedupe: bool,
        folds: list[str],
        graph: _Graph | None = None,
    ) -> list[asyncpg.Record]:
        if graph is None:
            return await self._insert_on(conn, args, dedupe=dedupe, folds=folds)
        async with conn.transaction():
            return await self._insert_graph(conn, args, dedupe=dedupe, folds=folds, graph=graph)

    async def _insert_graph(
        self,
        conn: asyncpg.Connection,
        args: tuple[Any, ...],
        *,
        dedupe: bool,
        folds: list[str],
        graph: _Graph,
    ) -> list[asyncpg.Record]:
        """Write a batch with dependencies or workflows, in the caller's transaction: lock
        the existing parents (FOR SHARE: a parent's finalize waits for this commit, and its
        trigger then sees the new edges), plan, insert, then store the edges and starts."""
        requests, parents, sent, folded = graph
        stored = await conn.fetch(self._sql["lock_parents"], parents) if parents else []
        plans = plan_parents(requests, {row[0]: _STATES[row[1]] for row in stored})
        rows = await self._insert_on(conn, args, dedupe=dedupe, folds=folds)
        written = [EnqueueResult(job_id=row[0], deduplicated=row[1]) for row in rows]
        results = unfold_results(len(requests), sent, written, folded)
        named = [
            (result.job_id, request.workflow)
            for request, result in zip(requests, results, strict=True)
            if request.workflow is not None and not result.deduplicated
        ]
        if named:
            await conn.execute(
                self._sql["set_workflows"], [i for i, _ in named], [w for _, w in named]
            )
        children: list[int] = []
        parent_ids: list[int] = []
        policies: list[str] = []
        states: list[str | None] = []
        pending: list[int] = []
        for (plan, start), result in zip(plans, results, strict=True):
            if not plan:
                continue
            reason = None
            for job_id, index, on_failure, state in plan:
                parent = job_id if job_id is not None else results[index or 0].job_id
                children.append(result.job_id)
                parent_ids.append(parent)
                policies.append(str(on_failure))
                states.append(None if state is None else str(state))
                if reason is None and state in _FAILED and on_failure is OnFailure.CANCEL:
                    reason = f"parent {parent} ended {state}"
            if start is JobState.PENDING:
                pending.append(result.job_id)
            elif start is JobState.CANCELLED:
                await conn.execute(self._sql["start_cancelled"], result.job_id, reason, self._now())
        if pending:
            await conn.execute(self._sql["start_pending"], pending)
        if children:
            await conn.execute(self._sql["insert_edges"], children, parent_ids, policies, states)
            await conn.execute(self._sql["mark_parents"], sorted(set(parent_ids)))
        return rows

    async def _insert_on(
        self,
        conn: asyncpg.Connection,
        args: tuple[Any, ...],
        *,
        dedupe: bool,
        folds: list[str],
    ) -> list[asyncpg.Record]:
        """Write the batch; ``folds`` are the queues of requests folded within it, counted
        with the folds into active jobs in the same transaction."""
        sql = self._sql["enqueue"]
        if not dedupe:
            # No key can conflict: a plain insert (its dedupe-key column, args[7], is all
            # NULL) is the whole, atomic write.
            plain = (*args[:7], *args[8:])  # headers, now, concurrency and partition keys
            rows: list[asyncpg.Record] = await conn.fetch(self._sql["enqueue_plain"], *plain)
            return rows
        # A key's active job committed by another transaction after this statement's
        # snapshot makes ON CONFLICT skip the row while the lookup cannot see the job: undo
        # and retry (a new statement sees it). A transaction (a savepoint inside the caller's)
        # keeps the batch all-or-nothing.
        for _ in range(_DEDUPE_RETRIES):
            try:
                async with conn.transaction():
                    rows = await conn.fetch(sql, *args)
                    if any(row[0] is None for row in rows):
                        raise _DedupeRace
                    counts: dict[str, int] = {}
                    for queue in [*folds, *(q for q, r in zip(args[1], rows, strict=True) if r[1])]:
                        counts[queue] = counts.get(queue, 0) + 1
                    if counts:
                        names = sorted(counts)
                        await conn.execute(
                            self._sql["add_folds"], names, [counts[q] for q in names], args[9]
                        )
                    return rows
            except _DedupeRace:
                continue
        raise TransportError("enqueue kept racing with concurrent enqueues of its dedupe keys")

    async def _run(self, call: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        """Make one call on the pool, with driver errors mapped.

        A lost connection renews the whole pool before the error goes on: a server that
        terminated one backend (a restart, a failover, ``pg_terminate_backend``) has usually
        closed the pool's other connections too, and asyncpg notices a closed connection only
        when it next uses it. An ``idempotent`` call (a read, a renewal, the holder renewing
        its leader lease, a queue config write) is then made once more, on a fresh
        connection, before :class:`ConnectionLost` is raised; any other call raises it at
        once, its single statement whole or absent.

        A call the server chose as the victim of a deadlock (two batches updating the same
        rows in different orders: a node's renewal and its finalize, say) was rolled back
        whole, so it is made again, up to ``_DEADLOCK_TRIES`` times, whatever it writes.
        """

        async def attempt() -> T:
            for tries in range(1, _DEADLOCK_TRIES + 1):
                try:
                    return await call()
                except asyncpg.exceptions.DeadlockDetectedError:
                    if tries == _DEADLOCK_TRIES:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

        try:
            with _mapped():
                return await attempt()
        except ConnectionLost:
            await self._renew_pool()
            if not idempotent:
                raise
        try:
            with _mapped():
                return await attempt()
        except ConnectionLost:
            await self._renew_pool()
            raise

    async def _renew_pool(self) -> None:
        """Replace every pooled connection on its next use (idle ones on their next acquire)."""
        if self._pool is not None:
            await self._pool.expire_connections()

    # --- working --------------------------------------------------------------------------

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        check_claim(queue, owner, limit, ttl)
        pool = self._db
        now = self._now()
        rows: list[asyncpg.Record] = []
        if not self._limited and queue not in self._fair:
            # No limit seen yet: the one-statement claim, which claims nothing once one exists
            # (or while the queue has partitioned jobs waiting).
            rows = await self._run(
                lambda: pool.fetch(self._sql["claim"], queue, limit, owner, ttl, now)
            )
            rows.sort(key=_claim_order)
            if not rows:
                found = await self._run(
                    lambda: pool.fetchrow(self._sql["any_limits"], now, queue), idempotent=True
                )
                assert found is not None
                self._limited = found[0]
                if found[1]:
                    self._fair.add(queue)
        if self._limited or queue in self._fair:
            rows = await self._run(lambda: self._claim_limited(pool, queue, limit, owner, ttl))
        leases = [
            Lease(
                job=_job(row, None, None, row[23]),
                token=row[21],
                owner=owner,
                expires_at=row[15],
                lost_at=row[22],
            )
            for row in rows
        ]
        if limit > 1 and len(leases) == limit:
            self._wake({queue})  # there is likely more: pass the wake-up on (see _wake)
        return leases

    async def _claim_limited(
        self, pool: asyncpg.Pool, queue: str, limit: int, owner: str, ttl: float
    ) -> list[asyncpg.Record]:
        """The claim while limits exist: two statements of one transaction (see
        ``claim_candidates`` in queries.sql for why this serializes each key's count)."""
        async with pool.acquire() as conn, conn.transaction():
            candidates = await conn.fetch(self._sql["claim_candidates"], queue, limit, self._now())
            if not candidates:
                return []
            self._limited = bool(candidates[0][3])
            fair = bool(candidates[0][5])
            if not fair:
                self._fair.discard(queue)  # none left: plain claims again
            rows: list[asyncpg.Record] = await conn.fetch(
                self._sql["claim_chosen"],
                [row[0] for row in candidates],
                [row[1] for row in candidates],
                owner,
                ttl,
                self._now(),
                queue,
                [row[4] for row in candidates],
                fair,
            )
            if fair:  # the leases in fair-share order, the candidates'
                order = {row[0]: i for i, row in enumerate(candidates)}
                rows.sort(key=lambda row: order[row[0]])
            else:
                rows.sort(key=_claim_order)
            return rows

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        check_duration(ttl)
        check_items(requests, RenewRequest, "requests")
        pool = self._db
        if not requests:
            await anyio.lowlevel.checkpoint()
            return []
        # A repeated (job, token) pair gets the answer of its first occurrence; each pair is
        # sent once so that one statement never updates one row twice.
        sent, first = distinct_pairs(requests)
        ids = [requests[i].job_id for i in sent]
        tokens = [requests[i].token for i in sent]
        rows = await self._run(
            lambda: pool.fetch(self._sql["renew"], ids, tokens, ttl, self._now()),
            idempotent=True,
        )
        renewed = [RenewResult(row[0]) for row in rows]
        return [renewed[first[i]] for i in range(len(requests))]

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        check_items(requests, FinalizeRequest, "requests")
        pool = self._db
        columns = _finalize_columns(requests, self.max_result_bytes)
        if not requests:
            await anyio.lowlevel.checkpoint()
            return []
        # A repeated (job, token) pair is stale after its first occurrence applies; each pair
        # is sent once so that one statement never updates one row twice.
        sent, _ = distinct_pairs(requests)
        if sent != list(range(len(requests))):
            columns = tuple(
                None if column is None else [column[i] for i in sent] for column in columns
            )
        if columns[8] is not None:
            self._limited = True  # a key cools down: claims take the limited path
        keys = sorted({r.outcome.event_key for r in requests if isinstance(r.outcome, Suspend)})
        if keys:
            rows = await self._run(lambda: self._finalize_suspending(pool, keys, columns))
        elif all(action == "complete" for action in columns[2] or ()):
            # Successes only (nearly every batch): the statement of that one outcome.
            rows = await self._run(
                lambda: pool.fetch(
                    self._sql["finalize_complete"], columns[0], columns[1], self._now(), columns[7]
                )
            )
        else:
            rows = await self._run(
                lambda: pool.fetch(
                    self._sql["finalize"], *columns[:7], self._now(), columns[7], columns[8]
                )
            )
        # Only the applied requests come back, by their position among those sent.
        results = [FinalizeResult.STALE] * len(requests)
        woken: set[str] = set()
        ended: list[int] = []
        settled = False
        for position, state, queue, _, parent in rows:
            settled = settled or (parent and state in _FINAL)
            results[sent[position - 1]] = FinalizeResult.APPLIED
            if state == "available" or self._limited:  # with limits, a slot may be free now
                woken.add(queue)
            if state in _FINAL:
                ended.append(requests[sent[position - 1]].job_id)
        self._wake(woken)
        self._wake_jobs(ended)
        if settled:
            self._wake_everyone()  # dependents were settled: released, or cancelled
        return results

    async def _finalize_suspending(
        self, pool: asyncpg.Pool, keys: list[str], columns: tuple[list[Any] | None, ...]
    ) -> list[asyncpg.Record]:
        """A finalize batch holding suspends: the event keys' locks first (see event_locks),
        then the finalize, whose snapshot sees every signal committed before."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(self._sql["event_locks"], keys)
            rows: list[asyncpg.Record] = await conn.fetch(
                self._sql["finalize"], *columns[:7], self._now(), columns[7], columns[8]
            )
            return rows

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        check_limit(limit)
        pool = self._db
        rows = await self._run(lambda: pool.fetch(self._sql["reap"], limit, self._now()))
        reclaimed = [
            Reclaimed(
                job_id=row[0],
                kind=row[1],
                queue=row[2],
                attempt=row[3],
                lost_by=row[4] or "",
                expired_at=row[5],
                state=_STATES[row[6]],
            )
            for row in rows
        ]
        self._wake({r.queue for r in reclaimed if r.state is JobState.AVAILABLE})
        if any(r.state.is_final for r in reclaimed):
            self._wake_everyone()  # the jobs, and any dependents they settled
        return reclaimed

    async def cancel(self, job_id: int) -> CancelResult:
        check_id(job_id)
        pool = self._db
        row = await self._run(lambda: pool.fetchrow(self._sql["cancel"], job_id, self._now()))
        assert row is not None
        state, found, _ = row
        if state == JobState.CANCELLED:
            self._wake_everyone()  # the job, and any dependents it settled
            return CancelResult.CANCELLED
        if state == JobState.RUNNING:
            return CancelResult.REQUESTED
        if not found:
            raise JobNotFound(f"no job has id {job_id}")
        return CancelResult.ALREADY_FINAL

    # --- steps and signals ----------------------------------------------------------------

    async def record_step(
        self, job_id: int, *, token: int, name: str, value: JsonValue
    ) -> StepResult:
        check_id(job_id)
        check_id(token, "token")
        check_step_name(name)
        text = encode_step(value)
        pool = self._db
        row = await self._run(
            lambda: pool.fetchrow(self._sql["record_step"], job_id, token, name, text, self._now()),
            idempotent=True,  # a name recorded already keeps its first value
        )
        assert row is not None
        return StepResult.RECORDED if row[0] else StepResult.STALE

    async def list_steps(self, job_id: int) -> list[Step]:
        check_id(job_id)
        pool = self._db
        rows = await self._run(lambda: pool.fetch(self._sql["list_steps"], job_id), idempotent=True)
        return [
            Step(name=name, value=json.loads(value), attempt=attempt, recorded_at=at)
            for name, value, attempt, at in rows
        ]

    async def signal(self, key: str, value: JsonValue = None) -> SignalResult:
        check_event_key(key)
        text = encode_step(value)
        pool = self._db
        row = await self._run(lambda: self._signal(pool, key, text))
        stored, ids, queues, _ = row
        self._wake(set(queues))
        return SignalResult(stored=stored, woken=tuple(ids))

    async def _signal(self, pool: asyncpg.Pool, key: str, text: str) -> asyncpg.Record:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(self._sql["event_locks"], [key])
            row = await conn.fetchrow(self._sql["signal"], key, text, self._now())
            assert row is not None
            return row

    async def prune_results(self, *, finished_before: float, limit: int = 10_000) -> int:
        check_time(finished_before, "finished_before", minimum=None)
        check_limit(limit)
        pool = self._db
        cleared: int = await self._run(
            lambda: pool.fetchval(self._sql["prune_results"], finished_before, limit),
            idempotent=True,
        )
        return cleared

    async def prune_signals(self, *, before: float, limit: int = 10_000) -> int:
        check_time(before, "before", minimum=None)
        check_limit(limit)
        pool = self._db
        pruned: int = await self._run(
            lambda: pool.fetchval(self._sql["prune_signals"], before, limit), idempotent=True
        )
        return pruned

    async def get_signal(self, key: str) -> Signal | None:
        check_event_key(key)
        pool = self._db
        row = await self._run(lambda: pool.fetchrow(self._sql["get_signal"], key), idempotent=True)
        if row is None:
            return None
        return Signal(key=key, value=json.loads(row[0]), signalled_at=row[1])

    # --- leadership -----------------------------------------------------------------------

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        check_leader(name, holder, ttl)
        pool = self._db
        row = await self._run(
            lambda: pool.fetchrow(self._sql["acquire_leader"], name, holder, ttl, self._now()),
            idempotent=True,  # the holder asking again renews its own lease
        )
        if row is None:
            return None
        return LeaderLease(name=row[0], holder=row[1], epoch=row[2], expires_at=row[3])

    async def release_leader(self, name: str, *, holder: str) -> bool:
        check_release(name, holder)
        pool = self._db
        row = await self._run(
            lambda: pool.fetchrow(self._sql["release_leader"], name, holder, self._now())
        )
        return row is not None

    async def get_cursor(self, name: str) -> float | None:
        check_cursor(name)
        pool = self._db
        value: float | None = await self._run(
            lambda: pool.fetchval(self._sql["get_cursor"], name), idempotent=True
        )
        return value

    async def advance_cursor(self, name: str, *, expected: float | None, new: float) -> bool:
        check_advance(name, expected, new)
        pool = self._db
        if expected is None:
            row = await self._run(lambda: pool.fetchrow(self._sql["create_cursor"], name, new))
        else:
            row = await self._run(
                lambda: pool.fetchrow(self._sql["advance_cursor"], name, expected, new)
            )
        return row is not None

    # --- waiting --------------------------------------------------------------------------

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        check_queues(queues)
        if self.notify and self._opened and self._listener is None:
            self._start_listener_reconnect()
        await self._waiters.wait(queues, self._pending)

    def _wake(self, queues: set[str]) -> None:
        # One waiter per queue and wake-up: waking them all would send every idle Worker
        # racing for the same job (a herd of empty claims that slows the one that wins). A
        # claim that comes back full passes the wake-up on (see claim), so a batch still
        # reaches every waiter, one claim after another.
        self._waiters.wake_one(queues)

    def _wake_everyone(self) -> None:
        """Wake every waiter of this process (after a write that settled dependents, whose
        queues and ids it did not read back; a spurious wake-up costs one look)."""
        self._waiters.wake(self._waiters.queues())

    def _wake_jobs(self, job_ids: Sequence[int]) -> None:
        """Wake this process's ``wait_for_jobs`` callers of jobs that ended (all of them)."""
        if job_ids:
            self._waiters.wake([job_waiter_key(job_id) for job_id in job_ids])

    async def wait_for_jobs(self, job_ids: Sequence[int]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        ids = check_job_ids(job_ids)
        if self.notify and self._opened and self._listener is None:
            self._start_listener_reconnect()
        await self._waiters.wait([job_waiter_key(job_id) for job_id in ids], self._pending)

    def _wake_all(self) -> None:
        Waiters.wake_pending(self._pending)
        self._waiters.clear()

    async def _connect_listener(self) -> None:
        conn = await asyncpg.connect(self._connect_args.dsn, **self._driver_kwargs())
        try:
            await conn.add_listener(_channel(self.schema), self._on_notify)
            await conn.add_listener(_done_channel(self.schema), self._on_done)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_listener_lost)
        self._listener = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._wake({str(payload)})

    def _on_done(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)
        if text == "*":
            keys = [key for key in self._waiters.queues() if key.startswith("#")]
        else:
            keys = [f"#{part}" for part in text.split(",")]
        self._waiters.wake(keys)

    def _on_listener_lost(self, conn: object) -> None:
        if conn is not self._listener:
            return
        self._listener = None
        # Notifications may have been missed while it was down: everyone re-polls.
        self._wake_all()
        if not self._closed:
            self._start_listener_reconnect()

    def _start_listener_reconnect(self) -> None:
        if self._listener_task is not None and not self._listener_task.done():
            return
        self._listener_task = asyncio.get_running_loop().create_task(self._reconnect_listener())

    async def _reconnect_listener(self) -> None:
        # One attempt; the next wait_for_work tries again, so a down server costs no sleeping.
        try:
            await self._connect_listener()
        except Exception:
            return
        if self._closed:
            listener, self._listener = self._listener, None
            if listener is not None:
                await listener.close()
            return
        self._wake_all()

    # --- operating ------------------------------------------------------------------------

    async def get_queue_config(self, queue: str) -> QueueConfig:
        check_name(queue)
        pool = self._db
        row = await self._run(
            lambda: pool.fetchrow(self._sql["get_queue_config"], queue), idempotent=True
        )
        config = _queue_config(row) if row is not None else None
        return config if config is not None else QueueConfig(name=queue)

    async def set_queue_config(self, config: QueueConfig) -> None:
        check_items([config], QueueConfig, "config")
        pool = self._db
        await self._run(
            lambda: pool.fetchval(
                self._sql["set_queue_config"],
                config.name,
                config.paused,
                config.concurrency,
                config.retention,
                config.global_concurrency,
            ),
            idempotent=True,
        )
        if config.global_concurrency is not None:
            self._limited = True
        if not config.paused:
            self._waiters.wake({config.name})

    async def list_queue_configs(self) -> list[QueueConfig]:
        pool = self._db
        rows = await self._run(lambda: pool.fetch(self._sql["list_queue_configs"]), idempotent=True)
        configs = [_queue_config(row) for row in rows]
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
        pool = self._db
        if concurrency is not None or rate is not None:
            self._limited = True

        async def write() -> None:
            async with pool.acquire() as conn, conn.transaction():
                if concurrency is None and rate is None:
                    await conn.execute(self._sql["delete_limit"], key)
                else:
                    await conn.execute(self._sql["set_limit"], key, concurrency, rate, per)
                if rate is None:
                    await conn.execute(self._sql["forget_starts"], key)

        await self._run(write, idempotent=True)
        self._waiters.wake(set(self._waiters.queues()))  # a key may have room now

    async def reopens_in(self, queue: str) -> float | None:
        check_name(queue)
        if not self._limited:
            await anyio.lowlevel.checkpoint()  # no limit seen: no key is held
            return None
        pool = self._db
        wait = await self._run(
            lambda: pool.fetchval(self._sql["reopens_in"], self._now()), idempotent=True
        )
        return None if wait is None else float(wait)

    async def list_limits(self) -> list[KeyLimit]:
        pool = self._db
        rows = await self._run(
            lambda: pool.fetch(self._sql["list_limits"], self._now()), idempotent=True
        )
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
        pool = self._db
        rows = await self._run(
            lambda: pool.fetch(
                self._sql["list_partitions"], queue, after, limit, MAX_PARTITION_COUNT
            ),
            idempotent=True,
        )
        return [
            PartitionInfo(
                queue=queue, key=key, waiting=waiting, running=running, served_at=served_at
            )
            for key, waiting, running, served_at in rows
        ]

    async def cleanup(
        self, *, finished_before: float, queue: str | None = None, limit: int = 10_000
    ) -> int:
        check_cleanup(finished_before, queue, limit)
        pool = self._db
        deleted: int = await self._run(
            lambda: pool.fetchval(self._sql["cleanup"], finished_before, queue, limit)
        )
        return deleted

    async def counts(self, queue: str | None = None) -> list[Counts]:
        check_optional_name(queue)
        pool = self._db
        rows = await self._run(
            lambda: pool.fetch(self._sql["counts"], queue, self._now()), idempotent=True
        )
        by_queue: dict[str, dict[JobState, int]] = {}
        for name, state, count in rows:
            by_queue.setdefault(name, {})[JobState(state)] = count
        return [Counts(queue=name, by_state=states) for name, states in by_queue.items()]

    async def get(self, job_id: int) -> Job:
        check_id(job_id)
        pool = self._db
        row = await self._run(
            lambda: pool.fetchrow(self._sql["get"], job_id, self._now()), idempotent=True
        )
        if row is None:
            raise JobNotFound(f"no job has id {job_id}")
        return _job(row, row[21], row[22], row[23])

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
        pool = self._db
        sql = self._sql["list_jobs_newest" if newest_first else "list_jobs"]
        args = _filter_args(where, after_id, before_id, self._now())
        rows = await self._run(lambda: pool.fetch(sql, *args, limit), idempotent=True)
        return [_job(row, row[21], row[22], row[23]) for row in rows]

    async def retry_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        pool = self._db
        args = _filter_args(where, None, None, self._now())
        rows = await self._run(
            lambda: pool.fetch(self._sql["retry_jobs"], *args, limit, _RETRYABLE)
        )
        self._wake({row[1] for row in rows})
        return [row[0] for row in rows]

    async def discard_jobs(self, where: JobFilter, *, reason: str, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        text = clean_text(reason)
        if text is None:
            raise InvalidRequest("reason must be a string, got None")
        pool = self._db
        args = _filter_args(where, None, None, self._now())
        rows = await self._run(
            lambda: pool.fetch(self._sql["discard_jobs"], *args, limit, _WAITING, text)
        )
        self._wake_everyone()  # the jobs, and any dependents they settled
        return sorted(row[0] for row in rows)

    async def delete_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        pool = self._db
        now = self._now()
        args = _filter_args(where, None, None, now)

        async def delete() -> list[asyncpg.Record]:
            # An active parent is cancelled first (settling its dependents), then deleted.
            async with pool.acquire() as conn, conn.transaction():
                chosen = await conn.fetch(self._sql["choose_deletable"], *args, limit, _DELETABLE)
                ids = [row[0] for row in chosen]
                await conn.execute(self._sql["cancel_parents"], ids, now)
                gone: list[asyncpg.Record] = await conn.fetch(self._sql["delete_chosen"], ids)
                return gone

        rows = await self._run(delete)
        self._wake_everyone()
        return sorted(row[0] for row in rows)

    async def cancel_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        where = check_action(where, limit)
        pool = self._db
        args = _filter_args(where, None, None, self._now())
        rows = await self._run(lambda: pool.fetch(self._sql["cancel_jobs"], *args, limit, _ACTIVE))
        self._wake_everyone()  # the jobs, and any dependents they settled
        return sorted(row[0] for row in rows)

    async def list_edges(
        self, job_ids: Sequence[int] | None = None, *, workflow: str | None = None
    ) -> list[Edge]:
        ids, workflow = check_edges_query(job_ids, workflow)
        pool = self._db
        rows = await self._run(
            lambda: pool.fetch(self._sql["list_edges"], ids or [], workflow), idempotent=True
        )
        return [
            Edge(
                parent=row[1],
                child=row[0],
                on_failure=OnFailure(row[2]),
                parent_state=None if row[3] is None else _STATES[row[3]],
            )
            for row in rows
        ]

    async def list_workflows(
        self, *, workflow: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[WorkflowSummary]:
        check_workflows_query(workflow, after, limit)
        pool = self._db
        rows = await self._run(
            lambda: pool.fetch(self._sql["list_workflows"], workflow, after, limit, self._now()),
            idempotent=True,
        )
        return summaries_of(rows)

    # --- observing ------------------------------------------------------------------------

    async def register_node(self, info: NodeInfo) -> NodeInfo:
        check_items([info], NodeInfo, "info")
        pool = self._db
        last_seen: float = await self._run(
            lambda: pool.fetchval(
                self._sql["register_node"],
                info.id,
                info.host,
                info.pid,
                list(info.queues),
                info.slots,
                info.version,
                info.started_at,
                info.heartbeat,
                self._now(),
            ),
            idempotent=True,
        )
        return attrs.evolve(info, last_seen=last_seen)

    async def node_heartbeat(self, node_id: str) -> bool:
        check_node_id(node_id)
        pool = self._db
        found = await self._run(
            lambda: pool.fetchval(self._sql["node_heartbeat"], node_id, self._now()),
            idempotent=True,
        )
        return found is not None

    async def forget_node(self, node_id: str) -> bool:
        check_node_id(node_id)
        pool = self._db
        found = await self._run(lambda: pool.fetchval(self._sql["forget_node"], node_id))
        return found is not None

    async def list_nodes(self) -> list[NodeInfo]:
        pool = self._db
        rows = await self._run(lambda: pool.fetch(self._sql["list_nodes"]), idempotent=True)
        nodes = [
            NodeInfo.from_stored(
                id=row[0],
                host=row[1],
                pid=row[2],
                queues=row[3],
                slots=row[4],
                version=row[5],
                started_at=row[6],
                heartbeat=row[7],
                last_seen=row[8],
            )
            for row in rows
        ]
        return [node for node in nodes if node is not None]

    async def prune_nodes(self, *, seen_before: float) -> int:
        check_time(seen_before, "seen_before", minimum=None)
        pool = self._db
        pruned: int = await self._run(lambda: pool.fetchval(self._sql["prune_nodes"], seen_before))
        return pruned

    async def list_leaders(self) -> list[LeaderLease]:
        pool = self._db
        rows = await self._run(
            lambda: pool.fetch(self._sql["list_leaders"], self._now()), idempotent=True
        )
        return [
            LeaderLease(name=row[0], holder=row[1], epoch=row[2], expires_at=row[3]) for row in rows
        ]

    async def add_stats(self, rows: Sequence[QueueStats]) -> None:
        check_items(rows, QueueStats, "rows")
        cells = sum_cells(rows)
        if not cells:
            await anyio.lowlevel.checkpoint()
            return
        columns = [list(column) for column in zip(*cells, strict=True)]
        pool = self._db
        await self._run(lambda: pool.execute(self._sql["add_stats"], *columns))

    async def list_stats(
        self,
        *,
        queue: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[QueueStats]:
        check_stats_range(queue, since, until)
        pool = self._db
        rows = await self._run(
            lambda: pool.fetch(self._sql["list_stats"], queue, since, until), idempotent=True
        )
        return rows_of_cells((row[0], row[1], row[2], row[3]) for row in rows)

    async def prune_stats(self, *, before: float) -> int:
        check_time(before, "before", minimum=None)
        pool = self._db
        pruned: int = await self._run(
            lambda: pool.fetchval(self._sql["prune_stats"], before), idempotent=True
        )
        return pruned


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Skip asyncpg's session reset (a round trip per call) when a connection goes back.

    The pool's connections carry no session state between calls: no SET, no LISTEN (that has
    its own connection), advisory locks only transaction-scoped. asyncpg still rolls back a
    transaction left open, and drops a connection that broke.
    """


def _queue_config(row: asyncpg.Record) -> QueueConfig | None:
    return QueueConfig.from_stored(row[0], row[1], row[2], row[3], row[4])
