"""Dependencies under any sequence of steps, on every backend and both loops.

A machine enqueues jobs after random earlier ones (by id and within a batch, each edge
cancelling or running anyway), in a few workflows, and then claims, finishes (succeeds,
retries, fails, cancels), lets leases expire and reaps, cancels and retries as an operator,
in any order. Properties:

* a dependent never starts (is never claimed) before each of its parents succeeded, or
  ended at all for an edge that runs anyway;
* a fan-in callback (a job after several parents) runs at most once per run of its workflow
  (once per retry of it);
* once the faults stop (every job run to its end, no more expiries), every job and so every
  workflow reaches a final state: nothing is left pending.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from transports import After, EnqueueRequest, JobFilter, JobState, OnFailure
from transports.lowlevel import Complete, Discard, FinalizeRequest, Lease, Retry

from .conftest import examples
from .harness import Harness

EXAMPLES = {"memory": 40, "sqlite": 12, "postgres": 12}
TTL = 30.0


class DependencyMachine(RuleBasedStateMachine):
    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.transport = harness.fresh()[0]
        self.clock = harness.clock
        self.parents: dict[int, dict[int, OnFailure]] = {}  # child -> parent -> policy
        self.ids: list[int] = []
        self.held: list[Lease] = []
        self.runs: dict[int, int] = {}  # job -> claims that started it
        self.retried: dict[int, int] = {}  # job -> times an operator retried it
        # jobs that had started when an operator retried one of their parents: their own
        # later runs (a reaped lease, a retry) are not held back (see Transport's
        # *Dependencies*)
        self.started_before_reopen: set[int] = set()

    def _call(self, fn: Any, *args: Any) -> Any:
        return self.harness.call(fn, *args)

    def _states(self) -> dict[int, JobState]:
        async def read() -> dict[int, JobState]:
            jobs = await self.transport.list_jobs(limit=10_000)
            return {job.id: job.state for job in jobs}

        return self._call(read)  # type: ignore[no-any-return]

    @rule(
        picks=st.lists(st.integers(0, 50), max_size=3, unique=True),
        policies=st.lists(st.sampled_from(list(OnFailure)), min_size=3, max_size=3),
        chained=st.integers(0, 2),
        workflow=st.sampled_from([None, "w1", "w2"]),
    )
    def enqueue(
        self, picks: list[int], policies: list[OnFailure], chained: int, workflow: str | None
    ) -> None:
        """A job after some existing ones, then up to two more each after the one before."""
        parents = sorted({self.ids[p % len(self.ids)] for p in picks} if self.ids else set())
        after = [After(job_id=p, on_failure=policies[i % 3]) for i, p in enumerate(parents)]
        requests = [EnqueueRequest(kind="dep", queue="q", after=after, workflow=workflow)]
        for i in range(chained):
            requests.append(
                EnqueueRequest(
                    kind="dep",
                    queue="q",
                    after=[After(index=i, on_failure=policies[i])],
                    workflow=workflow,
                )
            )
        results = self._call(self.transport.enqueue_many, requests)
        ids = [result.job_id for result in results]
        for position, (request, job_id) in enumerate(zip(requests, ids, strict=True)):
            self.parents[job_id] = {
                (a.job_id if a.job_id is not None else ids[a.index or 0]): a.on_failure
                for a in request.after
            }
            assert position >= 0
        self.ids.extend(ids)

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        """Every job a claim starts has its parents decided for it."""
        before = self._states()
        leases = self._call(lambda: self.transport.claim("q", owner="w", limit=limit, ttl=TTL))
        for lease in leases:
            if lease.job_id in self.started_before_reopen:
                self.runs[lease.job_id] = self.runs.get(lease.job_id, 0) + 1
                self.held.append(lease)
                continue
            for parent, policy in self.parents.get(lease.job_id, {}).items():
                state = before.get(parent)
                if policy is OnFailure.CANCEL:
                    assert state is JobState.SUCCEEDED, (
                        f"job {lease.job_id} started while its parent {parent} is {state}"
                    )
                else:
                    assert state is None or state.is_final, (
                        f"job {lease.job_id} started while its parent {parent} is {state}"
                    )
            self.runs[lease.job_id] = self.runs.get(lease.job_id, 0) + 1
            self.held.append(lease)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 10), outcome=st.sampled_from(["complete", "retry", "discard"]))
    def finish(self, pick: int, outcome: str) -> None:
        lease = self.held.pop(pick % len(self.held))
        ending = {
            "complete": Complete(result=lease.job_id),
            "retry": Retry(run_at=self.clock.now(), error="again"),
            "discard": Discard(error="broken"),
        }[outcome]
        self._call(
            self.transport.finalize,
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=ending)],
        )

    @rule()
    def expire(self) -> None:
        """Every lease held lapses and is reaped (a crash of its worker)."""
        self.clock.advance(TTL + 1)
        self._call(self.transport.reap)
        self.held.clear()

    @precondition(lambda self: self.ids)
    @rule(pick=st.integers(0, 50))
    def cancel(self, pick: int) -> None:
        self._call(self.transport.cancel_jobs, JobFilter(ids=[self.ids[pick % len(self.ids)]]))

    @precondition(lambda self: self.ids)
    @rule(pick=st.integers(0, 50))
    def retry(self, pick: int) -> None:
        job_id = self.ids[pick % len(self.ids)]
        for retried in self._call(self.transport.retry_jobs, JobFilter(ids=[job_id])):
            self.retried[retried] = self.retried.get(retried, 0) + 1
            for child, parents in self.parents.items():
                if retried in parents and self.runs.get(child, 0) > 0:
                    self.started_before_reopen.add(child)

    @invariant()
    def a_fan_in_runs_once_per_run_of_it(self) -> None:
        for job_id, runs in self.runs.items():
            if len(self.parents.get(job_id, {})) > 1:
                # each retry (and each lease lost to expiry or a retry outcome) may run it again;
                # without those, exactly once
                assert runs <= 1 + self.retried.get(job_id, 0) + self._lost(job_id)

    def _lost(self, job_id: int) -> int:
        async def attempts() -> int:
            job = await self.transport.get(job_id)
            return len(job.errors)

        return self._call(attempts)  # type: ignore[no-any-return]

    def teardown(self) -> None:
        """Faults stop: every claimable job runs to success; then nothing is left active."""
        for lease in self.held:
            self._call(
                self.transport.finalize,
                [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())],
            )
        for _ in range(len(self.ids) + 2):
            leases = self._call(lambda: self.transport.claim("q", owner="w", limit=100, ttl=TTL))
            if not leases:
                break
            self._call(
                self.transport.finalize,
                [
                    FinalizeRequest(job_id=x.job_id, token=x.token, outcome=Complete())
                    for x in leases
                ],
            )
        self.clock.advance(1_000.0)  # retries scheduled in the future come due
        for _ in range(len(self.ids) + 2):
            leases = self._call(lambda: self.transport.claim("q", owner="w", limit=100, ttl=TTL))
            if not leases:
                break
            self._call(
                self.transport.finalize,
                [
                    FinalizeRequest(job_id=x.job_id, token=x.token, outcome=Complete())
                    for x in leases
                ],
            )
        left = {job_id: state for job_id, state in self._states().items() if state.is_active}
        assert not left, f"jobs never reached a final state once faults stopped: {left}"

        async def workflows() -> list[Any]:
            return await self.transport.list_workflows()

        for summary in self._call(workflows):
            assert summary.is_final, f"workflow {summary.workflow} did not end: {summary}"


def test_dependents_wait_for_their_parents_and_every_workflow_ends(harness: Harness) -> None:
    """No dependent starts before its parents decided for it, a fan-in runs once per run, and
    once faults stop every job and workflow ends, on this backend and loop."""
    n = examples(EXAMPLES[harness.backend.name])
    run_state_machine_as_test(
        lambda: DependencyMachine(harness),
        settings=settings(max_examples=n, stateful_step_count=25),
    )
