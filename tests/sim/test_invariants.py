"""The checker flags each broken invariant the moment the store's answer breaks it."""

from __future__ import annotations

import attrs
import pytest

from actors.jobs import CronFired, JobClaimed
from actors.jobs.lowlevel import SlotStatistics
from actors.sim.lowlevel import RESTART_SLACK, Health
from transports import JobState
from transports.lowlevel import (
    Complete,
    FinalizeRequest,
    FinalizeResult,
    LeaderLease,
    Lease,
    Reclaimed,
    RenewRequest,
    RenewResult,
)

from ._support import START, Rig, claim_one, job, make_rig

pytestmark = pytest.mark.anyio


async def test_a_second_claim_of_a_held_job_breaks_single_owner() -> None:
    """Claiming a job whose lease is still held is a violation (and only the first counts)."""
    rig = make_rig()
    lease = await claim_one(rig)
    second = attrs.evolve(lease, token=lease.token + 100, owner="w2")
    rig.checker.claimed("n1.1", [second], START)
    rig.checker.claimed("n1.1", [second], START)
    assert rig.violations == ["single_owner"]
    assert rig.checker.violation is not None
    assert "w2" in rig.checker.violation.detail
    assert rig.trace.closed


async def test_refusing_the_current_token_breaks_fencing() -> None:
    """A finalize refused although its token still owns the job is a violation too."""
    rig = make_rig()
    lease = await claim_one(rig)
    rig.checker.finalized(
        "n0.1",
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())],
        [FinalizeResult.STALE],
        START,
    )
    assert rig.violations == ["fenced_finalize"]


async def test_a_claim_past_max_attempts_is_out_of_bounds() -> None:
    """A claim for an attempt beyond max_attempts breaks attempts_within_bounds."""
    rig = make_rig()
    lease = await claim_one(rig)
    rig.checker.jobs[lease.job_id].token = None  # as if finalized
    late = attrs.evolve(lease, job=attrs.evolve(lease.job, attempt=4, max_attempts=3))
    rig.checker.claimed("n0.1", [late], START)
    assert rig.violations == ["attempts_within_bounds"]


async def test_a_stale_finalize_applied_breaks_fencing() -> None:
    """A finalize applied with a token that no longer owns the job is a violation."""
    rig = make_rig()
    lease = await claim_one(rig, ttl=5.0)
    later = START + 6.0
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 5.0)], later)
    rig.checker.claimed("n0.1", [attrs.evolve(lease, token=99, owner="w2")], later)
    assert not rig.violations
    rig.checker.finalized(
        "n0.1",
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())],
        [FinalizeResult.APPLIED],
        later,
    )
    assert rig.violations == ["fenced_finalize"]
    assert "token 99 held by w2" in rig.checker.violation.detail  # type: ignore[union-attr]


async def test_reaping_a_live_lease_is_a_violation() -> None:
    """The reaper may take back only expired leases."""
    rig = make_rig()
    lease = await claim_one(rig, ttl=10.0)
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 10.0)], START + 3.0)
    assert rig.violations == ["reap_only_expired"]


async def test_renewals_must_match_the_lease() -> None:
    """Renewing a stale token, or reviving an expired lease, breaks fenced_renew."""
    rig = make_rig()
    lease = await claim_one(rig, ttl=10.0)
    request = RenewRequest(job_id=lease.job_id, token=lease.token)
    rig.checker.renewed("n0.1", [request], [RenewResult.RENEWED], 10.0, START + 5.0)
    assert not rig.violations
    assert rig.checker.jobs[lease.job_id].expires_at == START + 15.0
    rig.checker.renewed("n0.1", [request], [RenewResult.RENEWED], 10.0, START + 15.0)
    assert rig.violations == ["fenced_renew"]
    rig = make_rig()
    lease = await claim_one(rig, ttl=10.0)
    live = RenewRequest(job_id=lease.job_id, token=lease.token)
    rig.checker.renewed("n0.1", [live], [RenewResult.LOST], 10.0, START + 1.0)
    assert rig.violations == ["fenced_renew"]  # a live lease reported lost


async def test_a_cron_tick_fired_twice_is_a_violation() -> None:
    """Two CronFired events for one schedule tick, from anywhere, break cron_once_per_tick."""
    rig = make_rig()
    fired = CronFired(at=START, schedule="s", tick=60.0, job_id=1, deduplicated=False)
    rig.trace.add("n0.1", fired)
    rig.trace.add("n1.1", attrs.evolve(fired, tick=120.0))
    assert not rig.violations
    rig.trace.add("n1.1", attrs.evolve(fired, job_id=2))
    assert rig.violations == ["cron_once_per_tick"]


def test_two_live_leaders_are_a_violation() -> None:
    """A leader lease granted while another holder's is live breaks single_leader."""
    rig = make_rig()
    lease = LeaderLease(name="cron", holder="a", epoch=1, expires_at=START + 10.0)
    rig.checker.leader("n0.1", "cron", "a", lease, START)
    rig.checker.leader("n0.1", "cron", "b", None, START + 1.0)  # refused: fine
    taken = attrs.evolve(lease, holder="b", epoch=2, expires_at=START + 20.0)
    rig.checker.leader("n0.1", "cron", "b", taken, START + 10.0)
    assert not rig.violations  # a took too long: expired leases may change hands
    rig.checker.leader("n0.1", "cron", "a", lease, START + 11.0)
    assert rig.violations == ["single_leader"]


async def test_a_late_recovery_is_a_violation_only_when_a_reaper_was_healthy() -> None:
    """An orphan reclaimed past the bound is excused while no node could reap, else flagged."""
    rig = make_rig(nodes=2)
    rig.health.set_reaper(0, True)
    rig.health.set_reaper(1, True)
    lease = await claim_one(rig, ttl=10.0)
    for node in (0, 1):  # nobody could reap around the expiry
        rig.health.down(node, START + 5.0)
        rig.health.up(node, START + 30.0)
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 10.0)], START + 31.0)
    assert not rig.violations
    assert rig.checker.recovery == [31.0]
    assert rig.checker.recovery_late == 1
    rig = make_rig(nodes=2)
    rig.health.set_reaper(1, True)  # node 1 could have reaped all along
    lease = await claim_one(rig, ttl=10.0)
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 10.0)], START + 12.5)
    assert rig.violations == ["recovery_bound"]


def test_health_windows() -> None:
    """A node is healthy over an interval when it runs a reaper and no fault overlaps it."""
    health = Health(1)
    assert not health.healthy(0, 0.0, 1.0)  # no reaper yet
    health.set_reaper(0, True)
    assert health.healthy(0, 0.0, 1.0)
    health.down(0, 5.0)
    health.down(0, 6.0)  # nested
    health.up(0, 7.0, grace=2.0)
    assert not health.healthy(0, 8.0, 8.5)  # still down for the other reason
    health.up(0, 10.0)
    assert not health.healthy(0, 9.0, 11.0)
    assert health.healthy(0, 10.5, 20.0)
    health.down(0, 30.0)
    health.heal_all(40.0, grace=1.0)
    assert not health.healthy(0, 40.5, 50.0)
    assert health.healthy(0, 41.5, 50.0)
    health.up(0, 60.0)  # already healed: no effect
    assert health.any_healthy(41.5, 70.0)


def _reclaimed(job_id: int, expired_at: float) -> Reclaimed:
    return Reclaimed(
        job_id=job_id,
        kind="k",
        queue="q",
        attempt=1,
        lost_by="w1",
        expired_at=expired_at,
        state=JobState.AVAILABLE,
    )


def _started(lease: Lease, at: float) -> JobClaimed:
    job = lease.job
    return JobClaimed(
        at=at,
        job_id=job.id,
        kind=job.kind,
        queue=job.queue,
        attempt=job.attempt,
        worker=f"{lease.owner}/1.1",
        token=lease.token,
        enqueued_at=job.created_at,
        run_at=job.run_at,
    )


async def test_a_handler_started_on_a_live_claim_is_fine() -> None:
    """A start on the job's current, live lease breaks nothing."""
    rig = make_rig()
    lease = await claim_one(rig, ttl=5.0)
    rig.trace.add("n0.1", _started(lease, START))
    assert not rig.violations
    assert rig.checker.starts == 1


async def test_a_handler_started_after_its_lease_expired_breaks_no_stale_start() -> None:
    """A node that starts a handler once its lease expired by the store's clock (a pause
    between its claim and the hand-off) is a violation, even before anyone reclaims it."""
    rig = make_rig()
    lease = await claim_one(rig, ttl=5.0)
    rig.base.advance(6.0)
    rig.trace.add("n0.1", _started(lease, START + 6.0))
    assert rig.violations == ["no_stale_start"]
    assert "expired" in rig.checker.violation.detail  # type: ignore[union-attr]


async def test_a_handler_started_on_a_superseded_claim_breaks_no_stale_start() -> None:
    """Starting a claim the store already reclaimed and gave to someone else is a violation."""
    rig = make_rig()
    lease = await claim_one(rig, ttl=5.0)
    later = START + 6.0
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 5.0)], later)
    rig.checker.claimed("n0.1", [attrs.evolve(lease, token=99, owner="w2")], later)
    rig.trace.add("n0.1", _started(lease, later))
    assert rig.violations == ["no_stale_start"]
    assert "token 99" in rig.checker.violation.detail  # type: ignore[union-attr]


async def test_the_restart_of_an_orphan_is_measured_to_its_handlers_start() -> None:
    """Orphan recovery is measured from the holder's last renewal to the next handler start,
    not only until the job is claimable again."""
    rig = make_rig()
    lease = await claim_one(rig, ttl=5.0)
    reaped_at = START + 6.0
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 5.0)], reaped_at)
    second = attrs.evolve(lease, token=99, owner="w2", expires_at=START + 20.0)
    rig.checker.claimed("n0.1", [second], START + 7.0)
    rig.base.advance(7.5)
    rig.trace.add("n0.1", _started(second, START + 7.5))
    assert not rig.violations
    assert rig.checker.restart == [pytest.approx(7.5)]


def _free_slot(rig: Rig, node: str = "n0.1", *, free: int = 1, gap: float = 1.0) -> None:
    """Node slot 0 (``node``) has ``free`` free slots of queue "q", with a claim gap of ``gap``."""
    stats = SlotStatistics(queue="q", busy=0, free=free, claim_gap=gap)
    rig.checker.slots = lambda: [(0, node, stats)]
    rig.checker.state_of = lambda job_id: JobState.AVAILABLE


async def _reaped_job(rig: Rig) -> tuple[Lease, float]:
    """A job whose lease lapsed and was reaped back to available; returns it and the reap's time."""
    lease = await claim_one(rig, ttl=5.0)
    reaped_at = START + 6.0
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 5.0)], reaped_at)
    return lease, reaped_at


async def test_a_reaped_job_left_waiting_beside_a_free_slot_breaks_running_again() -> None:
    """A reaped job still unstarted a claim gap (plus slack) after its reap, while a node that
    stayed healthy had a free slot of its queue and no claim of its filled its request, is a
    violation; within the bound it is not yet."""
    rig = make_rig()
    _free_slot(rig, gap=1.0)
    _, reaped_at = await _reaped_job(rig)
    assert rig.checker.reruns_checked == 1
    rig.checker.check_reruns(reaped_at + 1.0 + RESTART_SLACK - 0.01)
    rig.checker.claim_made("n0.1", "q", 1, 0, reaped_at + 1.0)  # found nothing: no excuse
    assert not rig.violations
    rig.checker.check_reruns(reaped_at + 1.0 + RESTART_SLACK + 0.01)
    assert rig.violations == ["running_again"]
    assert "free slot" in rig.checker.violation.detail  # type: ignore[union-attr]


def _claimed_again(rig: Rig, lease: Lease, at: float) -> Lease:
    """Node n0.1 claims the reaped job again at ``at`` (a claim of one that got it)."""
    second = attrs.evolve(lease, token=99, owner="w2", expires_at=at + 20.0)
    rig.checker.claim_made("n0.1", "q", 1, 1, at)
    rig.checker.claimed("n0.1", [second], at)
    return second


async def test_a_reaped_job_started_in_time_keeps_running_again() -> None:
    """A reaped job claimed and started within the bound breaks nothing."""
    rig = make_rig()
    _free_slot(rig)
    lease, reaped_at = await _reaped_job(rig)
    second = _claimed_again(rig, lease, reaped_at + 0.5)
    rig.trace.add("n0.1", _started(second, reaped_at + 0.5))
    rig.checker.check_reruns(reaped_at + 60.0)
    assert not rig.violations


async def test_a_reaped_job_claimed_but_not_started_breaks_running_again() -> None:
    """A healthy node that claimed the reaped job must start its handler at once."""
    rig = make_rig()
    _free_slot(rig)
    lease, reaped_at = await _reaped_job(rig)
    _claimed_again(rig, lease, reaped_at + 0.5)
    rig.checker.check_reruns(reaped_at + 5.0)
    assert rig.violations == ["running_again"]
    assert "not started" in rig.checker.violation.detail  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "excuse",
    ["full claim", "node down", "clock stepped", "no free slot", "cancelled", "configured"],
)
async def test_a_reaped_job_may_wait_when_no_free_slot_could_take_it(excuse: str) -> None:
    """Each reason a reaped job may wait longer: the free node's claim filled its request (older
    jobs took the slots), the node was unhealthy or its clock stepped, no slot was free at the
    reap, an operator cancelled the job, or its queue's config (a pause, a cap) was set."""
    rig = make_rig()
    _free_slot(rig, free=0 if excuse == "no free slot" else 1)
    if excuse == "configured":
        rig.checker.configured("q")
    _, reaped_at = await _reaped_job(rig)
    if excuse == "full claim":
        rig.checker.claim_made("n0.1", "q", 1, 1, reaped_at + 0.2)
    elif excuse == "node down":
        rig.health.down(0, reaped_at + 0.3)
    elif excuse == "clock stepped":
        rig.health.stepped(0, reaped_at + 0.3)
    elif excuse == "cancelled":
        rig.checker.state_of = lambda job_id: JobState.CANCELLED
    rig.checker.check_reruns(reaped_at + 30.0)
    assert not rig.violations
    assert rig.checker.reruns_checked == (0 if excuse == "no free slot" else 1)


async def test_a_reaped_job_under_flow_control_may_wait() -> None:
    """A job with a concurrency key (or a partition) may wait for its key: not checked."""
    rig = make_rig()
    _free_slot(rig)
    await rig.transport.enqueue_many([attrs.evolve(job(1), concurrency_key="k1")])
    [lease] = await rig.transport.claim("q", owner="w1", limit=1, ttl=5.0)
    rig.checker.reaped("n0.1", [_reclaimed(lease.job_id, START + 5.0)], START + 6.0)
    rig.checker.check_reruns(START + 60.0)
    assert not rig.violations
    assert rig.checker.reruns_checked == 0


def test_a_node_is_steady_while_healthy_and_its_clock_unstepped() -> None:
    """``steady`` needs no reaper, but no fault window and no clock step in the interval."""
    health = Health(1)
    assert health.steady(0, 0.0, 1.0)
    assert not health.healthy(0, 0.0, 1.0)  # no reaper
    health.stepped(0, 5.0)
    assert not health.steady(0, 4.0, 6.0)
    assert health.steady(0, 5.5, 9.0)
    health.down(0, 10.0)
    assert not health.steady(0, 9.0, 11.0)


async def test_a_claim_for_fewer_jobs_than_free_slots_excuses_nothing() -> None:
    """A node whose claim got all it asked for but asked for fewer jobs than it had slots free
    (a Claimer hoarding its slots) is still held to running_again."""
    rig = make_rig()
    _free_slot(rig, free=2)
    _, reaped_at = await _reaped_job(rig)
    rig.checker.claim_made("n0.1", "q", 1, 1, reaped_at + 0.2)
    rig.checker.check_reruns(reaped_at + 30.0)
    assert rig.violations == ["running_again"]
