"""Simulating your own App from your tests.

``simulate_app`` runs your handlers (and, if you like, your topology) on a simulated faulty
cluster and raises :class:`SimulationFailed`, an ``AssertionError`` carrying the whole report,
the trace's last events and the replay command, when an invariant breaks. It is a plain
function: call it from a synchronous test (it runs its own event loop)::

    from actors.sim import simulate_app

    def test_billing_survives_a_faulty_cluster() -> None:
        report = simulate_app(app, make_job, seed=7, nodes=3, jobs=300, duration="30m")
        assert report.final_states.get("dead", 0) == 0

``make_job(rng, n)`` returns the n-th job to enqueue as an ``EnqueueRequest`` (build it with
``app.request(...)``) and draws only from ``rng``. Handlers must take their time from
``ctx.clock`` (never the event loop's sleep), like every actorq handler.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.jobs import App

from ._cli import config_from_options
from ._cluster import TopologyFactory, TransportFactory
from ._report import SimReport, SweepSummary
from ._simulate import simulate, sweep
from ._workload import JobFactory

__all__ = ["SimulationFailed", "simulate_app", "sweep_app"]


class SimulationFailed(AssertionError):
    """An invariant broke in a simulated run; the message is the report and replay command."""


def simulate_app(
    app: App,
    make_job: JobFactory,
    *,
    seed: int = 0,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
    **options: Any,
) -> SimReport:
    """Simulate ``app`` on a faulty cluster; return the report, or raise on a violation.

    Args:
        app: your App.
        make_job: ``make_job(rng, n)`` returns the n-th job's ``EnqueueRequest``.
        seed: the seed; the same seed replays the same run.
        topology_factory: builds each node's Topology from a ``SimNodeContext`` (default:
            every queue of the App, a Reaper, Cleanup).
        transport_factory: builds each node's transport before faults wrap it.
        **options: any ``SimConfig`` field, durations as seconds or text (``duration="6h"``,
            ``faults="crash,pause"``, ``rates="crash=4"``).

    Raises:
        SimulationFailed: an invariant broke.
    """
    config = config_from_options(seed=seed, **options)
    report = simulate(
        config,
        app=app,
        make_job=make_job,
        topology_factory=topology_factory,
        transport_factory=transport_factory,
    )
    if report.violation is not None:
        raise SimulationFailed(report.render())
    return report


def sweep_app(
    app: App,
    make_job: JobFactory,
    seeds: Iterable[int],
    *,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
    **options: Any,
) -> SweepSummary:
    """Simulate ``app`` once per seed; return the summary, or raise at the first violation.

    Arguments are as for :func:`simulate_app`.

    Raises:
        SimulationFailed: an invariant broke (the message names the seed and its replay).
    """
    config = config_from_options(**options)
    failed: list[SimReport] = []
    summary = sweep(
        config,
        seeds,
        app=app,
        make_job=make_job,
        topology_factory=topology_factory,
        transport_factory=transport_factory,
        stop_at_first=True,
        on_report=lambda report: failed.append(report) if not report.passed else None,
    )
    if failed:
        raise SimulationFailed(failed[0].render())
    return summary
