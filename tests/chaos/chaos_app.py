"""The App the chaos tests run in real ``actorq worker`` processes.

``make_app`` builds it from the environment (the processes are started with
``actorq worker tests.chaos.chaos_app:make_app``):

* ``CHAOS_DSN`` / ``CHAOS_SCHEMA``: where the ``executions`` table lives (the schema of the
  run, next to actorq's own tables).
* ``CHAOS_CRON=1``: also schedule ``chaos.tick`` every second (the leader failover test).

``chaos.work`` records every execution through the process's own asyncpg pool, not through
actorq: one row per lease token, written when the handler starts (job id, attempt, token,
lease owner, pid, start time) and completed when it ends (end time, ``ok`` or ``cancelled``).
The start time is the node's clock as the handler starts (the recorder's write may come much
later: it waits out a server restart), the end time the database's; on one host the two are
one clock, the one the lease expiries are decided by. A write that
fails because the server is restarting is retried, so a handler never fails for the recorder's
sake: an execution is only ever cut short by the runtime (lease lost) or by a signal.
"""

from __future__ import annotations

import os

import anyio
import asyncpg
import attrs

from actors.jobs import App, JobContext

RECORDER_APPLICATION = "chaos recorder"
RETRY_FOR = 60.0  # seconds a recorder write keeps retrying (a server restart takes a few)

EXECUTIONS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.executions (
    token bigint PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    owner text NOT NULL,
    pid integer NOT NULL,
    started_at double precision NOT NULL,
    ended_at double precision,
    status text
)
"""
_START = """
INSERT INTO {schema}.executions (token, job_id, attempt, owner, pid, started_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (token) DO NOTHING
"""
_END = """
UPDATE {schema}.executions
SET ended_at = extract(epoch FROM clock_timestamp()), status = $2
WHERE token = $1
"""
_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    # asyncpg's protocol out of step after a connection died mid-call ("cannot switch to
    # state ..."): that connection is gone, as for actorq's own transport.
    asyncpg.exceptions.InternalClientError,
    OSError,
)


@attrs.frozen
class Work:
    """How long one chaos job runs."""

    ms: int
    n: int = 0  # the job's number in the run (finds a batch again after a lost connection)


class Recorder:
    """Writes execution rows through a pool of its own (named so fault injection spares it)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn = dsn
        self._start = _START.replace("{schema}", f'"{schema}"')
        self._end = _END.replace("{schema}", f'"{schema}"')
        self._pool: asyncpg.Pool | None = None
        self._lock = anyio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=3,
                    server_settings={"application_name": RECORDER_APPLICATION},
                )
            return self._pool

    async def _execute(self, sql: str, *args: object) -> None:
        with anyio.fail_after(RETRY_FOR):
            while True:
                try:
                    pool = await self._get_pool()
                    await pool.execute(sql, *args)
                    return
                except _TRANSIENT:
                    # The server is restarting or the connection was cut: try again shortly.
                    await anyio.sleep(0.2)

    async def started(self, ctx: JobContext) -> None:
        lease = ctx.lease
        at = ctx.clock.now()  # before any await: when the handler really started
        await self._execute(
            self._start, lease.token, ctx.job_id, ctx.attempt, lease.owner, os.getpid(), at
        )

    async def ended(self, ctx: JobContext, status: str) -> None:
        await self._execute(self._end, ctx.lease.token, status)


def make_app() -> App:
    """The chaos App, configured from the environment (see the module docstring)."""
    recorder = Recorder(os.environ["CHAOS_DSN"], os.environ["CHAOS_SCHEMA"])
    app = App()

    @app.task("chaos.work", max_attempts=100)
    async def work(ctx: JobContext, payload: Work) -> None:
        await recorder.started(ctx)
        status = "cancelled"
        try:
            await ctx.clock.sleep(payload.ms / 1000)
            status = "ok"
        finally:
            # Shielded: a handler cancelled because its lease was lost still says so.
            with anyio.CancelScope(shield=True):
                await recorder.ended(ctx, status)

    @app.task("chaos.noop")
    async def noop(ctx: JobContext, payload: None) -> None:
        """The burst's job: nothing to do, so the runtime itself is what is measured."""

    @app.task("chaos.tick")
    async def tick(ctx: JobContext, payload: None) -> None:
        """Cron's job: the job row (its dedupe key names the tick) is the record."""

    if os.environ.get("CHAOS_CRON") == "1":
        app.schedule("tick", "* * * * * *", tick)
    return app
