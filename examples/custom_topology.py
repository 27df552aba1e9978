"""A composed node: two queues with their own concurrency and stores, plus a user actor.

``builds`` run on the shared SQLite store with 2 Workers; ``cache`` jobs are node-local
(the memory transport) with 4 Workers. An ``Audit`` actor of our own follows the runtime's
typed event stream and counts outcomes. Run it with ``python examples/custom_topology.py``.
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path

import anyio
import attrs

import transports
from actors.core import Actor, ExitReason, Reply
from actors.jobs import (
    App,
    JobContext,
    JobDead,
    JobSucceeded,
    NodeContext,
    RuntimeEvent,
    Topology,
    WorkerConfig,
)

app = App()


@app.task("build.run", queue="builds")
async def run_build(ctx: JobContext, payload: dict[str, str]) -> None:
    await ctx.clock.sleep(0.05)  # compile something


@app.task("cache.warm", queue="cache")
async def warm_cache(ctx: JobContext, payload: dict[str, str]) -> None:
    if payload["key"] == "broken":
        raise KeyError(payload["key"])


@attrs.frozen(kw_only=True)
class Outcomes:
    """Ask the Audit actor for its counts."""

    reply_to: Reply[dict[str, int]]


class Audit(Actor[RuntimeEvent | Outcomes]):
    """Counts job outcomes per kind, from the node's event stream."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.outcomes: collections.Counter[str] = collections.Counter()

    async def on_start(self) -> None:
        self.unsubscribe = self.node.events.subscribe(self.context.self_ref.tell_nowait)

    async def on_stop(self, reason: ExitReason) -> None:
        self.unsubscribe()

    async def receive(self, msg: RuntimeEvent | Outcomes) -> None:
        if isinstance(msg, Outcomes):
            msg.reply_to.send(dict(self.outcomes))
        elif isinstance(msg, JobSucceeded | JobDead):
            self.outcomes[f"{msg.kind} {type(msg).__name__}"] += 1


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        shared = transports.connect(f"sqlite:///{Path(folder) / 'shared.db'}")
        local = transports.connect("memory://")
        async with shared, local:
            for i in range(6):
                await app.enqueue("build.run", {"commit": f"c{i}"}, transport=shared)
            for key in ["users", "orders", "broken"]:
                await app.enqueue("cache.warm", {"key": key}, transport=local, max_attempts=1)
            fast = WorkerConfig(poll_interval=0.05)
            topology = (
                Topology(app, shared)
                .actor("audit", lambda node: Audit(node))  # your actor, fed the event stream
                .queue("builds", concurrency=2, worker=fast)
                .queue("cache", concurrency=4, worker=fast, transport=local)  # node-local jobs
                .reaper(interval=0.5)
            )
            async with topology.run() as node:
                audit = await node.child("audit")
                with anyio.fail_after(10):
                    while sum((outcomes := await audit.ask(_outcomes, timeout=1)).values()) < 9:
                        await anyio.sleep(0.05)
    for line, n in sorted(outcomes.items()):
        print(f"{line}: {n}")


def _outcomes(reply: Reply[dict[str, int]]) -> Outcomes:
    return Outcomes(reply_to=reply)


if __name__ == "__main__":
    anyio.run(main)
