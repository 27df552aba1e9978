"""JSON logs: every job line parses and names the job, its queue, attempt, node and trace."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.trace import TracerProvider

from actors.core import VirtualClock
from actors.jobs import App, JobContext
from actors.telemetry import JsonFormatter, instrument_tracing, logging_config
from transports import EnqueueRequest, MemoryTransport

from ..jobs._support import running, topology, wait_final

pytestmark = pytest.mark.anyio

HEADERS = "headers" in attrs.fields_dict(EnqueueRequest)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the ``actorq`` loggers write, as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(static={"service": "shop"}))
    logger = logging.getLogger("actorq")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_every_job_line_names_the_job_its_node_and_its_trace(
    memory: MemoryTransport, clock: VirtualClock, lines: io.StringIO
) -> None:
    """A handler's own line, a failed attempt's and a dead job's are each one JSON object
    with the job's id, kind, queue and attempt, the node, and (inside a traced run) the trace
    and span ids."""
    app = App(memory)
    instrument_tracing(app, tracer_provider=TracerProvider())

    @app.task("mail.send", queue="emails", max_attempts=1)
    async def send(ctx: JobContext, payload: str) -> None:
        ctx.log.info("sending to %s", payload)
        if payload == "nobody":
            raise ValueError("not an address")

    ok = (await app.enqueue(send, "ada@example.org")).job_id
    bad = (await app.enqueue(send, "nobody")).job_id
    async with clock.autojump(), running(topology(app, memory, clock, node_id="node-7")):
        await wait_final(memory, clock, [ok, bad])
    records = parsed(lines)
    jobs = [r for r in records if "job_id" in r]
    assert {(r["job_id"], r["level"]) for r in jobs} == {
        (ok, "INFO"),
        (bad, "INFO"),
        (bad, "WARNING"),  # the failed attempt
        (bad, "ERROR"),  # dead
    }
    for record in jobs:
        assert record["kind"] == "mail.send"
        assert record["queue"] == "emails"
        assert record["attempt"] == 1
        assert record["node"] == "node-7"
        assert record["service"] == "shop"
        assert record["time"].endswith("+00:00")
    in_run = [r for r in jobs if r["level"] != "ERROR"]  # the dead line is the Claimer's
    for record in in_run:
        assert len(record["trace_id"]) == 32
        assert len(record["span_id"]) == 16
    by_job = {r["job_id"]: r["trace_id"] for r in in_run}
    assert by_job[ok] != by_job[bad]  # one trace per job
    (dead,) = [r for r in jobs if r["level"] == "ERROR"]
    if HEADERS:  # from the trace context stored with the job
        assert dead["trace_id"] == by_job[bad]
    (warning,) = [r for r in jobs if r["level"] == "WARNING"]
    assert "ValueError: not an address" in warning["exception"]
    assert [r["message"] for r in jobs if r["job_id"] == ok] == [
        f"[mail.send #{ok} try 1] sending to ada@example.org"
    ]


def test_the_logging_config_sets_up_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """``logging_config()`` is a dictConfig for library use: JSON lines on stderr."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        logging.config.dictConfig(logging_config(level="INFO", node="web-1"))
        logging.getLogger("actorq.test").info("hello %s", "there", extra={"queue": "q"})
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["message"] == "hello there"
    assert record["queue"] == "q"
    assert record["node"] == "web-1"
    assert record["level"] == "INFO"
    with pytest.raises(ValueError, match="log format"):
        logging_config(format="xml")


def test_the_worker_writes_json_lines(tmp_path: Path) -> None:
    """``actorq worker --log-format json`` writes each line as JSON, job lines with their
    fields, through to its shutdown."""
    import signal
    import time

    actorq = str(Path(sys.executable).with_name("actorq"))
    (tmp_path / "myjobs.py").write_text(
        textwrap.dedent(
            """
            from actors.jobs import App, JobContext

            app = App()

            @app.task("boom", max_attempts=1)
            async def boom(ctx: JobContext, payload: None) -> None:
                raise RuntimeError("no luck")
            """
        )
    )
    env = {**os.environ, "ACTORQ_TRANSPORT": "sqlite:///jobs.db"}
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 60}
    assert subprocess.run([actorq, "migrate"], **run).returncode == 0  # type: ignore[call-overload]
    enqueued = subprocess.run([actorq, "enqueue", "--app", "myjobs:app", "boom"], **run)  # type: ignore[call-overload]
    assert enqueued.returncode == 0, enqueued.stderr
    worker = subprocess.Popen(
        [actorq, "worker", "myjobs:app", "--poll-interval", "100ms", "--log-format", "json",
         "--node-id", "w-1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = subprocess.run([actorq, "status"], **run).stdout  # type: ignore[call-overload]
            row = next((line for line in status.splitlines() if "default" in line), "")
            cells = [c.strip() for c in row.strip("│ ").split("│")]
            if len(cells) > 6 and cells[6] == "1":  # dead
                break
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    dead = [r for r in records if r.get("level") == "ERROR" and r.get("job_id") == 1]
    assert dead, err
    assert dead[0]["kind"] == "boom"
    assert dead[0]["queue"] == "default"
    assert dead[0]["attempt"] == 1
    assert dead[0]["node"] == "w-1"
    assert any("shutting down gracefully" in r["message"] for r in records)
