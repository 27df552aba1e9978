"""PostgreSQL: which calls are made again on a connection the server closed, and the event
lock a suspend's finalize takes.

A server that terminated a backend (a restart, a failover, ``pg_terminate_backend``) leaves
the pool holding connections asyncpg believes open until it uses them. Whether a call meets
one depends on timing; here the pool is wrapped so that the next statement fails exactly as
such a connection does, which makes each call's promise deterministic: an idempotent call (a
read, a renewal, a leader's renewal) answers from a fresh connection; any other call reports
``ConnectionLost`` and wrote nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import pytest

from transports import ConnectionLost, EnqueueRequest, JobState, PostgresTransport
from transports.lowlevel import Complete, FinalizeRequest, RenewRequest, Suspend

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

TTL = 30.0


class _ClosedOnce:
    """A pool whose next statement fails as one on a connection the server closed would."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.armed = False
        self.skip = 0  # statements that pass before the armed one fails
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._pool, name)
        if name not in ("fetch", "fetchrow", "fetchval", "execute", "executemany", "acquire"):
            return attr
        if name == "acquire":
            return lambda *args, **kwargs: _Acquired(self, attr(*args, **kwargs))

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.fail_if_armed()
            return await attr(*args, **kwargs)

        return call

    def fail_if_armed(self) -> None:
        if self.armed and self.skip:
            self.skip -= 1
        elif self.armed:
            self.armed = False
            self.failed += 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )


class _Acquired:
    """``pool.acquire()`` whose connection fails its first statement while armed."""

    def __init__(self, pool: _ClosedOnce, inner: Any) -> None:
        self._pool = pool
        self._inner = inner

    async def __aenter__(self) -> Any:
        conn = await self._inner.__aenter__()
        self._pool.fail_if_armed()
        return conn

    async def __aexit__(self, *exc: object) -> Any:
        return await self._inner.__aexit__(*exc)


@pytest.fixture
async def transport(postgres_dsn: str, postgres_schema: str) -> AsyncIterator[PostgresTransport]:
    async with PostgresTransport(postgres_dsn, schema=postgres_schema, pool_size=2) as opened:
        yield opened


def _closing(transport: PostgresTransport) -> _ClosedOnce:
    wrapped = _ClosedOnce(transport._pool)
    transport._pool = wrapped
    return wrapped


async def _renew(t: PostgresTransport) -> object:
    (lease,) = await t.claim("default", owner="w", limit=1, ttl=TTL)
    closing = _closing(t)
    closing.armed = True
    return await t.renew([RenewRequest(job_id=lease.job_id, token=lease.token)], ttl=TTL)


async def _leader(t: PostgresTransport) -> object:
    closing = _closing(t)
    closing.armed = True
    return await t.acquire_leader("cron", holder="n1", ttl=TTL)


async def _cursor(t: PostgresTransport) -> object:
    await t.advance_cursor("c", expected=None, new=5.0)
    closing = _closing(t)
    closing.armed = True
    return await t.get_cursor("c")


async def _counts(t: PostgresTransport) -> object:
    closing = _closing(t)
    closing.armed = True
    return await t.counts()


IDEMPOTENT: dict[str, Callable[[PostgresTransport], Awaitable[object]]] = {
    "renew": _renew,
    "acquire_leader": _leader,
    "get_cursor": _cursor,
    "counts": _counts,
}


@pytest.mark.parametrize("call", sorted(IDEMPOTENT))
async def test_an_idempotent_call_is_made_again_on_a_fresh_connection(
    transport: PostgresTransport, call: str
) -> None:
    """The call meets a closed connection once, and answers (from a fresh one)."""
    await transport.enqueue(EnqueueRequest(kind="k"))
    answer = await IDEMPOTENT[call](transport)
    assert transport._pool.failed == 1  # type: ignore[attr-defined]
    assert answer is not None
    if call == "get_cursor":
        assert answer == 5.0


async def test_a_claim_that_finds_nothing_looks_for_limits_again_on_a_fresh_connection(
    transport: PostgresTransport,
) -> None:
    """An empty claim's second statement (whether any limit exists: a read) meets a closed
    connection: it is made again, and the claim answers with nothing claimed."""
    closing = _closing(transport)
    closing.armed = True
    closing.skip = 1  # the claim's own statement passes; the look for limits fails
    assert await transport.claim("default", owner="w", limit=1, ttl=TTL) == []
    assert closing.failed == 1


async def test_a_claim_on_a_closed_connection_reports_connection_lost_and_claims_nothing(
    transport: PostgresTransport,
) -> None:
    """A claim is not made again (it writes): ConnectionLost, the job still available."""
    await transport.enqueue(EnqueueRequest(kind="k"))
    closing = _closing(transport)
    closing.armed = True
    with pytest.raises(ConnectionLost):
        await transport.claim("default", owner="w", limit=1, ttl=TTL)
    (job,) = await transport.list_jobs()
    assert job.state is JobState.AVAILABLE


async def test_a_finalize_on_a_closed_connection_reports_connection_lost_and_changes_nothing(
    transport: PostgresTransport,
) -> None:
    """A finalize is not made again: ConnectionLost, the job still running under its lease,
    which the same finalize then completes."""
    await transport.enqueue(EnqueueRequest(kind="k"))
    (lease,) = await transport.claim("default", owner="w", limit=1, ttl=TTL)
    closing = _closing(transport)
    closing.armed = True
    request = FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())
    with pytest.raises(ConnectionLost):
        await transport.finalize([request])
    assert (await transport.get(lease.job_id)).state is JobState.RUNNING
    await transport.finalize([request])
    assert (await transport.get(lease.job_id)).state is JobState.SUCCEEDED


async def test_a_suspend_waits_for_its_event_key_lock(
    transport: PostgresTransport, postgres_dsn: str
) -> None:
    """The finalize of a suspend takes its event key's lock first (as a signal does), so a
    signal committing meanwhile is never missed: while another transaction holds the lock,
    the finalize waits; once it is released, the finalize applies."""
    await transport.enqueue(EnqueueRequest(kind="k"))
    (lease,) = await transport.claim("default", owner="w", limit=1, ttl=TTL)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        locking = admin.transaction()
        await locking.start()
        await admin.execute("SELECT pg_advisory_xact_lock(7007, hashtext('order:1:paid'))")
        done = anyio.Event()
        outcome = Suspend(event_key="order:1:paid", run_at=4_000_000_000.0)

        async def finalize() -> None:
            await transport.finalize(
                [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
            )
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(finalize)
            with anyio.move_on_after(0.5):
                await done.wait()
            assert not done.is_set(), "the finalize did not wait for the event key's lock"
            await locking.commit()
            with anyio.fail_after(10):
                await done.wait()
        assert (await transport.get(lease.job_id)).state is JobState.SUSPENDED
    finally:
        await admin.close()
