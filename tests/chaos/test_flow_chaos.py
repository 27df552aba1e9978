"""A key's concurrency limit holds across real processes while they are SIGKILLed.

Three ``actorq worker`` processes of four Workers each share one PostgreSQL database; every
job names one concurrency key limited to three. The driver SIGKILLs a random worker every
second or so (starting a new one at once), so leases are left behind by dead holders and
freed by expiry. Then it judges from the audit trail (the database's own record of every
claim, finalize and reap): at every claim, the key's live leases (claimed, not yet ended,
not yet expired) were at most its limit, and every job succeeded.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import pytest

from transports import EnqueueRequest, PostgresTransport

from . import _database as db
from ._chaos import CLOCK_SLACK
from ._processes import Fleet
from ._report import publish
from .test_chaos import SEED

pytestmark = pytest.mark.postgres

KEY = "chaos:hot"
LIMIT = 3
JOBS = 90
PROCESSES = 3


async def _run(dsn: str, logs: Path) -> tuple[int, int, int]:
    """Run the fleet; returns (kills, claims judged, the most live leases at a claim)."""
    rng = random.Random(SEED)
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    await db.create_schema(dsn, schema, audit=True)
    admin = db.Admin(dsn)
    s = db.quoted(schema)
    fleet = Fleet(
        app="tests.chaos.chaos_app:make_app",
        url=f"{dsn}?schema={schema}&pool_size=4",
        options=["--concurrency", "4", "--lease-ttl", "1", "--reaper-interval", "0.2"],
        logs=logs,
        env={"CHAOS_DSN": dsn, "CHAOS_SCHEMA": schema},
        prefix="flow-",
    )
    kills = 0
    try:
        with fleet:
            workers = [fleet.start() for _ in range(PROCESSES)]
            fleet.wait_ready(workers)
            async with PostgresTransport(dsn, schema=schema, pool_size=1) as transport:
                await transport.set_limit(KEY, concurrency=LIMIT)
                await transport.enqueue_many(
                    [
                        EnqueueRequest(
                            kind="chaos.work",
                            payload={"ms": rng.randint(50, 250), "n": n},
                            max_attempts=100,
                            concurrency_key=KEY,
                        )
                        for n in range(JOBS)
                    ]
                )
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                done = await admin.fetchval(
                    f"SELECT count(*) FROM {s}.jobs WHERE state = 'succeeded'"
                )
                if done == JOBS:
                    break
                owners = {
                    r[0].split("/")[0]
                    for r in await admin.fetch(
                        f"SELECT lease_owner FROM {s}.jobs WHERE state = 'running'"
                    )
                }
                holders = [p for p in fleet.live() if p.node_id in owners]
                if kills < 8 and holders:
                    fleet.kill(rng.choice(holders))  # it dies holding leases of the key
                    kills += 1
                    fleet.start()
                await asyncio.sleep(rng.uniform(0.6, 1.2))
            states = await admin.fetch(f"SELECT state, count(*) FROM {s}.jobs GROUP BY state")
            assert {r[0]: r[1] for r in states} == {"succeeded": JOBS}, states
            claims = await admin.fetch(
                f"SELECT new_token, at FROM {s}.transitions "
                "WHERE new_state = 'running' AND old_state <> 'running' ORDER BY at"
            )
            ends = await admin.fetch(
                f"SELECT old_token, at, old_expires FROM {s}.transitions "
                "WHERE old_state = 'running' AND new_state <> 'running'"
            )
    finally:
        await admin.close()
        await db.drop_schema(dsn, schema)
    # A lease is live from its claim until it ended (finalize, reap) or expired, whichever
    # came first: an expired lease is never revived, so its last expiry is the one that held.
    # Database times throughout; a claim's own rows are stamped a little after its snapshot,
    # so the judge may see a lease end early (it never sees one live that the claim did not).
    claimed_at = dict(claims)
    until = {token: min(at, expires) for token, at, expires in ends}
    most = 0
    for _token, at in claims:
        live = sum(
            1
            for other, start in claimed_at.items()
            if start <= at and until.get(other, float("inf")) > at + CLOCK_SLACK
        )
        most = max(most, live)
        assert live <= LIMIT, f"{live} live leases of {KEY!r} at a claim at {at}; limit {LIMIT}"
    return kills, len(claims), most


@pytest.mark.timeout(300)
def test_a_key_limit_holds_across_processes_under_sigkill(
    postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At no claim did the key hold more live leases than its limit, though workers were
    SIGKILLed holding its jobs, and every job succeeded."""
    kills, claims, most = asyncio.run(_run(postgres_dsn, tmp_path / "logs"))
    line = (
        f"flow chaos: {PROCESSES} processes, {JOBS} jobs of one key limited to {LIMIT}, "
        f"{kills} SIGKILLs, {claims} claims judged, at most {most} live leases at a claim"
    )
    publish(line, line)
    with capsys.disabled():
        print("\n" + line)
    assert kills >= 1
    assert claims > JOBS  # killed holders' jobs were claimed again
    assert most == LIMIT  # the limit was reached, and held
