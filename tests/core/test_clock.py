"""VirtualClock and RealClock."""

from __future__ import annotations

import time

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from actors.core import RealClock, VirtualClock

pytestmark = pytest.mark.anyio


async def test_advance_wakes_in_deadline_order_then_fifo() -> None:
    """advance() wakes every due sleeper, earliest deadline first, ties in sleep order."""
    clock = VirtualClock()
    woke: list[str] = []

    async def sleeper(
        label: str, deadline: float, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        task_status.started()  # tg.start() then fixes the order in which sleepers register
        await clock.sleep_until(deadline)
        woke.append(label)

    async with anyio.create_task_group() as tg:
        for label, deadline in [("c", 3.0), ("a1", 1.0), ("b", 2.0), ("a2", 1.0), ("late", 9.0)]:
            await tg.start(sleeper, label, deadline)
        assert clock.next_deadline() == 1.0
        clock.advance(5.0)
        await anyio.wait_all_tasks_blocked()
        assert woke == ["a1", "a2", "b", "c"]
        assert clock.now() == 5.0
        assert clock.next_deadline() == 9.0
        clock.advance_to(9.0)
    assert woke[-1] == "late"
    assert clock.next_deadline() is None


async def test_sleep_until_past_deadline_checkpoints() -> None:
    """A deadline already passed returns at once but is still a cancellation point."""
    clock = VirtualClock(start=10.0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep_until(5.0)
        pytest.fail("sleep_until did not checkpoint")  # pragma: no cover
    assert scope.cancelled_caught
    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep(0)
    assert scope.cancelled_caught


async def test_cancelled_sleeper_is_forgotten() -> None:
    """A cancelled sleep leaves no deadline behind."""
    clock = VirtualClock()
    with anyio.move_on_after(0.01):
        await clock.sleep(100)
    assert clock.next_deadline() is None
    assert clock.statistics().sleeping == 0


async def test_clock_cannot_go_backwards() -> None:
    clock = VirtualClock(start=5.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_to(4.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_move_on_after_follows_virtual_time() -> None:
    """A clock timeout fires when virtual time passes its deadline, not before."""
    clock = VirtualClock()
    async with clock.autojump():
        with clock.move_on_after(30) as scope:
            await clock.sleep(60)
        assert scope.cancelled_caught
        assert clock.now() == 30.0
        with clock.move_on_after(30) as scope:
            await clock.sleep(10)
        assert not scope.cancelled_caught
        assert clock.now() == 40.0
        with clock.move_on_after(0) as scope:
            await clock.sleep(1)
        assert scope.cancelled_caught


async def test_autojump_runs_hours_of_virtual_time_instantly() -> None:
    """Autojump moves through a day of virtual sleeps in well under a second of real time."""
    clock = VirtualClock()
    ticks: list[float] = []

    async def ticker(period: float) -> None:
        for _ in range(100):
            await clock.sleep(period)
            ticks.append(clock.now())

    started = time.perf_counter()
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(ticker, 600.0)
        tg.start_soon(ticker, 864.0)
    assert time.perf_counter() - started < 2.0
    assert clock.now() == pytest.approx(86_400.0)
    assert ticks == sorted(ticks)
    assert clock.statistics().jumps >= 100


async def test_wake_order_is_deterministic() -> None:
    """Two runs of the same program wake sleepers in the same order (on trio too)."""

    async def program() -> list[tuple[int, float]]:
        clock = VirtualClock()
        trace: list[tuple[int, float]] = []

        async def worker(i: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
            task_status.started()
            for step in range(5):
                await clock.sleep((i * 7 + step * 3) % 4)
                trace.append((i, clock.now()))

        async with clock.autojump(), anyio.create_task_group() as tg:
            for i in range(8):
                await tg.start(worker, i)
        return trace

    first = await program()
    for _ in range(5):
        assert await program() == first


async def test_autojump_waits_for_new_sleepers() -> None:
    """With nobody sleeping, autojump idles until a sleeper appears."""
    clock = VirtualClock()
    async with clock.autojump():
        await anyio.wait_all_tasks_blocked()
        await clock.sleep(5)
        assert clock.now() == 5.0


@pytest.mark.parametrize("held", [True, False])
async def test_hold_keeps_autojump_from_moving_time_during_a_real_wait(held: bool) -> None:
    """A wait on a thread counts as blocked: autojump jumps through it unless the clock is
    held, and jumps again as soon as the (nested) holds are released."""
    clock = VirtualClock()
    woke_at: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(10)
        woke_at.append(clock.now())

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        while not clock.statistics().sleeping:
            await anyio.lowlevel.checkpoint()
        if held:
            with clock.hold(), clock.hold():
                await anyio.to_thread.run_sync(time.sleep, 0.05)
                assert clock.now() == 0.0
        else:
            await anyio.to_thread.run_sync(time.sleep, 0.05)
            assert clock.now() == 10.0
    assert woke_at == [10.0]


async def test_real_clock() -> None:
    """RealClock reads wall time and sleeps for real (briefly here)."""
    clock = RealClock()
    before = time.time()
    assert abs(clock.now() - before) < 5
    await clock.sleep(0)
    with clock.move_on_after(0) as scope:
        await clock.sleep(10)
    assert scope.cancelled_caught
    await clock.sleep_until(clock.now() - 1)
    assert clock.statistics().sleeping == 0
