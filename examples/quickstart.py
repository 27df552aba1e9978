"""The common case: typed handlers, the default topology, embedded SQLite.

Run it with ``python examples/quickstart.py``. It enqueues a few jobs, runs one node until they
are done, and prints what happened to each. It uses a fresh SQLite file; give a store URL to use
another (``python examples/quickstart.py postgresql://app@db/app``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anyio
import attrs

import transports
from actors.jobs import App, Constant, Drop, JobContext, RetryLater, Topology, WorkerConfig

app = App()


@attrs.frozen
class Welcome:
    """Payload of ``email.welcome``: structured from the job's JSON by cattrs."""

    user_id: int
    address: str


@app.task("email.welcome", queue="emails", max_attempts=5, backoff=Constant(seconds=0.1))
async def send_welcome(ctx: JobContext, mail: Welcome) -> RetryLater | Drop | None:
    if "@" not in mail.address:
        return Drop(reason=f"not an address: {mail.address!r}")  # dead now, never retried
    if ctx.attempt == 1 and mail.user_id % 2:
        return RetryLater(delay=0.1, reason="mail server busy")  # spends an attempt
    ctx.log.info("sent to %s", mail.address)
    return None  # done


async def main(url: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with transports.connect(url or f"sqlite:///{Path(folder) / 'jobs.db'}") as transport:
            ids = [
                (
                    await app.enqueue(
                        send_welcome, Welcome(user_id=i, address=a), transport=transport
                    )
                ).job_id
                for i, a in enumerate(["ada@example.org", "grace@example.org", "nobody"])
            ]
            topology = Topology.default(
                app, transport, concurrency=2, worker=WorkerConfig(poll_interval=0.05)
            )
            async with topology.run():
                with anyio.fail_after(10):
                    while [j for j in ids if (await transport.get(j)).state.is_active]:
                        await anyio.sleep(0.05)
            for job_id in ids:
                job = await transport.get(job_id)
                print(
                    f"job {job_id}: {job.state.value} after {job.attempt} attempt(s)"
                    + (f" — {job.last_error}" if job.last_error else "")
                )


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:2])
