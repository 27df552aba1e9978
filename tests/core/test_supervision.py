"""Supervisors: strategies, restart policies, intensity, ordered shutdown, dynamic children."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core import (
    ActorCrashed,
    ActorFailure,
    ChildAlreadyExists,
    ChildNotFound,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorRef,
)

from ._support import Crash, Nap, Note, recorder, settle, virtual_system

pytestmark = pytest.mark.anyio


def specs(log: list[Any], *ids: str, **kwargs: Any) -> list[ChildSpec]:
    return [ChildSpec(id=i, factory=recorder(log, i), **kwargs) for i in ids]


def events(log: list[Any], *, after: int = 0) -> list[tuple[str, object]]:
    return [entry for entry in log[after:] if entry[1] == "start" or isinstance(entry[1], tuple)]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.ONE_FOR_ONE, [("b", "start")]),
        (
            Strategy.ONE_FOR_ALL,
            [
                ("c", ("stop", "shutdown")),
                ("a", ("stop", "shutdown")),
                ("a", "start"),
                ("b", "start"),
                ("c", "start"),
            ],
        ),
        (
            Strategy.REST_FOR_ONE,
            [("c", ("stop", "shutdown")), ("b", "start"), ("c", "start")],
        ),
    ],
)
async def test_strategies_restart_the_right_children_in_order(
    strategy: Strategy, expected: list[tuple[str, object]]
) -> None:
    log: list[Any] = []
    async with virtual_system() as system:
        sup = await system.spawn_supervisor(specs(log, "a", "b", "c"), strategy=strategy)
        assert events(log) == [("a", "start"), ("b", "start"), ("c", "start")]
        b = await sup.child_ref("b")
        mark = len(log)
        await b.tell(Crash())
        await settle(system)
        assert events(log, after=mark) == [("b", ("stop", "crashed")), *expected]
        children = await sup.which_children()
        assert [c.id for c in children] == ["a", "b", "c"]
        assert all(c.ref is not None and c.ref.is_alive for c in children)
        assert children[1].restarts == 1


async def test_shutdown_is_in_reverse_start_order_even_after_restarts() -> None:
    log: list[Any] = []
    async with virtual_system() as system:
        sup = await system.spawn_supervisor(specs(log, "a", "b", "c"))
        await (await sup.child_ref("a")).tell(Crash())
        await settle(system)
        mark = len(log)
    stops = [label for label, event in log[mark:] if event == ("stop", "shutdown")]
    assert stops == ["c", "b", "a"]


async def test_intensity_exceeded_escalates_to_the_system() -> None:
    """More than max_restarts restarts within the window fail the supervisor and its parent."""
    log: list[Any] = []
    sups: list[SupervisorRef] = []

    async def body() -> None:
        async with virtual_system() as system:
            sup = await system.spawn_supervisor(specs(log, "a", "b"), max_restarts=2, within=10)
            sups.append(sup)
            for _ in range(3):
                await (await sup.child_ref("a")).tell(Crash())
                await system.clock.sleep(1)
            pytest.fail("the supervisor did not escalate")  # pragma: no cover

    with pytest.raises(ActorCrashed) as excinfo:
        await body()
    (sup,) = sups
    assert isinstance(excinfo.value.__cause__, RestartIntensityExceeded)
    assert not sup.is_alive
    # All children stopped, in reverse order, before the supervisor went down.
    assert [label for label, event in log if event == ("stop", "shutdown")] == ["b"]
    assert log[-1] == ("b", ("stop", "shutdown"))


async def test_restarts_spaced_beyond_the_window_do_not_escalate() -> None:
    log: list[Any] = []
    failures: list[ActorFailure] = []
    async with virtual_system(on_failure=failures.append) as system:
        sup = await system.spawn_supervisor(specs(log, "a"), max_restarts=2, within=10)
        for _ in range(10):
            await (await sup.child_ref("a")).tell(Crash())
            await system.clock.sleep(6)
        assert sup.is_alive
        assert (await sup.which_children())[0].restarts == 10
    assert failures == []


async def test_nested_supervisor_escalates_to_its_parent() -> None:
    log: list[Any] = []
    failures: list[ActorFailure] = []
    async with virtual_system(on_failure=failures.append) as system:
        inner = ChildSpec(
            id="inner",
            factory=lambda: Supervisor(specs(log, "x"), max_restarts=0, within=5),
            shutdown=float("inf"),
        )
        outer = await system.spawn_supervisor([inner], max_restarts=5, within=5)
        inner_ref = SupervisorRef(await outer.child_ref("inner"))
        await (await inner_ref.child_ref("x")).tell(Crash())
        await settle(system)
        # The outer supervisor restarted the inner one, which started a fresh x.
        assert not inner_ref.is_alive
        new_inner = SupervisorRef(await outer.child_ref("inner"))
        assert new_inner.is_alive
        assert (await new_inner.child_ref("x")).is_alive
    assert failures == []
    assert [e for e in log if e[1] == "start"] == [("x", "start"), ("x", "start")]


@pytest.mark.parametrize(
    ("restart", "exit_how", "restarted"),
    [
        (Restart.PERMANENT, "crash", True),
        (Restart.PERMANENT, "stop", True),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TRANSIENT, "stop", False),
        (Restart.TEMPORARY, "crash", False),
        (Restart.TEMPORARY, "stop", False),
    ],
)
async def test_restart_policies(restart: Restart, exit_how: str, restarted: bool) -> None:
    log: list[Any] = []
    async with virtual_system() as system:
        sup = await system.spawn_supervisor(specs(log, "a", restart=restart))
        a = await sup.child_ref("a")
        if exit_how == "crash":
            await a.tell(Crash())
        else:
            a._cell.actor.context.stop()
        await settle(system)
        assert [e for e in log if e[1] == "start"] == [("a", "start")] * (1 + restarted)
        children = await sup.which_children()
        if restart is Restart.TEMPORARY:
            assert children == []
        else:
            assert (children[0].ref is not None) == restarted


async def test_child_ignoring_its_shutdown_timeout_is_cancelled() -> None:
    """Ordered shutdown still completes: the stubborn child is killed after its timeout."""
    log: list[Any] = []
    async with virtual_system() as system:
        sup = await system.spawn_supervisor(
            [
                *specs(log, "a"),
                ChildSpec(id="stubborn", factory=recorder(log, "stubborn"), shutdown=2.0),
                *specs(log, "c"),
            ]
        )
        await (await sup.child_ref("stubborn")).tell(Nap(seconds=10**6))
        await settle(system)
        start = system.clock.now()
        await system.shutdown(timeout=60)
        assert system.clock.now() - start == pytest.approx(2.0, abs=0.01)
    stops = [(label, event) for label, event in log if isinstance(event, tuple)]
    assert stops == [
        ("c", ("stop", "shutdown")),
        ("stubborn", ("stop", "killed")),
        ("a", ("stop", "shutdown")),
    ]


async def test_dynamic_children_from_outside_and_inside() -> None:
    log: list[Any] = []

    class Growing(Supervisor):
        async def on_start(self) -> None:
            await super().on_start()
            me = SupervisorRef(self.context.self_ref)
            await me.start_child(specs(log, "inside")[0])  # from its own task: no deadlock
            assert [c.id for c in await me.which_children()] == ["inside"]

    async with virtual_system() as system:
        sup = SupervisorRef(await system.spawn(Growing()))
        ref = await sup.start_child(specs(log, "outside")[0])
        await ref.tell(Note(value="hi"))
        with pytest.raises(ChildAlreadyExists):
            await sup.start_child(specs(log, "outside")[0])
        assert [c.id for c in await sup.which_children()] == ["inside", "outside"]
        await sup.terminate_child("inside")
        with pytest.raises(ChildNotFound):
            await sup.terminate_child("inside")
        with pytest.raises(ChildNotFound):
            await sup.child_ref("inside")
        assert [c.id for c in await sup.which_children()] == ["outside"]
        await settle(system)
    assert ("outside", "hi") in log
    assert ("inside", ("stop", "shutdown")) in log
