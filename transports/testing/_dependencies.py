"""Dependencies and workflows, on every backend.

These tests pin *Dependencies* and *Workflows* in :mod:`transports._base`: a job enqueued
``after`` others is ``pending`` (never claimed) until every parent succeeded and due in the
same write as the last parent's finalize; a parent that ends dead or cancelled cancels its
dependents or lets them run, per edge; a bad edge refuses the whole batch; operator actions,
reaping and cleanup keep the graph coherent.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from .._base import Transport
from .._errors import DependencyCycle, InvalidRequest, UnknownDependency
from .._records import (
    After,
    Complete,
    Discard,
    Edge,
    EnqueueRequest,
    FinalizeRequest,
    JobFilter,
    JobState,
    Lease,
    OnFailure,
    Outcome,
)
from ._clock import ManualClock

__all__ = ["TransportDependencies"]

_TTL = 30.0


def _job(**fields: Any) -> EnqueueRequest:
    fields.setdefault("kind", "d.job")
    fields.setdefault("queue", "q")
    return EnqueueRequest(**fields)


async def _ids(transport: Transport, *requests: EnqueueRequest) -> list[int]:
    return [result.job_id for result in await transport.enqueue_many(list(requests))]


async def _states(transport: Transport, ids: list[int]) -> list[JobState]:
    return [(await transport.get(job_id)).state for job_id in ids]


async def _claim(transport: Transport, limit: int = 10) -> list[Lease]:
    return await transport.claim("q", owner="w1", limit=limit, ttl=_TTL)


async def _end(transport: Transport, lease: Lease, outcome: Outcome | None = None) -> None:
    await transport.finalize(
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome or Complete())]
    )


class TransportDependencies:
    """Jobs that wait for others, and workflows as a unit."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_a_job_after_a_dead_parent_is_cancelled_when_enqueued(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A job enqueued after a parent that already died is cancelled at once: finished at
        the enqueue's time, its error naming the parent."""
        (parent,) = await _ids(transport, _job())
        (lease,) = await _claim(transport)
        await _end(transport, lease, Discard(error="broken"))
        clock.advance(5)
        (child,) = await _ids(transport, _job(after=[parent]))
        job = await transport.get(child)
        assert job.state is JobState.CANCELLED
        assert job.finished_at == clock.now()
        assert job.last_error == f"parent {parent} ended dead"

    async def test_a_batch_with_parents_still_folds_its_keyed_jobs(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """In a batch that also holds a job with parents, a keyed job folds into the active job
        of its key, and the fold counts in the minute's ``deduplicated``."""
        clock.advance(120.0 - clock.now() % 60.0)  # at the start of a minute
        (parent,) = await _ids(transport, _job())
        keyed = (await transport.enqueue(_job(dedupe_key="k"))).job_id
        child, folded = await transport.enqueue_many([_job(after=[parent]), _job(dedupe_key="k")])
        assert (child.deduplicated, folded.deduplicated) == (False, True)
        assert folded.job_id == keyed
        assert await _states(transport, [child.job_id]) == [JobState.PENDING]
        assert [s.deduplicated for s in await transport.list_stats()] == [1]

    async def test_a_chain_runs_one_link_after_the_other(self, transport: Transport) -> None:
        """Each link is pending until the one before it succeeded, then due at once."""
        a, b, c = await _ids(
            transport, _job(), _job(after=[After(index=0)]), _job(after=[After(index=1)])
        )
        assert await _states(transport, [a, b, c]) == [
            JobState.AVAILABLE,
            JobState.PENDING,
            JobState.PENDING,
        ]
        (lease,) = await _claim(transport)
        assert lease.job_id == a  # a pending job is never claimed
        await _end(transport, lease)
        assert await _states(transport, [b, c]) == [JobState.AVAILABLE, JobState.PENDING]
        (lease,) = await _claim(transport)
        assert lease.job_id == b
        await _end(transport, lease)
        (lease,) = await _claim(transport)
        assert lease.job_id == c

    async def test_a_fan_in_waits_for_every_member(self, transport: Transport) -> None:
        """A job after several parents (by id, across batches) is due only after the last."""
        members = await _ids(transport, *[_job(workflow="wf") for _ in range(3)])
        (callback,) = await _ids(transport, _job(kind="d.callback", after=members, workflow="wf"))
        leases = await _claim(transport)
        assert sorted(lease.job_id for lease in leases) == members
        for lease in leases[:2]:
            await _end(transport, lease)
        assert (await transport.get(callback)).state is JobState.PENDING
        assert await _claim(transport) == []
        await _end(transport, leases[2])
        (lease,) = await _claim(transport)
        assert lease.job_id == callback
        edges = await transport.list_edges([callback])
        assert edges == [
            Edge(
                parent=m,
                child=callback,
                on_failure=OnFailure.CANCEL,
                parent_state=JobState.SUCCEEDED,
            )
            for m in members
        ]

    async def test_a_failed_parent_cancels_its_dependents_down_the_chain(
        self, transport: Transport
    ) -> None:
        """A parent ending dead cancels a CANCEL dependent, and that one's dependents in turn,
        in the same write; a RUN dependent runs once every parent ended."""
        a, b, c, d = await _ids(
            transport,
            _job(),
            _job(after=[After(index=0)]),
            _job(after=[After(index=1)]),
            _job(after=[After(index=0, on_failure="run")]),
        )
        (lease,) = await _claim(transport)
        await _end(transport, lease, Discard(error="broken"))
        b_job, c_job, d_job = [await transport.get(i) for i in (b, c, d)]
        assert (b_job.state, c_job.state, d_job.state) == (
            JobState.CANCELLED,
            JobState.CANCELLED,
            JobState.AVAILABLE,
        )
        assert b_job.last_error == f"parent {a} ended dead"
        assert c_job.last_error == f"parent {b} ended cancelled"
        assert b_job.finished_at is not None
        assert [lease.job_id for lease in await _claim(transport)] == [d]

    async def test_a_job_after_decided_parents_starts_as_they_say(
        self, transport: Transport
    ) -> None:
        """After a succeeded parent a job is due at once; after a dead one it starts
        cancelled (or due, with RUN); after an active one pending."""
        ok, bad = await _ids(transport, _job(), _job())
        first, second = await _claim(transport)
        await _end(transport, first)
        await _end(transport, second, Discard(error="x"))
        waiting = (await _ids(transport, _job(queue="other")))[0]
        due, cancelled, anyway, pending = await _ids(
            transport,
            _job(after=[ok]),
            _job(after=[ok, bad]),
            _job(after=[After(job_id=bad, on_failure=OnFailure.RUN)]),
            _job(after=[ok, waiting]),
        )
        assert await _states(transport, [due, cancelled, anyway, pending]) == [
            JobState.AVAILABLE,
            JobState.CANCELLED,
            JobState.AVAILABLE,
            JobState.PENDING,
        ]
        assert (await transport.get(cancelled)).last_error == f"parent {bad} ended dead"

    async def test_a_bad_edge_refuses_the_whole_batch(self, transport: Transport) -> None:
        """An unknown parent, a self-edge or an edge to a later request raises its typed error
        and writes nothing of the batch."""
        (known,) = await _ids(transport, _job())
        cases: list[tuple[list[EnqueueRequest], type[Exception]]] = [
            ([_job(), _job(after=[known, 10**9])], UnknownDependency),
            ([_job(), _job(after=[After(index=1)])], DependencyCycle),
            ([_job(after=[After(index=1)]), _job()], DependencyCycle),
        ]
        for requests, error in cases:
            with pytest.raises(error):
                await transport.enqueue_many(requests)
            assert [job.id for job in await transport.list_jobs()] == [known]
        with pytest.raises(InvalidRequest):
            _job(after=[known], dedupe_key="k")
        with pytest.raises(InvalidRequest):
            After(job_id=1, index=0)

    async def test_operators_keep_the_graph_coherent(self, transport: Transport) -> None:
        """Cancelling a pending job settles its dependents; retrying a failed parent opens its
        edges again, and a retried dependent waits for it; retry never takes a pending job."""
        a, b, c = await _ids(
            transport, _job(), _job(after=[After(index=0)]), _job(after=[After(index=1)])
        )
        assert await transport.retry_jobs(JobFilter(ids=[b])) == []  # pending: not retried
        assert await transport.cancel_jobs(JobFilter(ids=[b])) == [b]
        assert await _states(transport, [a, b, c]) == [
            JobState.AVAILABLE,
            JobState.CANCELLED,
            JobState.CANCELLED,
        ]
        (lease,) = await _claim(transport)
        await _end(transport, lease, Discard(error="boom"))
        # Retry the dead parent and its cancelled dependents: a dependent a failed parent
        # cancels is skipped until that parent is retried, then waits for it again.
        assert await transport.retry_jobs(JobFilter(ids=[b, c])) == []
        everyone = JobFilter(ids=[a, b, c])
        assert await transport.retry_jobs(everyone) == [a]
        assert await transport.retry_jobs(everyone) == [b]
        assert await transport.retry_jobs(everyone) == [c]
        assert await transport.retry_jobs(everyone) == []
        assert await _states(transport, [a, b, c]) == [
            JobState.AVAILABLE,
            JobState.PENDING,
            JobState.PENDING,
        ]
        (lease,) = await _claim(transport)
        await _end(transport, lease)
        assert await _states(transport, [b, c]) == [JobState.AVAILABLE, JobState.PENDING]
        # Deleting an active parent counts as its cancellation.
        (lease,) = await _claim(transport)
        assert lease.job_id == b
        (d,) = await _ids(transport, _job(queue="other"))
        (e,) = await _ids(transport, _job(after=[d]))
        assert await transport.delete_jobs(JobFilter(ids=[d])) == [d]
        assert (await transport.get(e)).state is JobState.CANCELLED
        # A pending job is not discarded (it never ran to fail): it is cancelled.
        (f,) = await _ids(transport, _job(queue="other"))
        g, h = await _ids(transport, _job(after=[f]), _job(after=[After(index=0)]))
        assert await transport.discard_jobs(JobFilter(ids=[g]), reason="operator") == []
        assert await _states(transport, [g, h]) == [JobState.PENDING, JobState.PENDING]
        # Discarding a waiting parent ends it dead and cancels its dependents.
        assert await transport.discard_jobs(JobFilter(ids=[f]), reason="operator") == [f]
        assert await _states(transport, [f, g, h]) == [
            JobState.DEAD,
            JobState.CANCELLED,
            JobState.CANCELLED,
        ]

    async def test_a_reaped_parent_releases_nothing(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A parent whose lease expired goes back to available: its dependent stays pending;
        once reaped on its last attempt (dead) its CANCEL dependent is cancelled."""
        parent, child = await _ids(transport, _job(max_attempts=2), _job(after=[After(index=0)]))
        await _claim(transport)
        clock.advance(_TTL + 1)
        await transport.reap()
        assert await _states(transport, [parent, child]) == [JobState.AVAILABLE, JobState.PENDING]
        await _claim(transport)
        clock.advance(_TTL + 1)
        await transport.reap()
        assert await _states(transport, [parent, child]) == [JobState.DEAD, JobState.CANCELLED]

    async def test_a_workflow_is_listed_cancelled_and_kept_together(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """list_workflows counts a workflow's jobs; cancel_jobs ends it whole; cleanup takes
        it only once every job is final and old enough."""
        assert await transport.list_workflows() == []
        a, b = await _ids(
            transport, _job(workflow="order-1"), _job(workflow="order-1", after=[After(index=0)])
        )
        (other,) = await _ids(transport, _job(workflow="order-2"))
        (summary, second) = await transport.list_workflows()
        assert summary.workflow == "order-1"
        assert dict(summary.by_state) == {JobState.AVAILABLE: 1, JobState.PENDING: 1}
        assert summary.finished_at is None
        assert second.workflow == "order-2"
        assert [s.workflow for s in await transport.list_workflows(after="order-1")] == ["order-2"]
        assert [j.id for j in await transport.list_jobs(JobFilter(workflow="order-1"))] == [a, b]
        assert (await transport.get(b)).workflow == "order-1"
        assert [e.child for e in await transport.list_edges(workflow="order-1")] == [b]
        # Finish the first job early; the workflow is not final yet, so cleanup keeps it.
        (lease,) = [lease for lease in await _claim(transport) if lease.job_id == a]
        await _end(transport, lease)
        clock.advance(100)
        assert await transport.cleanup(finished_before=clock.now()) == 0
        assert await transport.cancel_jobs(JobFilter(workflow="order-1")) == [b]
        (done,) = await transport.list_workflows(workflow="order-1")
        assert done.finished_at == clock.now()
        assert dict(done.by_state) == {JobState.SUCCEEDED: 1, JobState.CANCELLED: 1}
        assert await transport.cleanup(finished_before=clock.now()) == 0  # b just finished
        clock.advance(10)
        assert await transport.cleanup(finished_before=clock.now()) == 2
        assert [job.id for job in await transport.list_jobs()] == [other]
        assert await transport.list_edges([a, b]) == []

    async def test_retrying_a_parent_holds_back_its_unstarted_dependents(
        self, transport: Transport
    ) -> None:
        """A dependent that runs anyway was due after its parent was cancelled; retrying the
        parent makes it wait again, and the parent's success releases it."""
        (parent,) = await _ids(transport, _job(queue="other"))
        await transport.cancel(parent)
        (child,) = await _ids(transport, _job(after=[After(job_id=parent, on_failure="run")]))
        assert (await transport.get(child)).state is JobState.AVAILABLE
        assert await transport.retry_jobs(JobFilter(ids=[parent])) == [parent]
        assert (await transport.get(child)).state is JobState.PENDING
        assert await _claim(transport) == []
        (lease,) = await transport.claim("other", owner="w1", limit=1, ttl=_TTL)
        await _end(transport, lease)
        assert (await transport.get(child)).state is JobState.AVAILABLE
