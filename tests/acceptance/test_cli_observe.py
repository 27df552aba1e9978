"""``actorq nodes``, ``actorq schedules`` and ``actorq stats`` against a real SQLite file."""

from __future__ import annotations

import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

import transports
from actors.cli import main
from transports import MINUTE, Histogram, NodeInfo, QueueStats, minute_of


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.stdout


def seed(url: str, fn: object) -> None:
    async def go() -> None:
        async with transports.connect(url) as transport:
            await fn(transport)  # type: ignore[operator]

    anyio.run(go)


def test_nodes_shows_alive_gone_and_leaders(url: str) -> None:
    """Each registered node is one row: its queues, slots, state and the leases it holds."""

    async def fill(transport: transports.Transport) -> None:
        for node_id, heartbeat in [("alive-node", 3600.0), ("gone-node", 0.001)]:
            await transport.register_node(
                NodeInfo(
                    id=node_id,
                    host="box",
                    pid=77,
                    queues=("emails", "default"),
                    slots=20,
                    version="9.9",
                    started_at=1_700_000_000.0,
                    heartbeat=heartbeat,
                )
            )
        await transport.acquire_leader("cron", holder="alive-node", ttl=3600)
        await transport.acquire_leader("maintenance", holder="elsewhere", ttl=3600)

    seed(url, fill)
    out = run("nodes", "-t", url)
    (alive,) = [line for line in out.splitlines() if "alive-node" in line]
    (gone,) = [line for line in out.splitlines() if "gone-node" in line]
    assert "alive" in alive.replace("alive-node", "")
    assert "cron" in alive
    assert "emails, default" in alive
    assert "20" in alive
    assert "9.9" in alive
    assert "gone" in gone.replace("gone-node", "")
    assert "cron" not in gone
    assert "leader of maintenance: elsewhere (not a registered node)" in out


@pytest.fixture
def cron_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"cronapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from actors.jobs import App, JobContext

            app = App()

            @app.task("report.build", queue="reports")
            async def build(ctx: JobContext, payload: None) -> None:
                pass

            app.schedule("nightly", "0 3 * * *", build)
            app.schedule("fresh", "*/5 * * * *", build)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:app"
    sys.modules.pop(name, None)


def test_schedules_shows_the_cursor_and_the_next_fire(url: str, cron_app: str) -> None:
    """A schedule's last fired tick is its cursor ("never" before the first); the next fire
    time is the schedule's next tick from now."""

    async def fill(transport: transports.Transport) -> None:
        assert await transport.advance_cursor("cron:nightly", expected=None, new=1_700_017_200.0)

    seed(url, fill)
    out = run("schedules", cron_app, "-t", url)
    (nightly,) = [line for line in out.splitlines() if "nightly" in line]
    (fresh,) = [line for line in out.splitlines() if "fresh" in line]
    assert "2023-11-15 03:00:00" in nightly  # the cursor
    assert "03:00:00" in nightly.split("2023-11-15 03:00:00")[1]  # the next nightly run
    assert "reports" in nightly
    assert "never" in fresh
    assert "cron leader: none" in out


def test_stats_shows_the_last_minutes(url: str) -> None:
    """Each (minute, queue) of the window is a row with its counts and percentiles."""
    now = minute_of(time.time())

    async def fill(transport: transports.Transport) -> None:
        await transport.add_stats(
            [
                QueueStats(
                    queue="emails",
                    minute=now,
                    succeeded=41,
                    failed=3,
                    finalize_refused=2,
                    deduplicated=5,
                    wait=Histogram.of([0.02] * 99 + [4.0]),
                    run=Histogram.of([1.5]),
                    recovery=Histogram.of([0.9, 1.5, 40.0]),
                ),
                QueueStats(queue="legacy", minute=now - 60 * MINUTE, dead=1),
            ]
        )

    seed(url, fill)
    out = run("stats", "-t", url)
    (line,) = [line for line in out.splitlines() if "emails" in line]
    cells = line.replace("│", " ").split()
    assert cells[3:7] == ["41", "3", "0", "0"]
    assert cells[7:11] == ["23ms", "23ms", "1.72s", "1.72s"]  # bucket upper bounds
    assert cells[11:15] == ["2", "0", "0", "5"]
    assert cells[15:] == ["1.72s", "46.3s"]  # recovery time p50, p99
    assert "legacy" not in out
    assert "legacy" in run("stats", "-t", url, "--minutes", "61")
    assert "emails" not in run("stats", "-t", url, "-q", "legacy", "-m", "61")
