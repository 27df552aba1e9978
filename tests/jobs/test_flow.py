"""Flow control in the runtime: concurrency keys from the App, limits held by running nodes."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors.core import VirtualClock
from actors.jobs import App, ConfigInvalid, JobContext, PayloadInvalid
from transports import InvalidRequest, JobState, Transport

from ._support import START, start_node, topology, wait_final

pytestmark = pytest.mark.anyio


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None


async def test_the_key_is_the_tasks_filled_in_or_the_callers(transport: Transport) -> None:
    """A static key, a template filled in from the payload, and a per-call key reach storage."""
    app = App(transport)
    app.register("charge", _noop, concurrency_key="stripe")
    app.register("sync", _noop, concurrency_key="tenant:{tenant_id}/{region}")
    app.register("plain", _noop)
    charge = await app.enqueue("charge", {"amount": 5})
    sync = await app.enqueue("sync", {"tenant_id": 42, "region": "eu"})
    override = await app.enqueue("sync", {"tenant_id": 1, "region": "us"}, concurrency_key="x")
    plain = await app.enqueue("plain", None)
    keys = [(await transport.get(r.job_id)).concurrency_key for r in (charge, sync, override)]
    assert keys == ["stripe", "tenant:42/eu", "x"]
    assert (await transport.get(plain.job_id)).concurrency_key is None


@pytest.mark.parametrize(
    "template", ["", "tenant:{}", "{0}", "{a.b}", "{a[0]}", "{a!r}", "{a:>5}", "{a", "nl\n", 5]
)
def test_a_bad_key_template_is_refused_at_registration(template: object) -> None:
    """A template that is not a label of plain payload fields raises ConfigInvalid."""
    app = App()
    with pytest.raises(ConfigInvalid, match="concurrency_key"):
        app.register("k", _noop, concurrency_key=template)  # type: ignore[arg-type]
    assert "k" not in app.tasks


@pytest.mark.parametrize(
    "payload", [None, [1], {"other": 1}, {"tenant_id": None}, {"tenant_id": [1]}]
)
async def test_a_payload_that_cannot_fill_the_key_is_refused(
    transport: Transport, payload: object
) -> None:
    """A payload lacking the template's field (or holding no string or integer there) raises
    PayloadInvalid and writes nothing."""
    app = App(transport)
    app.register("sync", _noop, concurrency_key="tenant:{tenant_id}")
    with pytest.raises(PayloadInvalid, match="tenant_id"):
        await app.enqueue("sync", payload)
    assert await transport.counts() == []


async def test_a_key_filled_in_too_long_is_refused(transport: Transport) -> None:
    """A filled-in key must still be a label: too long raises InvalidRequest, nothing written."""
    app = App(transport)
    app.register("sync", _noop, concurrency_key="tenant:{tenant_id}")
    with pytest.raises(InvalidRequest):
        await app.enqueue("sync", {"tenant_id": "x" * 300})
    assert await transport.counts() == []


async def test_two_nodes_hold_a_key_limit_and_finish_every_job(
    transport: Transport, clock: VirtualClock
) -> None:
    """Two nodes of four Workers each run at most the key's limit at once, cluster-wide, while
    jobs of other keys run beside them, and every job ends succeeded."""
    app = App(transport)
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    async def work(ctx: JobContext, payload: Any) -> None:
        key = payload["api"]
        running[key] = running.get(key, 0) + 1
        most[key] = max(most.get(key, 0), running[key])
        await clock.sleep(5.0)
        running[key] -= 1

    app.register("call", work, concurrency_key="api:{api}")
    await transport.set_limit("api:slow", concurrency=2)
    ids = [(await app.enqueue("call", {"api": "slow"})).job_id for _ in range(10)]
    ids += [(await app.enqueue("call", {"api": "fast"})).job_id for _ in range(6)]
    async with clock.autojump(), anyio.create_task_group() as tg:
        nodes = [
            await start_node(tg, topology(app, transport, clock, node_id=f"n{n}", concurrency=4))
            for n in (1, 2)
        ]
        jobs = await wait_final(transport, clock, ids, timeout=600.0)
        for node in nodes:
            await node.stop()
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert most["slow"] == 2
    assert most["fast"] > 2  # an unlimited key is not held back by the limited one
    assert all(job.attempt == 1 for job in jobs.values())  # passing over spends no attempt
    # Ten 5 s jobs two at a time take 25 s, give or take the polls of the claimers.
    assert max(job.finished_at or 0.0 for job in jobs.values()) - START < 60.0
