"""Users simulate their own App, handlers and topology, from their own tests."""

from __future__ import annotations

from random import Random
from typing import Any

import anyio
import pytest

from actors.jobs import App, JobContext, Topology
from actors.sim import (
    SimNodeContext,
    SimulationFailed,
    simulate_app,
    sweep_app,
)
from transports import EnqueueRequest


def _app(calls: dict[int, int]) -> App:
    app = App()

    @app.task("greet", queue="mail", timeout=30.0, max_attempts=3)
    async def greet(ctx: JobContext, payload: dict[str, Any]) -> None:
        calls[payload["n"]] = calls.get(payload["n"], 0) + 1
        await ctx.clock.sleep(payload["seconds"])

    return app


def _make_job(rng: Random, n: int) -> EnqueueRequest:
    return EnqueueRequest(
        kind="greet", queue="mail", payload={"n": n, "seconds": rng.uniform(0.1, 3.0)}
    )


def test_simulate_app_runs_the_users_handlers() -> None:
    """Every job of the user's App runs at least once, through faults, and ends final."""
    calls: dict[int, int] = {}
    report = simulate_app(_app(calls), _make_job, seed=4, nodes=2, jobs=50, duration="5m")
    assert report.passed
    assert set(calls) == set(range(50))  # every job ran (some twice: at least once)
    assert sum(report.final_states.values()) == 50
    assert report.cron_fires == 0  # the built-in cron belongs to the built-in workload


def test_a_users_topology_and_actor_run_on_every_node() -> None:
    """The topology factory builds each incarnation's node, with the user's own actors."""
    from actors.core import Actor

    started: list[str] = []

    class Hello(Actor[Any]):
        async def on_start(self) -> None:
            started.append(self.context.name)

    def topology(ctx: SimNodeContext) -> Topology:
        return (
            Topology(ctx.app, ctx.transport, node_id=ctx.node_id, clock=ctx.clock, rng=ctx.rng)
            .actor("hello", lambda _node: Hello())
            .queue("mail", concurrency=1, worker=ctx.worker)
            .reaper(interval=ctx.config.reaper_interval)
        )

    report = simulate_app(
        _app({}), _make_job, topology_factory=topology, seed=1, nodes=2, jobs=20, duration="10m"
    )
    assert report.passed
    assert len(started) == 2 + report.restarts  # every incarnation, restarts included


def test_a_handler_that_never_ends_fails_the_simulation() -> None:
    """A handler with no timeout that can wait forever leaves a job running: the simulation
    fails, naming all_final_after_drain and the Python call that replays it."""
    app = App()

    @app.task("stuck", timeout=None)
    async def stuck(ctx: JobContext, payload: Any) -> None:
        if ctx.job_id == 3:
            await anyio.Event().wait()  # waits for a message that never comes

    def make_job(rng: Random, n: int) -> EnqueueRequest:
        return app.request("stuck", None)

    with pytest.raises(SimulationFailed) as failure:
        simulate_app(app, make_job, seed=1, nodes=1, jobs=5, faults="none", tail="5m")
    text = str(failure.value)
    assert "VIOLATION of all_final_after_drain" in text
    assert "job 3 running" in text
    assert "simulate_app(app, make_job, seed=1, nodes=1" in text


def test_sweep_app_runs_each_seed() -> None:
    """sweep_app runs the App once per seed and returns the summary."""
    summary = sweep_app(_app({}), _make_job, range(1, 4), nodes=2, jobs=15, duration="3m")
    assert [run.seed for run in summary.runs] == [1, 2, 3]
    assert summary.passed


def test_hangs_reach_user_handlers_with_a_timeout() -> None:
    """With the hang fault on, some runs of a user's handler hang until their timeout; the
    jobs still end final."""
    report = simulate_app(
        _app({}),
        _make_job,
        seed=2,
        nodes=2,
        jobs=60,
        duration="10m",
        faults="hang",
        rates="hang=0.3",
    )
    assert report.faults["hang"] > 0
    assert report.passed
