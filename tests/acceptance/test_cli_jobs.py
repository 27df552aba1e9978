"""``actorq jobs`` against a real SQLite file: list, show with the error history, and the bulk
actions looping in batches. Bad input of every kind is in ``tests/edges/test_cli_edges.py``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

import transports
from actors.cli import main
from transports import EnqueueRequest, JobFilter, JobState
from transports.lowlevel import Complete, Discard, FinalizeRequest


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def invoke(*args: str) -> Result:
    # Wide enough that rich never wraps a row of the tables read here.
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


def run(*args: str) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def seed(url: str) -> dict[str, list[int]]:
    """Three dead ``mail.send`` jobs (one failure each, with a traceback), two available
    ``report.build`` jobs on queue ``reports`` and one scheduled ``mail.send``."""

    async def go() -> dict[str, list[int]]:
        async with transports.connect(url) as store:
            dead = [
                (await store.enqueue(EnqueueRequest(kind="mail.send", payload={"n": n}))).job_id
                for n in range(3)
            ]
            leases = await store.claim("default", owner="node-1/w1", limit=3, ttl=30.0)
            await store.finalize(
                [
                    FinalizeRequest(
                        job_id=lease.job_id,
                        token=lease.token,
                        outcome=Discard(
                            error="SMTPError: [bold]relay denied[/bold]",
                            error_type="smtplib.SMTPError",
                            traceback='Traceback (most recent call last):\n  File "mail.py"',
                        ),
                    )
                    for lease in leases
                ]
            )
            reports = [
                (await store.enqueue(EnqueueRequest(kind="report.build", queue="reports"))).job_id
                for _ in range(2)
            ]
            later = await store.enqueue(EnqueueRequest(kind="mail.send", delay=3600.0))
            return {"dead": dead, "reports": reports, "scheduled": [later.job_id]}

    return anyio.run(go)


def stored(url: str, where: JobFilter | None = None) -> list[transports.Job]:
    async def go() -> list[transports.Job]:
        async with transports.connect(url) as store:
            return await store.list_jobs(where, limit=1000)

    return anyio.run(go)


def test_list_shows_the_newest_first_and_pages(url: str) -> None:
    """The table lists matching jobs newest first; a full page says how to get the next."""
    ids = seed(url)
    out = run("jobs", "list", "--state", "dead", "-t", url).stdout
    rows = [line for line in out.splitlines() if "mail.send" in line]
    assert [int(row.split("│")[1]) for row in rows] == sorted(ids["dead"], reverse=True)
    assert "[bold]relay denied[/bold]" in out  # stored text is shown, never rendered
    first = run("jobs", "list", "--limit", "2", "-t", url)
    newest = sorted((i for group in ids.values() for i in group), reverse=True)
    assert f"more: add --before {newest[1]}" in first.stderr
    second = run("jobs", "list", "--before", str(newest[1]), "-t", url).stdout
    assert str(newest[2]) in second
    assert f"│ {newest[0]} " not in second
    assert "report.build" in run("jobs", "list", "-q", "reports", "-t", url).stdout
    assert "mail.send" not in run("jobs", "list", "--kind", "report.build", "-t", url).stdout
    assert "0 jobs" in run("jobs", "list", "--error", "no such text", "-t", url).stdout
    assert "3 jobs" in run("jobs", "list", "--error", "RELAY", "-t", url).stdout


def test_show_prints_the_job_and_its_error_history(url: str) -> None:
    """show prints the fields, the payload and each recorded error with its type."""
    ids = seed(url)
    out = run("jobs", "show", str(ids["dead"][0]), "-t", url).stdout
    assert "error history (1, oldest first)" in out
    assert "smtplib.SMTPError" in out
    assert "node-1/w1" in out
    assert "[bold]relay denied[/bold]" in out
    assert 'File "mail.py"' in out
    assert '{"n": 0}' in out
    assert "no errors recorded" in run("jobs", "show", str(ids["reports"][0]), "-t", url).stdout


def test_show_prints_the_result_of_a_succeeded_job(url: str) -> None:
    """show prints a succeeded job's result as JSON; a job without one shows none."""

    async def go() -> int:
        async with transports.connect(url) as store:
            await store.enqueue(EnqueueRequest(kind="invoice.total"))
            (lease,) = await store.claim("default", owner="w1", limit=1, ttl=30.0)
            outcome = Complete(result={"total": 25.0, "lines": ["[red]x[/red]"]})
            await store.finalize(
                [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
            )
            return lease.job_id

    job_id = anyio.run(go)
    out = run("jobs", "show", str(job_id), "-t", url).stdout
    assert '{"total": 25.0, "lines": ["[red]x[/red]"]}' in out


def test_bulk_retry_loops_in_batches_and_sums_up(url: str) -> None:
    """retry --state dead --kind X takes every match in batches, one progress line each."""
    ids = seed(url)
    result = run(
        "jobs", "retry", "--state", "dead", "--kind", "mail.send", "--batch-size", "2", "-t", url
    )
    assert result.stdout.startswith("retried 3 jobs: ")
    assert result.stderr.splitlines() == [
        "retry: 2 jobs in this batch, 2 so far",
        "retry: 1 job in this batch, 3 so far",
    ]
    again = stored(url, JobFilter(ids=ids["dead"]))
    assert {(job.state, job.attempt, len(job.errors)) for job in again} == {
        (JobState.AVAILABLE, 0, 1)
    }


def test_discard_delete_and_cancel_by_id_and_filter(url: str) -> None:
    """discard records the reason; a skipped job is explained; delete and cancel by filter."""
    ids = seed(url)
    report = ids["reports"][0]
    out = run("jobs", "discard", str(report), "--reason", "not needed", "-t", url)
    assert out.stdout == f"discarded 1 job: {report}\n"
    (job,) = stored(url, JobFilter(ids=[report]))
    assert (job.state, job.last_error, job.errors[-1].type) == (
        JobState.DEAD,
        "not needed",
        "Discarded",
    )
    skipped = run("jobs", "discard", str(report), "-t", url)
    assert "dead, which discard does not take (skipped)" in skipped.stderr
    assert skipped.stdout == "discarded 0 jobs\n"
    cancelled = run("jobs", "cancel", "--queue", "reports", "-t", url)
    assert cancelled.stdout == f"cancelled 1 job: {ids['reports'][1]}\n"
    deleted = run("jobs", "delete", "--state", "dead", "--limit", "2", "-t", url)
    assert deleted.stdout.startswith("deleted 2 jobs")
    assert len(stored(url, JobFilter(states=[JobState.DEAD]))) == 2
    assert run("jobs", "delete", "--all", "-t", url).stdout.startswith("deleted 4 jobs")
    assert stored(url) == []


def test_every_jobs_command_has_help() -> None:
    """-h works on the group and each subcommand."""
    jobs = main.commands["jobs"]
    assert "Usage: actorq jobs" in run("jobs", "-h").stdout
    for name in jobs.commands:  # type: ignore[attr-defined]
        assert f"Usage: actorq jobs {name}" in run("jobs", name, "-h").stdout
