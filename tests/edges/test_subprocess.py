"""A few bad inputs through the installed ``actorq`` executable, as a shell user runs it."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

ACTORQ = Path(sys.executable).with_name("actorq")


def actorq(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACTORQ), *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(autouse=True)
def _installed() -> None:
    if not ACTORQ.exists():
        pytest.skip(f"no actorq executable beside {sys.executable}")


def test_version(tmp_path: Path) -> None:
    """--version prints the installed distribution's version."""
    done = actorq("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"actorq {importlib.metadata.version('actorq')}\n")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["status"], 1,
         'no store at sqlite:///actorq.db (run "actorq migrate -t sqlite:///actorq.db" first)'),
        (["worker", "no_such_module:app"], 2, "cannot import 'no_such_module'"),
        (["enqueue", "k", "-t", "memory://"], 2, "memory://"),
        (["queue", "default", "--concurrency", "-5"], 2, "'--concurrency'"),
        (["status", "-t", "postgresql://u:hunter2@127.0.0.1:99999/db"], 2, "port"),
    ],
    ids=["missing-store-status", "bad-module-worker", "memory-refused-enqueue",
         "bad-option-queue-concurrency", "bad-url-port"],
)  # fmt: skip
def test_one_line_and_status(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    """The real process prints one line on stderr, exits with its status, creates nothing."""
    done = actorq(*args, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("actorq: error: ")
    assert message in done.stderr
    assert "hunter2" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_verbose_after_the_command_shows_the_traceback(tmp_path: Path) -> None:
    """-v after the subcommand prints the traceback, then the same one line."""
    done = actorq("status", "-t", "redis://x", "-v", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("actorq: error: unsupported transport URL")


def test_a_two_megabyte_payload_from_stdin(tmp_path: Path) -> None:
    """A payload too long for the argument list comes from stdin."""
    payload = '{"blob": "' + "x" * 2_000_000 + '"}'
    url = "sqlite:///jobs.db"
    done = actorq("enqueue", "k", "-", "-t", url, "--max-payload-bytes", "3000000",
                  cwd=tmp_path, stdin=payload)  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "job 1\n"), done.stderr
