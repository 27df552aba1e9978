"""pytest fixtures for testing an actorq App. Opt in from your ``conftest.py``::

    pytest_plugins = ["actors.testing.pytest_plugin"]

    @pytest.fixture
    def actorq_app() -> App:
        return build_app()  # your App (a fresh one per test keeps tests apart)

Then:

* ``job_tester``: an open :class:`~actors.testing.JobTester` for ``actorq_app``. It is an async
  fixture: use it from ``@pytest.mark.anyio`` tests (anyio's plugin, asyncio or trio) or from
  ``@pytest.mark.trio`` tests (pytest-trio); the fixture follows the test's loop.
* ``actorq_sim``: an :class:`AppSimulation` for ``actorq_app``; call it from a *synchronous*
  test (the simulator runs its own event loop). A broken invariant fails the test with the
  simulator's report, its replay call, and the pytest command replaying the seed.

The plugin adds one option, ``--actorq-seed N``: every ``actorq_sim`` run of the session uses
seed N instead of the seeds the tests give (how a failure is replayed).
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from actors.jobs import App, Topology
from actors.sim import (
    JobFactory,
    SimNodeContext,
    SimReport,
    SimulationFailed,
    TopologyFactory,
    TransportFactory,
    default_topology,
    simulate_app,
)

from ._tester import JobTester

__all__ = ["AppSimulation", "actorq_app", "actorq_sim", "job_tester", "pytest_addoption"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--actorq-seed``."""
    group = parser.getgroup("actorq")
    group.addoption(
        "--actorq-seed",
        type=int,
        default=None,
        metavar="N",
        help="run every actorq_sim simulation with this seed (replays a failure)",
    )


class AppSimulation:
    """Runs the App under test on the simulator (the ``actorq_sim`` fixture).

    While a simulation runs, ``app.transport`` is the transport of the simulated node built
    last, so handlers that enqueue follow-up jobs with ``app.enqueue()`` reach the simulated
    store (through that node's faults); the App's own transport is put back afterwards.

    Args:
        app: the App to simulate.
        nodeid: the test's pytest node id, for the replay command.
        forced_seed: ``--actorq-seed``, which overrides every seed given.
    """

    def __init__(self, app: App, *, nodeid: str, forced_seed: int | None = None) -> None:
        self.app = app
        self.nodeid = nodeid
        self.forced_seed = forced_seed
        self.reports: list[SimReport] = []  # every run so far, in order

    def __call__(
        self,
        make_job: JobFactory,
        *,
        seed: int = 0,
        topology_factory: TopologyFactory | None = None,
        transport_factory: TransportFactory | None = None,
        **options: Any,
    ) -> SimReport:
        """Simulate the App with ``seed``; fail the test if an invariant breaks.

        Args:
            make_job: ``make_job(rng, n)`` returns the n-th job's ``EnqueueRequest``.
            seed: the seed (``--actorq-seed`` overrides it).
            topology_factory: each node's Topology (default: every queue of the App).
            transport_factory: each node's transport before faults wrap it.
            **options: any ``SimConfig`` field (``nodes=3``, ``duration="30m"``,
                ``faults="crash,pause"``), as :func:`actors.sim.simulate_app` takes them.

        Returns:
            the report of a run that kept every invariant.
        """
        if self.forced_seed is not None:
            seed = self.forced_seed
        app = self.app
        build = topology_factory or default_topology

        def topology(ctx: SimNodeContext) -> Topology:
            # A handler enqueueing a follow-up job does so through app.enqueue(), which
            # writes to app.transport: point it at the store, through the node built last.
            app.transport = ctx.transport
            return build(ctx)

        own = app.transport
        try:
            report = simulate_app(
                app,
                make_job,
                seed=seed,
                topology_factory=topology,
                transport_factory=transport_factory,
                **options,
            )
        except SimulationFailed as failure:
            pytest.fail(self.failure_message(failure, seed), pytrace=False)
        finally:
            app.transport = own
        self.reports.append(report)
        return report

    def sweep(
        self,
        make_job: JobFactory,
        seeds: Iterable[int],
        *,
        topology_factory: TopologyFactory | None = None,
        transport_factory: TransportFactory | None = None,
        **options: Any,
    ) -> list[SimReport]:
        """Simulate once per seed, failing the test at the first broken invariant.

        With ``--actorq-seed`` only that seed runs.
        """
        chosen = [self.forced_seed] if self.forced_seed is not None else list(seeds)
        return [
            self(
                make_job,
                seed=seed,
                topology_factory=topology_factory,
                transport_factory=transport_factory,
                **options,
            )
            for seed in chosen
        ]

    def failure_message(self, failure: SimulationFailed, seed: int) -> str:
        """The simulator's report, then the pytest command replaying this seed."""
        command = shlex.join(["pytest", self.nodeid, f"--actorq-seed={seed}"])
        return f"{failure}\n\nreplay this test with: {command}"


@pytest.fixture
def actorq_app() -> App:
    """Your App: override this fixture in your ``conftest.py``."""
    raise pytest.UsageError(
        "the actorq fixtures need your App: define an `actorq_app` fixture returning it"
    )


@pytest.fixture
async def job_tester(actorq_app: App) -> AsyncIterator[JobTester]:
    """An open JobTester for ``actorq_app`` (a fresh store and clock per test)."""
    async with JobTester(actorq_app) as tester:
        yield tester


@pytest.fixture
def actorq_sim(actorq_app: App, request: pytest.FixtureRequest) -> AppSimulation:
    """Simulate ``actorq_app`` on a faulty cluster: ``actorq_sim(make_job, seed=7, ...)``."""
    # The default covers a run where the plugin's fixtures were imported, not the plugin
    # registered (so the option does not exist).
    forced: int | None = request.config.getoption("actorq_seed", default=None)
    return AppSimulation(actorq_app, nodeid=request.node.nodeid, forced_seed=forced)
