"""Cron across processes: three nodes run a one-second schedule; the leader is SIGKILLed over
and over.

The ``cron`` row of the leaders table names the holder (each process has its own
``--node-id``); each tick's job carries the dedupe key ``cron:tick:<tick>``, so the jobs table
says which ticks fired and when.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from pathlib import Path

import attrs
import pytest

from . import _database as db
from ._processes import Fleet
from ._report import publish, spread, table
from .test_chaos import LONG

pytestmark = pytest.mark.postgres

PROCESSES = 3


@attrs.frozen(kw_only=True)
class Failover:
    leader_ttl: float
    kills: int


SETTINGS = (
    [Failover(leader_ttl=2.0, kills=8), Failover(leader_ttl=10.0, kills=2)]
    if LONG
    else [Failover(leader_ttl=2.0, kills=3)]
)


@attrs.define
class CronRun:
    setting: Failover
    kills: list[tuple[float, float]] = attrs.Factory(list)  # (leader SIGKILLed, new leader seen)
    ticks: list[tuple[float, float]] = attrs.Factory(list)  # (tick, job created at), each job
    problems: list[str] = attrs.Factory(list)


async def _leader(admin: db.Admin, schema: str) -> tuple[str, float] | None:
    rows = await admin.fetch(
        f"SELECT holder, expires_at, extract(epoch FROM clock_timestamp()) AS now "
        f"FROM {db.quoted(schema)}.leaders WHERE name = 'cron'"
    )
    if not rows or rows[0]["expires_at"] <= rows[0]["now"]:
        return None
    return rows[0]["holder"], rows[0]["expires_at"]


async def _fired(admin: db.Admin, schema: str) -> int:
    count: int = await admin.fetchval(
        f"SELECT count(*) FROM {db.quoted(schema)}.jobs WHERE kind = 'chaos.tick'"
    )
    return count


async def _run(setting: Failover, dsn: str, logs: Path) -> CronRun:
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    await db.create_schema(dsn, schema, audit=False)
    admin = db.Admin(dsn)
    result = CronRun(setting=setting)
    fleet = Fleet(
        app="tests.chaos.chaos_app:make_app",
        url=f"{dsn}?schema={schema}&pool_size=3",
        options=["--concurrency", "2", "--leader-ttl", str(setting.leader_ttl)],
        logs=logs / f"ttl{setting.leader_ttl:g}",
        env={"CHAOS_DSN": dsn, "CHAOS_SCHEMA": schema, "CHAOS_CRON": "1"},
        prefix="cron-",
    )
    try:
        with fleet:
            fleet.wait_ready([fleet.start() for _ in range(PROCESSES)])
            await _until(lambda: _fired_at_least(admin, schema, 3), 4 * setting.leader_ttl + 10)
            for _ in range(setting.kills):
                leader = await _until(lambda: _leader(admin, schema), 4 * setting.leader_ttl)
                holder = next(p for p in fleet.processes if p.node_id == leader[0])
                killed_at = fleet.kill(holder)
                fleet.start()

                async def successor(dead: str = holder.node_id) -> str | None:
                    found = await _leader(admin, schema)
                    return found[0] if found is not None and found[0] != dead else None

                await _until(successor, 4 * setting.leader_ttl)
                result.kills.append((killed_at, time.time()))
                # A few ticks under the new leader before the next kill.
                await asyncio.sleep(2.5)
            rows = await admin.fetch(
                f"SELECT dedupe_key, created_at FROM {db.quoted(schema)}.jobs "
                "WHERE kind = 'chaos.tick'"
            )
            result.ticks = [(float(r[0].rsplit(":", 1)[1]), r[1]) for r in rows]
        for process in fleet.processes:
            result.problems.extend(process.problems())
    finally:
        await admin.close()
        await db.drop_schema(dsn, schema)
    return result


async def _fired_at_least(admin: db.Admin, schema: str, n: int) -> bool | None:
    return (await _fired(admin, schema)) >= n or None


async def _until(probe, timeout: float):  # type: ignore[no-untyped-def]
    """Poll ``probe()`` every 50 ms until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout:g}s")
        await asyncio.sleep(0.05)


def _judge(run: CronRun) -> tuple[list[str], dict[str, object]]:
    ttl = run.setting.leader_ttl
    problems = list(run.problems)
    ticks = sorted(t for t, _ in run.ticks)
    seen: set[float] = set()
    for tick in ticks:
        if tick in seen:
            problems.append(f"tick {tick:.3f} fired twice")
        seen.add(tick)
    lags = [created - tick for tick, created in run.ticks]
    if lags and max(lags) > ttl:
        problems.append(f"a tick fired {max(lags):.2f}s late, past the catch-up grace of {ttl:g}s")
    takeovers = [seen_at - killed for killed, seen_at in run.kills]
    if takeovers and max(takeovers) > 2 * ttl:
        problems.append(f"a new leader took {max(takeovers):.2f}s (> 2 x {ttl:g}s)")
    # Every whole second between the first and last tick fired, except in failover gaps,
    # where the policy (CatchUp.SKIP) fires at most the latest missed tick.
    missed = (
        [
            float(t)
            for t in range(math.ceil(ticks[0]), math.floor(ticks[-1]) + 1)
            if float(t) not in seen
        ]
        if ticks
        else []
    )
    for tick in missed:
        if not any(killed - 1.0 <= tick <= seen_at for killed, seen_at in run.kills):
            problems.append(f"tick {tick:.0f} was missed while a leader was alive")
    for killed, seen_at in run.kills:
        in_gap = [t for t in ticks if killed < t <= seen_at]
        if len(in_gap) > 1:
            problems.append(f"{len(in_gap)} ticks of one failover gap fired (catch-up is skip)")
    stats = {
        "takeover": takeovers,
        "lag": lags,
        "fired": len(ticks),
        "missed": len(missed),
    }
    return problems, stats


@pytest.mark.timeout(600 if LONG else 300)
def test_cron_leader_failover_fires_each_tick_at_most_once(
    postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the cron leader SIGKILLed repeatedly, no tick fires twice, missed ticks are skipped
    (only inside failover gaps) and a new leader takes over within 2 x the leader lease TTL."""
    results = [asyncio.run(_run(s, postgres_dsn, tmp_path)) for s in SETTINGS]
    rows = []
    failures = []
    for run in results:
        problems, stats = _judge(run)
        failures.extend(problems)
        rows.append(
            (
                f"--leader-ttl {run.setting.leader_ttl:g}",
                len(run.kills),
                f"{stats['fired']} fired, 0 twice" if not problems else f"{stats['fired']} fired",
                f"{stats['missed']} (all in failover gaps)" if not problems else stats["missed"],
                spread(stats["takeover"]),  # type: ignore[arg-type]
                f"{2 * run.setting.leader_ttl:g}s",
                spread(stats["lag"]),  # type: ignore[arg-type]
            )
        )
    report = table(
        "cron leader failover: 3 processes, schedule '* * * * * *', catch-up skip",
        (
            "leader lease",
            "leader SIGKILLs",
            "ticks",
            "ticks missed",
            "kill -> new leader",
            "bound",
            "tick -> job enqueued",
        ),
        rows,
    )
    publish(report, f"cron failover: {len(failures)} problem(s)")
    with capsys.disabled():
        print("\n" + report)
    assert not failures, "\n".join(failures)
