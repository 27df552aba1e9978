"""Property: supervisors keep permanent children alive and respect their restart intensity."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core import ActorFailure, RestartIntensityExceeded, Strategy

from ._support import Crash, settle, virtual_system
from .test_supervision import specs

MAX_RESTARTS = 3
WITHIN = 10.0

operations = st.lists(
    st.one_of(
        st.tuples(st.just("crash"), st.integers(min_value=0, max_value=2)),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 3.0, 9.99, 10.0, 25.0])),
    ),
    max_size=25,
)


async def scenario(strategy: Strategy, ops: list[tuple[str, Any]]) -> None:
    failures: list[ActorFailure] = []
    restart_times: list[float] = []  # the model: when the supervisor should have restarted
    async with virtual_system(on_failure=failures.append) as system:
        sup = await system.spawn_supervisor(
            specs([], "a", "b", "c"), strategy=strategy, max_restarts=MAX_RESTARTS, within=WITHIN
        )
        for op, arg in ops:
            if op == "wait":
                await system.clock.sleep(arg)
                continue
            now = system.clock.now()
            child = (await sup.which_children())[arg].ref
            assert child is not None
            await child.tell(Crash())
            await settle(system)
            restart_times.append(now)
            recent = [t for t in restart_times if t > now - WITHIN]
            if len(recent) > MAX_RESTARTS:
                # Too many restarts: it must have escalated rather than restart again.
                assert not sup.is_alive
                assert len(failures) == 1
                assert isinstance(failures[0].exception, RestartIntensityExceeded)
                return
            # It lives, so every permanent child is running again.
            assert sup.is_alive
            children = await sup.which_children()
            assert all(c.ref is not None and c.ref.is_alive for c in children)
        assert failures == []


@settings(max_examples=50, deadline=None)
@given(strategy=st.sampled_from(Strategy), ops=operations)
def test_permanent_children_live_and_intensity_holds(
    strategy: Strategy, ops: list[tuple[str, Any]]
) -> None:
    """A live supervisor never leaves a permanent child dead, and escalates exactly when a
    restart would exceed max_restarts within the window."""
    for backend in ("asyncio", "trio"):
        anyio.run(scenario, strategy, ops, backend=backend)
