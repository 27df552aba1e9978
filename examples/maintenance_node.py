"""Two nodes with different jobs on one store: workers only, and maintenance only.

The ``ops`` node runs no Workers: only the Reaper, Cron (leader-elected) and Cleanup. The
``workers`` node only runs Workers. A job left behind by a crashed worker (we fake one by
claiming it and never renewing) is reaped by ``ops`` and finished by ``workers``; a cron
schedule fires every second. Run it with ``python examples/maintenance_node.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

import transports
from actors.jobs import App, JobContext, JobReclaimed, RuntimeEvent, Topology, WorkerConfig

app = App()
ran: list[str] = []


@app.task("index.rebuild")
async def rebuild(ctx: JobContext, payload: None) -> None:
    ran.append(f"index.rebuild (attempt {ctx.attempt})")


@app.task("report.hourly")
async def hourly(ctx: JobContext, payload: None) -> None:
    ran.append("report.hourly")


app.schedule("hourly-report", "* * * * * *", "report.hourly")  # every second, for the demo


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'jobs.db'}"
        async with transports.connect(url) as store_a, transports.connect(url) as store_b:
            await app.enqueue("index.rebuild", transport=store_a)
            # A worker that dies right after claiming: its lease lapses in 0.3 s.
            (lost,) = await store_a.claim("default", owner="crashed-worker", limit=1, ttl=0.3)

            def show(event: RuntimeEvent) -> None:
                if isinstance(event, JobReclaimed):
                    print(f"ops: reclaimed job {event.job_id} lost by {event.lost_by}")

            ops = (
                Topology(app, store_a, node_id="ops")
                .reaper(interval=0.2)
                .cron(app.schedules, leader_ttl=2.0)
                .cleanup()
            )
            workers = Topology(app, store_b, node_id="workers").queue(
                "default", concurrency=2, worker=WorkerConfig(poll_interval=0.05)
            )
            async with ops.run() as ops_node, workers.run():
                ops_node.events.subscribe(show)
                with anyio.fail_after(10):
                    while not ("report.hourly" in ran and any("rebuild" in r for r in ran)):
                        await anyio.sleep(0.05)
            job = await store_a.get(lost.job_id)
            print(f"job {job.id}: {job.state.value} after {job.attempt} attempts")
    for line in ran:
        print(f"ran {line}")


if __name__ == "__main__":
    anyio.run(main)
