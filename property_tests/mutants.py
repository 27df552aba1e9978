"""Deliberately broken transports: each one a realistic bug that real job queues have shipped.

A property suite that passes against any of these has no teeth; ``test_mutants.py`` proves each
one is caught. Every mutant is the smallest change to a working backend that reproduces its bug,
so a counterexample can only come from that bug.

Memory mutants subclass :class:`~transports.MemoryTransport` and reuse its internals; SQLite
mutants rewrite one query of :class:`~transports.SQLiteTransport` (and fail loudly if the query
they edit no longer reads as expected, rather than silently testing the correct backend).
"""

from __future__ import annotations

import contextlib
import heapq
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio.lowlevel

from transports import JobState, MemoryTransport, SQLiteTransport
from transports._memory import _job, _Row  # the mutants are variations of the memory backend
from transports._sqlite import _Q
from transports._sqlite import _job as _sqlite_job
from transports.lowlevel import (
    FinalizeRequest,
    FinalizeResult,
    LeaderLease,
    Lease,
    Reclaimed,
    RenewRequest,
    RenewResult,
    validate_name,
)

__all__ = [
    "FLOW_MUTANTS",
    "MEMORY_MUTANTS",
    "SQLITE_MUTANTS",
    "ClaimWithoutLock",
    "CoolDownIgnored",
    "DedupeForgetsRunning",
    "DedupeOutlivesJob",
    "FairShareByBacklog",
    "FairShareForgetsTurns",
    "FinalizeIgnoresToken",
    "LeaderIgnoresTTL",
    "LeaderNeverExpires",
    "LimitCountsExpiredLeases",
    "LimitIgnoresRunning",
    "RateOffByOne",
    "RateWindowNotSliding",
    "ReapGivesAttemptBack",
    "ReapIgnoresExpiry",
    "ReapMissesTheBoundary",
    "RenewIgnoresToken",
    "RenewRevivesExpired",
    "SQLiteClaimWithoutLock",
    "SQLiteCoolDownIgnored",
    "SQLiteFairShareForgetsTurns",
    "SQLiteFinalizeIgnoresToken",
    "SQLiteLimitPerCandidateIgnored",
    "SQLiteReapIgnoresExpiry",
    "SQLiteRenewIgnoresToken",
]


# --- memory mutants ----------------------------------------------------------------------


class ClaimWithoutLock(MemoryTransport):
    """Claim reads the due jobs, yields, then leases what it read without checking again.

    The classic SELECT-then-UPDATE race (no ``FOR UPDATE``, no state re-check): two claimants
    that read at the same time both win the same job.
    """

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        now = await self._enter()
        validate_name(queue)
        store = self._store
        self._promote(now)
        config = store.configs.get(queue)
        if config is not None and config.paused:
            return []
        chosen: list[_Row] = []
        for _, _, job_id, seq in sorted(store.ready.get(queue, [])):
            row = store.jobs.get(job_id)
            if row is not None and row.seq == seq and len(chosen) < limit:
                chosen.append(row)
        await anyio.lowlevel.checkpoint()  # the gap between the SELECT and the UPDATE
        leases = []
        for row in chosen:
            if row.state is not JobState.RUNNING:
                self._set_state(row, JobState.RUNNING)
            row.attempt += 1
            row.lease_owner = owner
            row.lease_expires_at = expires_at = now + ttl
            row.token = token = store.next_token
            store.next_token += 1
            row.seq += 1
            store.running[row.id] = row
            heapq.heappush(store.expiry, (expires_at, row.id, row.seq))
            leases.append(Lease(job=_job(row), token=token, owner=owner, expires_at=expires_at))
        return leases


class RenewIgnoresToken(MemoryTransport):
    """Renew extends whatever lease the job has now, whoever asks (matches on the job id only)."""

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        blind = [
            RenewRequest(job_id=r.job_id, token=row.token)
            if (row := self._store.running.get(r.job_id)) is not None and row.token is not None
            else r
            for r in requests
        ]
        return await super().renew(blind, ttl=ttl)


class RenewRevivesExpired(MemoryTransport):
    """Renew extends a lease that already expired, as long as nobody reaped it yet."""

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        now = self._time.now()
        for request in requests:
            row = self._store.running.get(request.job_id)
            if row is not None and row.token == request.token and row.lease_expires_at is not None:
                row.lease_expires_at = max(row.lease_expires_at, now + 1e-6)
        return await super().renew(requests, ttl=ttl)


class FinalizeIgnoresToken(MemoryTransport):
    """Finalize applies to the job's current claim, whoever sends it (no fencing)."""

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        blind = [
            FinalizeRequest(job_id=r.job_id, token=row.token, outcome=r.outcome)
            if (row := self._store.running.get(r.job_id)) is not None and row.token is not None
            else r
            for r in requests
        ]
        return await super().finalize(blind)


class ReapIgnoresExpiry(MemoryTransport):
    """The reaper takes back the ``limit`` running jobs that expire first, live or not."""

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        now = self._time.now()
        store = self._store
        oldest = sorted(
            store.running.values(), key=lambda row: (row.lease_expires_at or 0.0, row.id)
        )
        for row in oldest[:limit]:
            if row.lease_expires_at is not None and row.lease_expires_at > now:
                row.lease_expires_at = now  # as if it had expired
                row.seq += 1
                heapq.heappush(store.expiry, (now, row.id, row.seq))
        return await super().reap(limit=limit)


class ReapMissesTheBoundary(MemoryTransport):
    """The reaper uses ``expires_at < now``: a lease expiring exactly now is neither live nor
    reclaimable (renew refuses it, this reap skips it)."""

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        now = self._time.now()
        store = self._store
        boundary = [row for row in store.running.values() if row.lease_expires_at == now]
        for row in boundary:
            row.seq += 1  # hides its expiry entry from this reap
        try:
            return await super().reap(limit=limit)
        finally:
            for row in boundary:
                if store.running.get(row.id) is row and row.lease_expires_at is not None:
                    heapq.heappush(store.expiry, (row.lease_expires_at, row.id, row.seq))


class ReapGivesAttemptBack(MemoryTransport):
    """A reclaimed job gets its attempt back, so a job that kills its workers runs forever."""

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        reclaimed = await super().reap(limit=limit)
        for item in reclaimed:
            row = self._store.jobs[item.job_id]
            if row.state is JobState.AVAILABLE and row.attempt > 0:
                row.attempt -= 1
        return reclaimed


class ReapBacksOff(MemoryTransport):
    """A reclaimed job waits a minute before it can run again (a lost lease treated as a failed
    attempt with a backoff), though the reap reports it available: free slots sit idle."""

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        reclaimed = await super().reap(limit=limit)
        now = self._time.now()
        for item in reclaimed:
            row = self._store.jobs[item.job_id]
            if row.state is JobState.AVAILABLE:
                self._wait_until(row, now + 60.0, now)
        return reclaimed


class DedupeForgetsRunning(MemoryTransport):
    """Dedupe looks only at waiting jobs (an index on available/scheduled): once the first job
    runs, the same key enqueues a second active job."""

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        leases = await super().claim(queue, owner=owner, limit=limit, ttl=ttl)
        for lease in leases:
            key = lease.job.dedupe_key
            if key is not None and self._store.dedupe.get((queue, key)) == lease.job_id:
                del self._store.dedupe[(queue, key)]
        return leases


class DedupeOutlivesJob(MemoryTransport):
    """Dedupe keys are never freed: a key folds into a job that already finished."""

    def _finish(self, row: _Row, state: JobState, now: float) -> None:
        key = row.dedupe_key
        super()._finish(row, state, now)
        if key is not None:
            self._store.dedupe.setdefault((row.queue, key), row.id)


class LeaderIgnoresTTL(MemoryTransport):
    """Leadership goes to whoever asks (an upsert with no guard on the live holder's TTL)."""

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        current = self._store.leaders.get(name)
        if current is not None and current.holder != holder:
            current.expires_at = self._time.now()  # treat the live holder as expired
        return await super().acquire_leader(name, holder=holder, ttl=ttl)


class LeaderNeverExpires(MemoryTransport):
    """A leader lease never lapses: a holder that died keeps leadership forever."""

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        current = self._store.leaders.get(name)
        if current is not None and current.holder is not None and current.holder != holder:
            await anyio.lowlevel.checkpoint()
            return None
        return await super().acquire_leader(name, holder=holder, ttl=ttl)


class LimitIgnoresRunning(MemoryTransport):
    """The limiter counts only the jobs of its own claim, not the ones already running: each
    claim alone keeps within the limit, claims one after another do not."""

    def _live(self, key: str, now: float) -> int:
        return 0


class LimitCountsExpiredLeases(MemoryTransport):
    """The limiter counts every running job, expired leases too: a key whose holders died
    waits for the reaper, though its slots are free."""

    def _live(self, key: str, now: float) -> int:
        return len(self._store.keyed.get(key, {}))


class RateOffByOne(MemoryTransport):
    """The rate check forgets the newest start (``<=`` for ``<``): each window takes one
    start more than the rate."""

    def _started(self, key: str, now: float) -> int:
        return max(0, super()._started(key, now) - 1)


class RateWindowNotSliding(MemoryTransport):
    """Fixed windows (a counter reset every ``per`` seconds, as a refilled bucket): the end of
    one window and the start of the next admit up to twice the rate within ``per``."""

    def _started(self, key: str, now: float) -> int:
        super()._started(key, now)  # forget the starts out of the sliding window, as before
        rate_per = self._store.rates.get(key)
        if rate_per is None:
            return 0
        opened = now - now % rate_per[1]
        return sum(1 for at in self._store.starts.get(key, ()) if at >= opened)


class CoolDownIgnored(MemoryTransport):
    """A snooze that asks for a cool-down snoozes its job, but its key is never cooled."""

    def _cool(self, key: str | None, until: float) -> None:
        return None


class FairShareForgetsTurns(MemoryTransport):
    """The fair claim never remembers whom it served: partitions always go in key order, so
    the first ones take every claim of one job and a later one starves."""

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        self._store.served.clear()
        return await super().claim(queue, owner=owner, limit=limit, ttl=ttl)


class FairShareByBacklog(MemoryTransport):
    """The fair claim takes the partitions with the most waiting jobs first, the "busiest
    tenant first" rule that lets a big backlog starve a small one."""

    def _fair_order(self, queue: str, heap: Any, parts: Any, *args: Any) -> Any:
        store = self._store
        for name, source in list(parts.items()):
            store.served[(queue, name)] = (-len(source), 0)
        if heap is not None:
            store.served[(queue, "")] = (-len(heap), 0)
        return super()._fair_order(queue, heap, parts, *args)


MEMORY_MUTANTS: tuple[type[MemoryTransport], ...] = (
    ClaimWithoutLock,
    RenewIgnoresToken,
    RenewRevivesExpired,
    FinalizeIgnoresToken,
    ReapIgnoresExpiry,
    ReapMissesTheBoundary,
    ReapGivesAttemptBack,
    DedupeForgetsRunning,
    DedupeOutlivesJob,
    LeaderIgnoresTTL,
    LeaderNeverExpires,
)


# --- SQLite mutants ----------------------------------------------------------------------


def _without(query: str, text: str, replacement: str = "") -> str:
    """``_Q[query]`` with ``text`` replaced; raises if the query no longer contains it."""
    sql = _Q[query]
    if text not in sql:
        raise AssertionError(f"mutant is out of date: {query!r} no longer contains {text!r}")
    return sql.replace(text, replacement)


_FENCE = "AND jobs.lease_token = requests.token"
_RENEW_BLIND = _without("renew", _FENCE)
_without("finalize", _FENCE)  # fails loudly if the statement is no longer fenced this way
_without("finalize_complete", _FENCE)  # ... nor the one of a batch of successes only
# The start of every expanded batch of each finalize statement.
_FINALIZE_HEADS = tuple(_Q[name].split("{rows}")[0] for name in ("finalize", "finalize_complete"))
_REAP_EAGER = _without("expired_leases", "AND lease_expires_at <= :now")


class SQLiteRenewIgnoresToken(SQLiteTransport):
    """The renew statement matches on the job id alone."""

    async def _fetch(self, sql: str, params: Any = ()) -> list[Any]:
        return await super()._fetch(_RENEW_BLIND if sql == _Q["renew"] else sql, params)


class SQLiteFinalizeIgnoresToken(SQLiteTransport):
    """The finalize statements (a mixed batch's, and a batch of successes') match on the job
    id alone."""

    async def _fetch(self, sql: str, params: Any = ()) -> list[Any]:
        # The statement is the template expanded for the batch: recognise it by its start.
        if sql.startswith(_FINALIZE_HEADS):
            sql = sql.replace(_FENCE, "")
        return await super()._fetch(sql, params)


class _RewritingConnection:
    """A connection that swaps statements for others (the rest passes through)."""

    def __init__(self, conn: Any, old: str, new: str, *more: tuple[str, str]) -> None:
        self._conn = conn
        self._swaps = dict([(old, new), *more])

    async def execute_fetchall(self, sql: str, params: Any = ()) -> Any:
        return await self._conn.execute_fetchall(self._swaps.get(sql, sql), params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)  # every other call of the connection, as it is


class SQLiteReapIgnoresExpiry(SQLiteTransport):
    """The reaper's query forgets the expiry condition."""

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with super()._transaction() as conn:
            yield _RewritingConnection(conn, _Q["expired_leases"], _REAP_EAGER)


_SELECT_DUE = """
SELECT id FROM jobs
WHERE queue = :queue AND state IN ('available', 'scheduled') AND run_at <= :now
    AND NOT EXISTS (SELECT 1 FROM queue_configs WHERE name = :queue AND paused)
ORDER BY priority, run_at, id
LIMIT :limit
"""
_LEASE_IDS = """
UPDATE jobs
SET state = 'running', attempt = attempt + 1, lease_owner = :owner,
    lease_token = lease_token + 1, lease_expires_at = :expires_at, started_at = :now,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING
    id, kind, queue, payload, state, priority, run_at, attempt, max_attempts, last_error,
    dedupe_key, created_at, updated_at, finished_at, lease_owner, lease_expires_at,
    cancel_requested, started_at, errors, headers, concurrency_key, lease_token, lost_at,
    workflow, partition_key
"""


class SQLiteClaimWithoutLock(SQLiteTransport):
    """Claim is a SELECT and then an UPDATE by id, in two statements with no lock between."""

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        now = self._time.now()
        ids = [
            row[0]
            for row in await self._fetch(_SELECT_DUE, {"queue": queue, "now": now, "limit": limit})
        ]
        await anyio.lowlevel.checkpoint()
        if not ids:
            return []
        rows = await self._fetch(
            _LEASE_IDS,
            {"owner": owner, "expires_at": now + ttl, "now": now, "ids": json.dumps(ids)},
        )
        rows.sort(key=lambda row: (row[5], row[6], row[0]))
        return [
            Lease(job=_sqlite_job(row), token=row[21], owner=owner, expires_at=now + ttl)
            for row in rows
        ]


_CLAIM_GREEDY = _without("claim", "WHERE l.key IS NULL", "WHERE 1 = 1")


_CHOSEN_GREEDY = _without("claim_chosen", "WHERE l.key IS NULL", "WHERE 1 = 1")


class SQLiteLimitPerCandidateIgnored(SQLiteTransport):
    """The claim passes over full keys but starts every candidate of a key with room: one
    claim of several jobs of that key overshoots its free slots (the fair claim's too)."""

    async def _fetch(self, sql: str, params: Any = ()) -> list[Any]:
        return await super()._fetch(_CLAIM_GREEDY if sql == _Q["claim"] else sql, params)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with super()._transaction() as conn:
            yield _RewritingConnection(
                conn, _Q["claim"], _CLAIM_GREEDY, (_Q["claim_chosen"], _CHOSEN_GREEDY)
            )


_CLAIM_NOT_COOLED = _without(
    "claim", "SELECT key FROM cooldowns WHERE until > :now", "SELECT NULL WHERE 0"
)


_FAIR_NOT_COOLED = _without(
    "fair_candidates", "SELECT key FROM cooldowns WHERE until > :now", "SELECT NULL WHERE 0"
)


class SQLiteCoolDownIgnored(SQLiteTransport):
    """The claim forgets the cool-downs: a key a remote asked to rest starts at once (on the
    fair claim too)."""

    async def _fetch(self, sql: str, params: Any = ()) -> list[Any]:
        return await super()._fetch(_CLAIM_NOT_COOLED if sql == _Q["claim"] else sql, params)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with super()._transaction() as conn:
            yield _RewritingConnection(
                conn, _Q["claim"], _CLAIM_NOT_COOLED, (_Q["fair_candidates"], _FAIR_NOT_COOLED)
            )


_FAIR_FORGETFUL = _without(
    "fair_candidates",
    "ORDER BY p.tick IS NOT NULL, p.tick, p.pos, eligible.key",
    "ORDER BY eligible.key",
)


class SQLiteFairShareForgetsTurns(SQLiteTransport):
    """The fair claim orders partitions by key alone, as if none was ever served."""

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with super()._transaction() as conn:
            yield _RewritingConnection(conn, _Q["fair_candidates"], _FAIR_FORGETFUL)


SQLITE_MUTANTS: tuple[type[SQLiteTransport], ...] = (
    SQLiteClaimWithoutLock,
    SQLiteRenewIgnoresToken,
    SQLiteFinalizeIgnoresToken,
    SQLiteReapIgnoresExpiry,
)

FLOW_MUTANTS: tuple[type[MemoryTransport] | type[SQLiteTransport], ...] = (
    LimitIgnoresRunning,
    LimitCountsExpiredLeases,
    SQLiteLimitPerCandidateIgnored,
    RateOffByOne,
    RateWindowNotSliding,
    CoolDownIgnored,
    SQLiteCoolDownIgnored,
    FairShareForgetsTurns,
    FairShareByBacklog,
    SQLiteFairShareForgetsTurns,
)
"""The broken limiters and fair claims: hunted by the flow machine (the lease machine sets no limits)."""
