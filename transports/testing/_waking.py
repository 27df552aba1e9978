"""Shared by the wake-up tests of the conformance suite."""

from __future__ import annotations

import anyio

from .._base import Transport


async def spend_wake_ups(transport: Transport, queues: list[str]) -> None:
    """Spend the wake-ups a test's own setup left kept for ``queues`` (and any still on
    their way, such as a NOTIFY), so that a wait started after this needs a new one."""
    for _ in range(20):
        with anyio.move_on_after(0.05) as quiet:
            await transport.wait_for_work(queues)
        if quiet.cancelled_caught:
            return
