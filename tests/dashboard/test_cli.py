"""``actorq dashboard``: bad input is one line and binds nothing; a good one serves and stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.edges.conftest import (  # the seeded and missing stores of the CLI edge suite
    Store,
    assert_one_line_error,
    backend,
    cli,
    missing_store,
    store,
)

__all__ = ["backend", "missing_store", "store"]  # fixtures, used by name

D = ["dashboard"]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def _first_answer(process: subprocess.Popen[str], url: str, *, within: float) -> httpx.Response:
    """GET ``url`` as soon as the served process listens (it must not exit meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return httpx.get(url)
        except httpx.TransportError:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the dashboard never listened"
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--port", "0"], 2, "'--port'"),
        (["--port", "65536"], 2, "'--port'"),
        (["--port", "http"], 2, "'--port'"),
        (["--token", " "], 2, "--token is empty"),
        (["--host", "no.such.host.invalid"], 2, "cannot listen on no.such.host.invalid"),
        (["--app", "no_such_module:app"], 2, "cannot import 'no_such_module'"),
    ],
    ids=["port-zero", "port-too-big", "port-word", "token-empty", "host-unknown", "app-missing"],
)
def test_bad_options_are_one_line_and_change_nothing(
    store: Store, args: list[str], code: int, message: str
) -> None:
    before = store.snapshot()
    assert_one_line_error(cli([*D, "-t", store.url, *args]), code, message)
    assert store.snapshot() == before


def test_a_busy_port_is_one_line(store: Store, busy_port: int) -> None:
    result = cli([*D, "-t", store.url, "--port", str(busy_port), "--read-only"])
    assert_one_line_error(result, 1, f"cannot listen on 127.0.0.1:{busy_port}")


def test_a_missing_store_is_one_line_and_stays_missing(missing_store: Store) -> None:
    result = cli([*D, "-t", missing_store.url, "--port", str(_free_port()), "--read-only"])
    assert_one_line_error(result, 1, "no store at")
    assert not missing_store.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [("memory://", "memory://"), ("redis://x", "unsupported transport URL")],
    ids=["url-memory", "url-unknown"],
)
def test_a_bad_url_is_one_line(url: str, message: str) -> None:
    assert_one_line_error(cli([*D, "-t", url]), 2, message)


def test_the_command_serves_the_store_until_interrupted(store: Store, tmp_path: Path) -> None:
    """A real process: pages need the token, answer with it, and SIGINT stops it cleanly."""
    port = _free_port()
    env = {**os.environ, "ACTORQ_DASHBOARD_TOKEN": "from-env"}
    process = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", *D, "-t", store.url, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        first = _first_answer(process, f"{base}/api/counts", within=30)
        assert first.status_code == 401
        counts = httpx.get(f"{base}/api/counts", headers={"authorization": "Bearer from-env"})
        assert counts.json()["emails"]["available"] == 1
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"at http://127.0.0.1:{port}/" in err
    assert "log in with the token" not in err  # a given token is never printed


def test_the_demo_keeps_its_jobs_on_view_in_the_dashboard(tmp_path: Path) -> None:
    """``actorq demo --dashboard``: the demo runs, then its store is served read-only (no
    token needed) with the jobs it ran, until SIGINT stops it cleanly."""
    port = _free_port()
    command = [sys.executable, "-m", "actors.cli", "demo", "--jobs", "30", "--dashboard"]
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        counts = _first_answer(process, f"http://127.0.0.1:{port}/api/counts", within=120)
        assert counts.status_code == 200
        assert counts.json()["media"]["succeeded"] >= 30
        overview = httpx.get(f"http://127.0.0.1:{port}/")
        assert overview.status_code == 200
        assert "<form" not in overview.text  # read-only: nothing to act with
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"at http://127.0.0.1:{port}/" in err


def test_the_demo_says_how_to_see_its_jobs_and_refuses_a_memory_dashboard() -> None:
    """Without ``--dashboard`` the demo ends by naming the command that shows its jobs; a
    memory store cannot be shown after the demo, which is one line before any job runs."""
    done = cli(["demo", "--jobs", "5"])
    assert done.exit_code == 0, done.output
    assert "actorq demo --dashboard" in done.stdout.splitlines()[-1]
    assert_one_line_error(
        cli(["demo", "-t", "memory://", "--dashboard"]), 2, "cannot show a memory store"
    )
