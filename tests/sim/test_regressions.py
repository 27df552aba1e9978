"""Runs that once exposed a runtime bug keep passing.

A seed replays exactly only while the code it runs is unchanged, so after changes to the
runtime these runs may no longer reach the same corner; they stay as cheap canaries.
"""

from __future__ import annotations

from actors.sim import SimConfig, simulate


def test_a_stale_lost_lease_notice_spares_a_newer_claim() -> None:
    """Seed 38 once left a job running forever: a worker snoozed it, a renewal of the old
    token already in flight came back lost, the same worker claimed the job again, and the
    late notice about the old token cancelled the new claim (the Worker skipped the job while
    its Heartbeat kept renewing it). Lost-lease notices now name the token they mean."""
    report = simulate(
        SimConfig(seed=38, nodes=2, workers=2, jobs=60, duration=600.0, lease_ttl=10.0)
    )
    assert report.passed, report.render()
