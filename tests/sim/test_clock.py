"""A node's clock: the store's time with a skew, that stops while paused and dies at a crash."""

from __future__ import annotations

import anyio
import pytest

from actors.core import VirtualClock
from actors.sim.lowlevel import NodeClock

pytestmark = pytest.mark.anyio


async def test_skew_shifts_now_but_not_the_length_of_sleeps() -> None:
    """now() is the store's time plus the offset; a sleep lasts as long on both clocks."""
    base = VirtualClock(100.0)
    clock = NodeClock(base, offset=-7.5)
    assert clock.now() == 92.5
    async with base.autojump():
        await clock.sleep(5.0)
        assert base.now() == 105.0
        await clock.sleep_until(clock.now() + 1.0)
        assert base.now() == 106.0
        with clock.move_on_after(2.0) as scope:
            await anyio.Event().wait()
        assert scope.cancelled_caught
        assert base.now() == 108.0
    stats = clock.statistics()
    assert stats.now == clock.now()


async def test_a_clock_step_leaves_pending_sleeps_alone() -> None:
    """Changing the offset moves now() at once; a sleep already started keeps its length."""
    base = VirtualClock(0.0)
    clock = NodeClock(base)
    async with base.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 10.0)
        await base.sleep(1.0)
        clock.offset = 30.0
        assert clock.now() == 31.0
    assert base.now() == 10.0


async def test_sleepers_of_a_paused_node_wake_only_on_resume() -> None:
    """A sleep whose time passes during a pause returns at resume, late."""
    base = VirtualClock(0.0)
    clock = NodeClock(base)
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5.0)
        woke.append(base.now())

    async with base.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await base.sleep(1.0)
        clock.pause()
        assert clock.paused
        await base.sleep(20.0)
        assert not woke
        clock.resume()
    assert woke == [21.0]
    assert not clock.paused


async def test_a_dead_clock_never_waits() -> None:
    """Once killed, sleeps return at once and timeouts fire on entry; a pause is lifted."""
    base = VirtualClock(0.0)
    clock = NodeClock(base)
    clock.pause()
    clock.kill()
    assert clock.dead
    assert not clock.paused
    await clock.sleep(1000.0)
    with clock.move_on_after(1000.0) as scope:
        await anyio.Event().wait()
    assert scope.cancelled_caught
    await clock.wait_running()
    assert base.now() == 0.0
    clock.pause()  # a dead node cannot be paused
    assert not clock.paused
