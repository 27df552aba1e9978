"""What operators read and do: error history, headers, filters and the bulk actions.

Mixed into :class:`~transports.testing.TransportConformance`, so every backend runs these on
both event loops. They pin the rules stated on :class:`~transports.Transport`: which errors a
job keeps (and how many, and how long), which jobs each operator action takes and leaves, and
that a live lease is never overridden except through the cancel request.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

from .._base import Transport
from .._errors import JobNotFound
from .._records import (
    MAX_ERROR_MESSAGE,
    MAX_ERRORS,
    MAX_TRACEBACK,
    AttemptError,
    Cancel,
    Complete,
    Discard,
    EnqueueRequest,
    FinalizeRequest,
    FinalizeResult,
    JobFilter,
    JobState,
    Lease,
    Outcome,
    RenewRequest,
    RenewResult,
    Retry,
)
from ._clock import ManualClock
from ._waking import spend_wake_ups

__all__ = ["TransportOperators"]

_TTL = 30.0
_WAKE_TIMEOUT = 5.0  # real seconds; a safety net for the wake-up test, never a wait


async def _add(transport: Transport, **fields: Any) -> int:
    fields.setdefault("kind", "ops.job")
    fields.setdefault("queue", "q")
    return (await transport.enqueue(EnqueueRequest(**fields))).job_id


async def _claim(transport: Transport, queue: str = "q", *, owner: str = "w1") -> Lease:
    leases = await transport.claim(queue, owner=owner, limit=1, ttl=_TTL)
    assert len(leases) == 1, leases
    return leases[0]


async def _end(transport: Transport, lease: Lease, outcome: Outcome) -> FinalizeResult:
    (result,) = await transport.finalize(
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
    )
    return result


async def _ids(transport: Transport, where: JobFilter) -> list[int]:
    return [job.id for job in await transport.list_jobs(where, limit=10_000)]


class TransportOperators:
    """Error history, headers, filtered listing and the operator actions, on every backend."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    # --- error history ---------------------------------------------------------------------

    async def test_a_failed_attempt_is_recorded_with_its_type_traceback_owner_and_time(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A Retry and then a Discard each append one AttemptError, oldest first, and
        last_error is the newest message; started_at is the latest claim's time."""
        job_id = await _add(transport, max_attempts=5)
        clock.advance(1.0)
        claimed_at = clock.now()
        lease = await _claim(transport, owner="node-a/w1")
        assert lease.job.started_at == claimed_at
        # A time of 16 significant digits is kept exactly (not rounded by a JSON encoder).
        clock.advance(2.966796875)
        retry = Retry(
            run_at=clock.now(), error="boom", error_type="ValueError", traceback="Traceback: x"
        )
        assert await _end(transport, lease, retry) is FinalizeResult.APPLIED
        job = await transport.get(job_id)
        assert job.errors == (
            AttemptError(
                attempt=1,
                at=claimed_at + 2.966796875,
                owner="node-a/w1",
                type="ValueError",
                message="boom",
                traceback="Traceback: x",
            ),
        )
        assert job.last_error == "boom"
        clock.advance(1.0)
        lease = await _claim(transport, owner="node-b/w2")
        assert (await transport.get(job_id)).started_at == clock.now()
        assert await _end(transport, lease, Discard(error="bad input")) is FinalizeResult.APPLIED
        job = await transport.get(job_id)
        assert job.state is JobState.DEAD
        assert [(e.attempt, e.owner, e.type, e.message, e.traceback) for e in job.errors] == [
            (1, "node-a/w1", "ValueError", "boom", "Traceback: x"),
            (2, "node-b/w2", "Error", "bad input", None),
        ]
        assert job.last_error == "bad input"

    async def test_a_retry_without_error_and_a_stale_finalize_record_nothing(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Only an applied Retry carrying an error, or a Discard, adds to the history."""
        job_id = await _add(transport)
        first = await _claim(transport)
        assert await _end(transport, first, Retry(run_at=clock.now())) is FinalizeResult.APPLIED
        assert (await transport.get(job_id)).errors == ()
        second = await _claim(transport)
        stale = await _end(transport, first, Discard(error="late", error_type="Late"))
        assert stale is FinalizeResult.STALE
        assert await _end(transport, second, Complete()) is FinalizeResult.APPLIED
        job = await transport.get(job_id)
        assert (job.state, job.errors, job.last_error) == (JobState.SUCCEEDED, (), None)

    async def test_the_history_keeps_the_newest_errors_and_bounded_texts(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """At most MAX_ERRORS entries (the newest); a message keeps its first
        MAX_ERROR_MESSAGE characters, a traceback its last MAX_TRACEBACK."""
        job_id = await _add(transport, max_attempts=MAX_ERRORS + 5)
        for n in range(1, MAX_ERRORS + 3):
            lease = await _claim(transport)
            await _end(transport, lease, Retry(run_at=clock.now(), error=f"e{n}"))
        job = await transport.get(job_id)
        assert len(job.errors) == MAX_ERRORS
        assert [e.message for e in job.errors] == [f"e{n}" for n in range(3, MAX_ERRORS + 3)]
        assert [e.attempt for e in job.errors] == list(range(3, MAX_ERRORS + 3))
        long_message = "m" * MAX_ERROR_MESSAGE + "TAIL"
        long_traceback = "HEAD" + "t" * MAX_TRACEBACK
        lease = await _claim(transport)
        await _end(
            transport,
            lease,
            Retry(run_at=clock.now(), error=long_message, traceback=long_traceback),
        )
        newest = (await transport.get(job_id)).errors[-1]
        assert newest.message == "m" * MAX_ERROR_MESSAGE
        assert newest.traceback == "t" * MAX_TRACEBACK
        assert (await transport.get(job_id)).last_error == long_message

    async def test_texts_are_cleaned_in_the_history(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """NUL and lone surrogates in an error or traceback are stored as U+FFFD."""
        job_id = await _add(transport)
        lease = await _claim(transport)
        await _end(
            transport,
            lease,
            Retry(run_at=clock.now(), error="a\x00b", traceback="t\ud800", error_type="É.Err"),
        )
        (error,) = (await transport.get(job_id)).errors
        assert (error.message, error.traceback, error.type) == ("a\ufffdb", "t\ufffd", "É.Err")

    async def test_a_lost_lease_is_recorded(self, transport: Transport, clock: ManualClock) -> None:
        """reap appends a LeaseExpired error naming the owner, for every lease it takes."""
        job_id = await _add(transport, max_attempts=2)
        start = clock.now()
        await _claim(transport, owner="node-x/w1")
        clock.advance(_TTL)
        (reclaimed,) = await transport.reap()
        assert reclaimed.state is JobState.AVAILABLE
        await _claim(transport, owner="node-y/w3")
        clock.advance(_TTL + 0.123456789)
        (reclaimed,) = await transport.reap()
        assert reclaimed.state is JobState.DEAD
        job = await transport.get(job_id)
        assert [(e.attempt, e.owner, e.type, e.at) for e in job.errors] == [
            (1, "node-x/w1", "LeaseExpired", start + _TTL),
            (2, "node-y/w3", "LeaseExpired", start + 2 * _TTL + 0.123456789),
        ]
        assert "node-x/w1" in job.errors[0].message
        assert job.errors[1].message == job.last_error

    async def test_headers_are_stored_and_returned(self, transport: Transport) -> None:
        """A job's headers come back as given, from get, list_jobs and claim; none is {}."""
        headers = {"traceparent": "00-abc-def-01", "ключ": "значение ü"}
        job_id = await _add(transport, headers=headers)
        plain = await _add(transport)
        assert (await transport.get(job_id)).headers == headers
        assert (await transport.get(plain)).headers == {}
        listed = {job.id: job.headers for job in await transport.list_jobs()}
        assert listed == {job_id: headers, plain: {}}
        lease = await _claim(transport)
        assert lease.job.headers == headers

    # --- listing ---------------------------------------------------------------------------

    async def test_filters_match_times_ids_and_error_text(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Time ranges are [after, before); ids, states and error text (ignoring ASCII case)
        narrow the listing; every field must match."""
        early = await _add(transport)
        clock.advance(10.0)
        late = await _add(transport, kind="other.job")
        start = clock.now() - 10.0
        assert await _ids(transport, JobFilter(created_after=start + 10.0)) == [late]
        assert await _ids(transport, JobFilter(created_before=start + 10.0)) == [early]
        assert await _ids(transport, JobFilter(ids=[late, early, 999_999])) == [early, late]
        lease = await _claim(transport)
        assert lease.job_id == early
        clock.advance(5.0)
        await _end(transport, lease, Discard(error="Connection REFUSED by upstream"))
        assert await _ids(transport, JobFilter(error="refused")) == [early]
        assert await _ids(transport, JobFilter(error="connection refused by")) == [early]
        assert await _ids(transport, JobFilter(error="%")) == []
        assert await _ids(transport, JobFilter(finished_after=start + 15.0)) == [early]
        assert await _ids(transport, JobFilter(finished_before=start + 15.0)) == []
        assert await _ids(transport, JobFilter(finished_before=start + 15.5)) == [early]
        both = JobFilter(states=[JobState.DEAD, JobState.AVAILABLE])
        assert await _ids(transport, both) == [early, late]
        assert await _ids(transport, JobFilter(states=[JobState.DEAD], kind="other.job")) == []

    async def test_a_due_scheduled_job_lists_as_available(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """The states filter sees a scheduled job whose time has come as available."""
        job_id = await _add(transport, delay=5.0)
        assert await _ids(transport, JobFilter(states=[JobState.SCHEDULED])) == [job_id]
        clock.advance(5.0)
        assert await _ids(transport, JobFilter(states=[JobState.SCHEDULED])) == []
        assert await _ids(transport, JobFilter(states=[JobState.AVAILABLE])) == [job_id]

    async def test_newest_first_pages_with_a_filter(self, transport: Transport) -> None:
        """newest_first with before_id walks the matching jobs from the newest down."""
        ids = [await _add(transport, queue="a" if n % 2 else "b") for n in range(7)]
        wanted = [i for n, i in enumerate(ids) if n % 2][::-1]
        seen: list[int] = []
        before: int | None = None
        where = JobFilter(queue="a", states=[JobState.AVAILABLE])
        while page := await transport.list_jobs(
            where, newest_first=True, before_id=before, limit=2
        ):
            seen.extend(job.id for job in page)
            before = page[-1].id
        assert seen == wanted
        window = await transport.list_jobs(after_id=ids[1], before_id=ids[5])
        assert [job.id for job in window] == ids[2:5]

    # --- operator actions ------------------------------------------------------------------

    async def _every_state(self, transport: Transport, clock: ManualClock) -> dict[str, int]:
        """One job in each state on queue "q" (scheduled waits an hour)."""
        ids = {}
        ids["running"] = await _add(transport, kind="running")
        running = await _claim(transport)
        assert running.job_id == ids["running"]
        for name in ["succeeded", "dead", "cancelled"]:
            ids[name] = await _add(transport, kind=name)
            lease = await _claim(transport)
            outcomes: dict[str, Outcome] = {
                "succeeded": Complete(),
                "dead": Discard(error="kaput"),
                "cancelled": Cancel(reason="stop"),
            }
            outcome = outcomes[name]
            await _end(transport, lease, outcome)
        ids["available"] = await _add(transport, kind="available")
        ids["scheduled"] = await _add(transport, kind="scheduled", delay=3600.0)
        return ids

    async def test_retry_takes_dead_cancelled_and_scheduled_jobs_with_a_fresh_budget(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """retry_jobs makes dead, cancelled and scheduled jobs available now with attempt 0,
        keeping their errors; running, succeeded and available ones are left alone."""
        ids = await self._every_state(transport, clock)
        before = {name: await transport.get(job_id) for name, job_id in ids.items()}
        clock.advance(1.0)
        retried = await transport.retry_jobs(JobFilter())
        assert retried == sorted([ids["dead"], ids["cancelled"], ids["scheduled"]])
        for name in ["dead", "cancelled", "scheduled"]:
            job = await transport.get(ids[name])
            assert job.state is JobState.AVAILABLE, name
            assert (job.attempt, job.run_at, job.finished_at) == (0, clock.now(), None), name
            assert not job.cancel_requested
            assert job.errors == before[name].errors
            assert job.last_error == before[name].last_error
        for name in ["running", "succeeded", "available"]:
            assert await transport.get(ids[name]) == before[name], name
        assert await transport.retry_jobs(JobFilter()) == []
        claimed = await transport.claim("q", owner="w2", limit=10, ttl=_TTL)
        assert sorted(lease.job_id for lease in claimed) == sorted([ids["available"], *retried])

    async def test_a_retried_job_gives_up_its_dedupe_key(self, transport: Transport) -> None:
        """A final job retried drops its dedupe key, which a newer job may hold by now."""
        first = await _add(transport, dedupe_key="k")
        lease = await _claim(transport)
        await _end(transport, lease, Discard(error="x"))
        newer = await _add(transport, dedupe_key="k")
        assert newer != first
        assert await transport.retry_jobs(JobFilter(ids=[first])) == [first]
        job = await transport.get(first)
        assert (job.state, job.dedupe_key) == (JobState.AVAILABLE, None)
        again = await transport.enqueue(EnqueueRequest(kind="ops.job", queue="q", dedupe_key="k"))
        assert (again.job_id, again.deduplicated) == (newer, True)

    async def test_retry_wakes_the_queues_that_got_jobs(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A waiter of a queue whose dead job was retried returns."""
        job_id = await _add(transport, queue="woken")
        lease = await _claim(transport, "woken")
        await _end(transport, lease, Discard(error="x"))
        await spend_wake_ups(transport, ["woken"])
        started = anyio.Event()
        returned = anyio.Event()

        async def waiter() -> None:
            started.set()
            await transport.wait_for_work(["woken"])
            returned.set()

        with anyio.fail_after(_WAKE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await started.wait()
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                assert await transport.retry_jobs(JobFilter(queue="woken")) == [job_id]
                await returned.wait()

    async def test_discard_ends_waiting_jobs_with_the_reason_recorded(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """discard_jobs makes scheduled and available jobs dead, recording a Discarded error
        without an owner; others are left alone."""
        ids = await self._every_state(transport, clock)
        before = {name: await transport.get(job_id) for name, job_id in ids.items()}
        clock.advance(2.000000123)
        discarded = await transport.discard_jobs(JobFilter(), reason="bad\x00batch")
        assert discarded == sorted([ids["available"], ids["scheduled"]])
        for name in ["available", "scheduled"]:
            job = await transport.get(ids[name])
            assert (job.state, job.finished_at, job.last_error) == (
                JobState.DEAD,
                clock.now(),
                "bad\ufffdbatch",
            )
            assert job.errors == (
                AttemptError(
                    attempt=0,
                    at=clock.now(),
                    owner=None,
                    type="Discarded",
                    message="bad\ufffdbatch",
                    traceback=None,
                ),
            )
        for name in ["running", "succeeded", "dead", "cancelled"]:
            assert await transport.get(ids[name]) == before[name], name

    async def test_delete_removes_final_and_waiting_jobs_never_a_running_one(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """delete_jobs removes every matching job but a running one, freeing dedupe keys."""
        ids = await self._every_state(transport, clock)
        keyed = await _add(transport, dedupe_key="once")
        deleted = await transport.delete_jobs(JobFilter())
        assert deleted == [*sorted(i for name, i in ids.items() if name != "running"), keyed]
        for job_id in deleted:
            with pytest.raises(JobNotFound):
                await transport.get(job_id)
        assert (await transport.get(ids["running"])).state is JobState.RUNNING
        assert sum(c.total for c in await transport.counts()) == 1
        fresh = await transport.enqueue(EnqueueRequest(kind="ops.job", dedupe_key="once"))
        assert not fresh.deduplicated

    async def test_cancel_ends_waiting_jobs_and_asks_running_ones(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """cancel_jobs cancels waiting jobs now and sets a running job's cancel request (its
        lease stays live); a second call finds nothing left to do."""
        ids = await self._every_state(transport, clock)
        running = await transport.get(ids["running"])
        changed = await transport.cancel_jobs(JobFilter())
        assert changed == sorted([ids["running"], ids["available"], ids["scheduled"]])
        for name in ["available", "scheduled"]:
            assert (await transport.get(ids[name])).state is JobState.CANCELLED
        job = await transport.get(ids["running"])
        assert (job.state, job.cancel_requested) == (JobState.RUNNING, True)
        assert job.lease_expires_at == running.lease_expires_at
        assert await transport.cancel_jobs(JobFilter()) == []
        # The holder learns it on its next renewal, as with cancel(job_id).
        leases = await transport.claim("q", owner="w9", limit=10, ttl=_TTL)
        assert leases == []

    async def test_a_running_job_is_never_retried_discarded_or_deleted(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Even named by id, a job under a live lease is skipped by retry, discard and
        delete, and its holder still finalizes it."""
        job_id = await _add(transport)
        lease = await _claim(transport)
        one = JobFilter(ids=[job_id])
        assert await transport.retry_jobs(one) == []
        assert await transport.discard_jobs(one, reason="no") == []
        assert await transport.delete_jobs(one) == []
        (renewed,) = await transport.renew(
            [RenewRequest(job_id=lease.job_id, token=lease.token)], ttl=_TTL
        )
        assert renewed is RenewResult.RENEWED
        assert await _end(transport, lease, Complete()) is FinalizeResult.APPLIED

    async def test_actions_go_in_bounded_batches_until_the_filter_is_exhausted(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Each call takes at most ``limit`` jobs, lowest id first, and only what matches;
        calling again until [] exhausts the filter."""
        ids = [await _add(transport, kind="bulk") for _ in range(7)]
        other = await _add(transport, kind="keep")
        batches = []
        while batch := await transport.discard_jobs(JobFilter(kind="bulk"), reason="r", limit=3):
            batches.append(batch)
        assert batches == [ids[0:3], ids[3:6], ids[6:7]]
        while batch := await transport.retry_jobs(
            JobFilter(kind="bulk", states=[JobState.DEAD]), limit=4
        ):
            assert len(batch) <= 4
        assert await _ids(transport, JobFilter(states=[JobState.AVAILABLE])) == [*ids, other]
        assert await transport.delete_jobs(JobFilter(error="nothing like this")) == []
        assert len(await transport.delete_jobs(JobFilter(kind="bulk"), limit=5)) == 5
        assert await transport.delete_jobs(JobFilter(kind="bulk"), limit=5) == ids[5:]
        assert await _ids(transport, JobFilter()) == [other]
