"""Deliberately broken transports: the simulator must catch each of them."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import attrs

from actors.core import VirtualClock
from actors.sim._faults import Observed  # the simulator's own memory transport
from property_tests.mutants import ReapBacksOff
from transports import Job, JobState, JsonValue, MemoryStore, MemoryTransport, Transport
from transports.lowlevel import (
    FinalizeRequest,
    FinalizeResult,
    Lease,
    Reclaimed,
    Step,
    StepResult,
)


class TokenBlindTransport(MemoryTransport):
    """Finalize ignores lease tokens: a late worker's result lands on the new owner's claim."""

    def __init__(self, *, store: MemoryStore, clock: VirtualClock, latest: dict[int, int]) -> None:
        super().__init__(store=store, clock=clock)
        self._latest = latest  # job id -> the newest token, shared by every node

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        leases = await super().claim(queue, owner=owner, limit=limit, ttl=ttl)
        for lease in leases:
            self._latest[lease.job_id] = lease.token
        return leases

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        blind = [attrs.evolve(r, token=self._latest.get(r.job_id, r.token)) for r in requests]
        return await super().finalize(blind)


#: The newest token of every job, one table per store (so per simulated cluster).
_latest: weakref.WeakKeyDictionary[MemoryStore, dict[int, int]] = weakref.WeakKeyDictionary()


def token_blind(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose finalize ignores tokens, sharing its token table with the store's
    other nodes."""
    latest = _latest.setdefault(store, {})
    return TokenBlindTransport(store=store, clock=clock, latest=latest)


class _Ahead:
    def __init__(self, clock: VirtualClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds

    def now(self) -> float:
        return self._clock.now() + self._seconds


class EagerReaperTransport(MemoryTransport):
    """Reap ignores expiry: it takes back every running lease, live or not."""

    def __init__(self, *, store: MemoryStore, clock: VirtualClock) -> None:
        super().__init__(store=store, clock=clock)
        self._ahead = MemoryTransport(store=store, clock=_Ahead(clock, 1e9))

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        return await self._ahead.reap(limit=limit)


def eager_reaper(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A factory of transports whose reaper ignores lease expiry."""
    return EagerReaperTransport(store=store, clock=clock)


class LimitBlindTransport(MemoryTransport):
    """The limiter counts only the jobs of its own claim, never the ones already running."""

    def _live(self, key: str, now: float) -> int:
        return 0


def limit_blind(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose claims ignore the jobs of a key already running on other claims."""
    return LimitBlindTransport(store=store, clock=clock)


class FixedWindowTransport(MemoryTransport):
    """The rate counts the starts of fixed windows (a counter reset every ``per`` seconds)."""

    def _started(self, key: str, now: float) -> int:
        super()._started(key, now)
        rate_per = self._store.rates.get(key)
        if rate_per is None:
            return 0
        opened = now - now % rate_per[1]
        return sum(1 for at in self._store.starts.get(key, ()) if at >= opened)


def fixed_window(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose rate windows do not slide."""
    return FixedWindowTransport(store=store, clock=clock)


class CoolBlindTransport(MemoryTransport):
    """A snooze that asks for a cool-down snoozes its job, but never cools its key."""

    def _cool(self, key: str | None, until: float) -> None:
        return None


def cool_blind(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport that ignores cool-downs."""
    return CoolBlindTransport(store=store, clock=clock)


class StepTokenBlindTransport(MemoryTransport):
    """record_step ignores lease tokens and expiry: a stale worker's step lands on the job."""

    async def record_step(
        self, job_id: int, *, token: int, name: str, value: JsonValue
    ) -> StepResult:
        row = self.store.running.get(job_id)
        if row is not None and row.token is not None and row.lease_expires_at is not None:
            row.lease_expires_at = max(row.lease_expires_at, self._time.now() + 1e-9)
            token = row.token
        return await super().record_step(job_id, token=token, name=name, value=value)


def step_token_blind(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport recording steps under any token, as long as the job runs."""
    return StepTokenBlindTransport(store=store, clock=clock)


class StepsForgottenTransport(MemoryTransport):
    """list_steps forgets what was recorded: every attempt runs every step again."""

    async def list_steps(self, job_id: int) -> list[Step]:
        await super().list_steps(job_id)
        return []


def steps_forgotten(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose steps are never read back."""
    return StepsForgottenTransport(store=store, clock=clock)


class EveryEndReleasesTransport(MemoryTransport):
    """A parent's end releases its dependents as a success would, whatever the end."""

    def _settle(self, parent_id: int, state: JobState, now: float) -> None:
        super()._settle(parent_id, JobState.SUCCEEDED, now)


def every_end_releases(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose dead or cancelled parents release their dependents."""
    return EveryEndReleasesTransport(store=store, clock=clock)


class FailuresForgottenTransport(MemoryTransport):
    """A parent that ends dead or cancelled settles nothing: its dependents wait forever."""

    def _settle(self, parent_id: int, state: JobState, now: float) -> None:
        if state is JobState.SUCCEEDED:
            super()._settle(parent_id, state, now)


def failures_forgotten(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport that forgets to settle the dependents of a failed parent."""
    return FailuresForgottenTransport(store=store, clock=clock)


class ResultsLostTransport(MemoryTransport):
    """Jobs read back by list_jobs have lost their results."""

    async def list_jobs(self, *args: Any, **kwargs: Any) -> list[Job]:
        return [attrs.evolve(job, result=None) for job in await super().list_jobs(*args, **kwargs)]


def results_lost(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose listed jobs carry no result."""
    return ResultsLostTransport(store=store, clock=clock)


class TurnsForgottenTransport(Observed):
    """The fair claim never remembers whom it served: partitions go in key order every
    claim, so the first ones pass a waiting later one again and again."""

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        self.store.served.clear()
        return await super().claim(queue, owner=owner, limit=limit, ttl=ttl)


def turns_forgotten(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose fair-share rotation forgets every turn."""
    return TurnsForgottenTransport(store=store, clock=clock)


def backed_off_reclaim(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A transport whose reaped jobs wait a minute before they can run again (the runtime
    property tests' mutant of the same bug)."""
    return ReapBacksOff(store=store, clock=clock)
