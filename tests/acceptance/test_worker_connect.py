"""``actorq worker`` started while its PostgreSQL server cannot be reached (restarting, failing
over, a container not up yet): it keeps trying for ``--connect-timeout``, then either runs or
ends with one line.

The server is made unreachable and then reachable by a TCP relay in front of the real one: no
listener on the relay's port at first, then a relay to it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from transports import EnqueueRequest, JobState, PostgresTransport

pytestmark = pytest.mark.postgres

ACTORQ = Path(sys.executable).with_name("actorq")

APP = """
from actors.jobs import App, JobContext

app = App()

@app.task("hello")
async def hello(ctx: JobContext, payload: None) -> None:
    pass
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    if not ACTORQ.exists():
        pytest.skip(f"no actorq executable beside {sys.executable}")
    (tmp_path / "helloapp.py").write_text(textwrap.dedent(APP))
    return tmp_path


def _relayed_url(dsn: str, port: int, schema: str) -> str:
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}127.0.0.1:{port}{parts.path}?schema={schema}&pool_size=2"


async def _relay(port: int, target: tuple[str, int]) -> asyncio.Server:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(serve, "127.0.0.1", port)


def test_a_worker_waits_for_a_server_that_comes_up_and_then_runs_jobs(
    app_dir: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    port = _free_port()
    target = urlsplit(postgres_dsn)
    url = _relayed_url(postgres_dsn, port, postgres_schema)
    worker = subprocess.Popen(
        [str(ACTORQ), "worker", "helloapp:app", "-t", url, "--connect-timeout", "60",
         "--poll-interval", "100ms"],
        cwd=app_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    async def scenario() -> JobState:
        await asyncio.sleep(1.5)  # a few refused attempts
        assert worker.poll() is None, "the worker gave up while the server was away"
        relay = await _relay(port, (target.hostname or "127.0.0.1", target.port or 5432))
        async with relay, PostgresTransport(postgres_dsn, schema=postgres_schema) as store:
            (result,) = await store.enqueue_many([EnqueueRequest(kind="hello", payload=None)])
            for _ in range(600):
                job = await store.get(result.job_id)
                if job.state is JobState.SUCCEEDED:
                    break
                await asyncio.sleep(0.1)
            return job.state

    try:
        state = asyncio.run(scenario())
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert state is JobState.SUCCEEDED, err
    assert worker.returncode == 0, err
    assert "cannot reach the store at" in err
    assert "trying again" in err
    assert "Traceback" not in err  # the driver's own retry warnings too: one line each


def test_a_worker_gives_up_on_an_unreachable_server_with_one_line(
    app_dir: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    url = _relayed_url(postgres_dsn, _free_port(), postgres_schema).replace("@", ":hunter2@", 1)
    started = time.monotonic()
    done = subprocess.run(
        [str(ACTORQ), "worker", "helloapp:app", "-t", url, "--connect-timeout", "1s"],
        cwd=app_dir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    waited = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert waited >= 1.0
    errors = [line for line in done.stderr.splitlines() if line.startswith("actorq: error:")]
    assert len(errors) == 1, done.stderr
    assert "lost the store" in errors[0]
    assert "trying again" in done.stderr  # it did try more than once
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr


def test_connect_timeout_zero_gives_up_at_once(
    app_dir: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    url = _relayed_url(postgres_dsn, _free_port(), postgres_schema)
    done = subprocess.run(
        [str(ACTORQ), "worker", "helloapp:app", "-t", url, "--connect-timeout", "0"],
        cwd=app_dir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "lost the store" in done.stderr
    assert "trying again" not in done.stderr


def test_a_driver_warning_is_one_line_unless_verbose() -> None:
    """asyncpg's pool logs its reconnect retries with a traceback; the command shows them in
    one line, the traceback only under -v."""
    import logging

    from actors.cli._main import _DriverInOneLine

    def record(name: str) -> logging.LogRecord:
        try:
            raise ConnectionRefusedError("connection refused")
        except ConnectionRefusedError:
            return logging.LogRecord(
                name, logging.WARNING, __file__, 1, "Failed to restore the %s", ("floor",),
                sys.exc_info(),
            )  # fmt: skip

    quiet = _DriverInOneLine()
    driver = record("asyncpg.pool")
    assert quiet.filter(driver)
    assert driver.exc_info is None
    assert driver.getMessage() == (
        "Failed to restore the floor: ConnectionRefusedError: connection refused"
    )
    ours = record("actorq.worker")  # not a driver's: left as it is
    assert quiet.filter(ours)
    assert ours.exc_info is not None
    verbose = _DriverInOneLine()
    verbose.verbose = 1
    shown = record("asyncpg.pool")
    assert verbose.filter(shown)
    assert shown.exc_info is not None
