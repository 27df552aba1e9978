"""Benchmarks of actors.core: tell throughput, ask round trips, restart latency.

Run ``python -c 'import bench._core as b; b.run(print)'``. Prints a table; asserts nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from actors.core import Actor, ChildSpec, Reply, open_actor_system

N_TELL = 200_000
N_ASK = 20_000
N_RESTART = 500


@attrs.frozen(kw_only=True)
class Tick:
    """A tiny message."""

    #: Payload.
    n: int


@attrs.frozen(kw_only=True)
class Ping:
    """A request answered with its n."""

    #: Payload.
    n: int
    #: Where to answer.
    reply_to: Reply[int]


class Sink(Actor[Tick]):
    def __init__(self, total: int, done: anyio.Event) -> None:
        self.left = total
        self.done = done

    async def receive(self, msg: Tick) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()


class Ponger(Actor[Ping]):
    async def receive(self, msg: Ping) -> None:
        msg.reply_to.send(msg.n)


class Fragile(Actor[Tick]):
    def __init__(self, started: list[float]) -> None:
        self.started = started

    async def on_start(self) -> None:
        self.started.append(time.perf_counter())

    async def receive(self, msg: Tick) -> None:
        raise RuntimeError("crash on purpose")


async def handler(msg: Tick) -> None:
    """What the baseline consumer does with each message: nothing, asynchronously."""


async def raw_stream_baseline(n: int) -> float:
    """Messages/s through a bare anyio memory stream with ``send_nowait`` and a draining task."""
    tx, rx = anyio.create_memory_object_stream[Tick](1000)
    msg = Tick(n=0)
    async with tx, rx, anyio.create_task_group() as tg:

        async def drain() -> None:
            # Drain like an actor does: without waiting while items are buffered, and one
            # awaited handler call per item (an actor's receive), so the ratio shows our cost.
            while True:
                try:
                    await handler(rx.receive_nowait())
                except anyio.WouldBlock:
                    try:
                        await handler(await rx.receive())
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return

        tg.start_soon(drain)
        start = time.perf_counter()
        for _ in range(n):
            try:
                tx.send_nowait(msg)
            except anyio.WouldBlock:
                await tx.send(msg)
        await tx.aclose()
    return n / (time.perf_counter() - start)


async def tell_throughput(n: int, *, nowait: bool) -> float:
    """Messages/s from one sender to one actor, until the actor has handled them all."""
    done = anyio.Event()
    msg = Tick(n=0)
    async with open_actor_system() as system:
        ref = await system.spawn(Sink(n, done))
        start = time.perf_counter()
        if nowait:
            for _ in range(n):
                try:
                    ref.tell_nowait(msg)
                except anyio.WouldBlock:
                    await ref.tell(msg)
        else:
            for _ in range(n):
                await ref.tell(msg)
        await done.wait()
        return n / (time.perf_counter() - start)


async def ask_round_trip(n: int) -> float:
    """Seconds per ask round trip."""
    async with open_actor_system() as system:
        ref = await system.spawn(Ponger())
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(lambda r, i=i: Ping(n=i, reply_to=r), timeout=10)
        return (time.perf_counter() - start) / n


async def restart_latency(n: int) -> list[float]:
    """Seconds from a crashing tell to the replacement's on_start, under one_for_one."""
    started: list[float] = []
    async with open_actor_system() as system:
        sup = await system.spawn_supervisor(
            [ChildSpec(id="fragile", factory=lambda: Fragile(started))],
            max_restarts=n + 1,
            within=3600,
        )
        latencies = []
        for _ in range(n):
            ref = await sup.child_ref("fragile")
            count = len(started)
            t0 = time.perf_counter()
            ref.tell_nowait(Tick(n=0))
            while len(started) == count:
                await anyio.lowlevel.checkpoint()
            latencies.append(started[-1] - t0)
        return latencies


async def measure() -> dict[str, Any]:
    raw = await raw_stream_baseline(N_TELL)
    tell_nowait = await tell_throughput(N_TELL, nowait=True)
    tell = await tell_throughput(N_TELL, nowait=False)
    ask = await ask_round_trip(N_ASK)
    restarts = sorted(await restart_latency(N_RESTART))
    return {
        "raw": raw,
        "tell_nowait": tell_nowait,
        "tell": tell,
        "ask_us": ask * 1e6,
        "restart_p50_ms": statistics.median(restarts) * 1e3,
        "restart_p99_ms": restarts[int(len(restarts) * 0.99) - 1] * 1e3,
    }


def run(print_fn: Callable[[str], object] = print) -> None:
    """Measure on asyncio and trio and print one table."""
    print_fn(
        f"{'backend':8} {'raw send/s':>11} {'tell_nowait/s':>14} {'ratio':>6} {'tell/s':>10}"
        f" {'ratio':>6} {'ask µs':>7} {'ask/s':>8} {'restart p50':>12} {'p99':>8}"
    )
    for backend in ("asyncio", "trio"):
        r = anyio.run(measure, backend=backend)
        print_fn(
            f"{backend:8} {r['raw']:>11,.0f} {r['tell_nowait']:>14,.0f}"
            f" {r['tell_nowait'] / r['raw']:>6.0%} {r['tell']:>10,.0f} {r['tell'] / r['raw']:>6.0%}"
            f" {r['ask_us']:>7.1f} {1e6 / r['ask_us']:>8,.0f}"
            f" {r['restart_p50_ms']:>9.3f} ms {r['restart_p99_ms']:>5.3f} ms"
        )


if __name__ == "__main__":
    run(print)
