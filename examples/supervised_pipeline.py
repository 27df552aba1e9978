"""A producer → transformer → sink pipeline under a one_for_one supervisor.

The transformer crashes on a poisoned item; the supervisor restarts it and the pipeline goes on.
Run it with ``python examples/supervised_pipeline.py``.
"""

from __future__ import annotations

import anyio
import attrs

from actors.core import Actor, ChildSpec, ExitReason, SupervisorRef, open_actor_system


@attrs.frozen(kw_only=True)
class Item:
    """One value flowing down the pipeline (producer → transformer → sink)."""

    #: The payload.
    value: int


class Sink(Actor[Item]):
    """Prints what reaches the end of the pipeline."""

    async def receive(self, msg: Item) -> None:
        print(f"  sink        got {msg.value}")


class Transformer(Actor[Item]):
    """Squares items and passes them on; chokes on 13."""

    def __init__(self, supervisor: SupervisorRef) -> None:
        self.supervisor = supervisor

    async def on_start(self) -> None:
        print("  transformer started")

    async def receive(self, msg: Item) -> None:
        if msg.value == 13:
            raise ValueError("13 is unlucky")
        sink = await self.supervisor.child_ref("sink")
        await sink.tell(Item(value=msg.value**2))

    async def on_stop(self, reason: ExitReason) -> None:
        print(f"  transformer stopped: {reason}")


class Producer(Actor[Item]):
    """Emits 0..19, one every 50 ms, always to the transformer that is running now."""

    def __init__(self, supervisor: SupervisorRef) -> None:
        self.supervisor = supervisor

    async def on_start(self) -> None:
        self.context.self_ref.tell_nowait(Item(value=0))

    async def receive(self, msg: Item) -> None:
        transformer = await self.supervisor.child_ref("transformer")
        await transformer.tell(msg)
        if msg.value < 19:
            await self.context.clock.sleep(0.05)
            await self.context.self_ref.tell(Item(value=msg.value + 1))


async def main() -> None:
    async with open_actor_system(name="pipeline") as system:
        supervisor = await system.spawn_supervisor(name="pipeline", max_restarts=3, within=5)
        await supervisor.start_child(ChildSpec(id="sink", factory=Sink))
        await supervisor.start_child(
            ChildSpec(id="transformer", factory=lambda: Transformer(supervisor))
        )
        await supervisor.start_child(ChildSpec(id="producer", factory=lambda: Producer(supervisor)))
        await system.clock.sleep(1.2)
        for child in await supervisor.which_children():
            print(f"{child.id:12} restarts={child.restarts}")
    print("pipeline shut down cleanly")


if __name__ == "__main__":
    anyio.run(main)
