"""``actorq worker --metrics-port``: a real worker process scraped over HTTP; its edges."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ACTORQ = str(Path(sys.executable).with_name("actorq"))
APP = """
from actors.jobs import App, JobContext

app = App()

@app.task("ok", queue="emails")
async def ok(ctx: JobContext, payload: None) -> None:
    pass
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "myjobs.py").write_text(textwrap.dedent(APP))
    env = {**os.environ, "ACTORQ_TRANSPORT": "sqlite:///jobs.db"}
    run: dict[str, object] = {
        "cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 60
    }  # fmt: skip
    assert subprocess.run([ACTORQ, "migrate"], **run).returncode == 0  # type: ignore[call-overload]
    return run


def test_a_worker_serves_its_metrics(tmp_path: Path) -> None:
    """The scrape of a running worker counts the jobs it ran, by queue and kind."""
    run = _setup(tmp_path)
    for _ in range(3):
        done = subprocess.run([ACTORQ, "enqueue", "--app", "myjobs:app", "ok"], **run)  # type: ignore[call-overload]
        assert done.returncode == 0, done.stderr
    port = _free_port()
    worker = subprocess.Popen(
        [ACTORQ, "worker", "myjobs:app", "--poll-interval", "100ms",
         "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--tracing"],
        cwd=tmp_path, env=run["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,  # type: ignore[arg-type]
    )  # fmt: skip
    succeeded = 0.0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and succeeded < 3:
            time.sleep(0.2)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                continue  # not listening yet
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "actorq_jobs_succeeded_total" and sample.labels == {
                        "queue": "emails",
                        "kind": "ok",
                    }:
                        succeeded = sample.value
    finally:
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert succeeded == 3, err
    assert f"metrics at http://127.0.0.1:{port}/metrics" in err


def test_a_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    run = _setup(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(  # type: ignore[call-overload]
            [ACTORQ, "worker", "myjobs:app", "--metrics-port", str(port),
             "--metrics-host", "127.0.0.1"], **run,
        )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"actorq: error: cannot serve metrics on 127.0.0.1:{port}")
    assert "--metrics-port" in line


def test_bad_telemetry_options_are_usage_errors(tmp_path: Path) -> None:
    run = _setup(tmp_path)
    for args in (["--metrics-port", "0"], ["--metrics-port", "70000"], ["--log-format", "xml"]):
        result = subprocess.run([ACTORQ, "worker", "myjobs:app", *args], **run)  # type: ignore[call-overload]
        assert result.returncode == 2, (args, result.stderr)
        (line,) = result.stderr.splitlines()
        assert line.startswith("actorq: error: "), line
    shown = subprocess.run([ACTORQ, "worker", "-h"], **run).stdout  # type: ignore[call-overload]
    for flag in ("--metrics-port", "--metrics-host", "--log-format", "--tracing"):
        assert flag in shown


def test_a_missing_extra_names_the_one_to_install(tmp_path: Path) -> None:
    """Without prometheus-client the metrics are a TelemetryUnavailable naming the extra, and
    ``--metrics-port`` one line; the logs and the rest of the command need nothing."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\nsys.modules['prometheus_client'] = None  # as if not installed\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    probe = subprocess.run(
        [sys.executable, "-c",
         "import actors.telemetry as t\n"
         "try:\n    t.NodeMetrics\nexcept t.TelemetryUnavailable as e:\n    print(e)\n"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "pip install 'actorq[metrics]'" in probe.stdout, probe.stderr
    run = _setup(tmp_path)
    run["env"] = {**run["env"], "PYTHONPATH": str(tmp_path)}  # type: ignore[dict-item]
    result = subprocess.run([ACTORQ, "worker", "myjobs:app", "--metrics-port", "9999"], **run)  # type: ignore[call-overload]
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "actorq[metrics]" in line
