"""The ``actorq`` command against a real SQLite file: enqueue, status, queue, cancel, migrate."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from actors.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_enqueue_status_cancel(url: str) -> None:
    """Enqueued jobs show in status by state; cancel ends a waiting one."""
    out = run("enqueue", "email.send", '{"to": "a@b.c"}', "-t", url, "--count", "3")
    assert out.split() == ["job", "1", "job", "2", "job", "3"]
    assert "cancelled" in run("cancel", "2", "-t", url)
    row = next(line for line in run("status", "-t", url).splitlines() if "default" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    # queue, scheduled, available, running, succeeded, cancelled, dead, paused
    assert cells[:7] == ["default", "0", "2", "0", "0", "1", "0"]


def test_dedupe_is_reported(url: str) -> None:
    """A second enqueue with the same dedupe key says it was folded."""
    run("enqueue", "k", "-t", url, "--dedupe-key", "x")
    assert "deduplicated" in run("enqueue", "k", "-t", url, "--dedupe-key", "x")


def test_queue_settings(url: str) -> None:
    """`actorq queue` pauses, resumes and sets concurrency."""
    assert "paused=True concurrency=3" in run(
        "queue", "mail", "-t", url, "--pause", "--concurrency", "3"
    )
    assert "paused=False" in run("queue", "mail", "-t", url, "--resume")


def test_migrate(url: str) -> None:
    """`actorq migrate` brings a new file to the current schema version."""
    assert "schema is at version" in run("migrate", "-t", url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "k", "{not json"], "payload is not JSON"),
        (["enqueue", "bad kind!"], "invalid kind name"),
        (["enqueue", "k", "-q", "x'; DROP TABLE jobs;--"], "invalid queue name"),
        (["cancel", "999"], "JobNotFound"),
        (["worker", "no.such.module:app"], "cannot import"),
    ],
)
def test_bad_input_is_a_clear_error(url: str, args: list[str], message: str) -> None:
    """Bad input exits non-zero with a one-line, typed explanation (no traceback)."""
    result = CliRunner().invoke(main, [*args, "-t", url])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_unsupported_url() -> None:
    """An unknown transport URL is a clear error."""
    result = CliRunner().invoke(main, ["status", "-t", "redis://x"])
    assert result.exit_code != 0
    assert "unsupported transport URL" in result.output


def test_sim_runs_a_small_cluster() -> None:
    """`actorq sim` runs a faulty cluster from a seed and reports it passed, with its hash."""
    result = CliRunner().invoke(
        main,
        [
            "sim",
            "--seed",
            "1",
            "--nodes",
            "2",
            "--workers",
            "2",
            "--jobs",
            "50",
            "--duration",
            "2m",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "result: PASSED" in result.output
    assert "sha256" in result.output
