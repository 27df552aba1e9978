"""``actorq workflows`` and the dependencies in ``actorq jobs show``, against a real SQLite
file. Bad input of every kind is in ``tests/edges/test_cli_edges.py``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

import transports
from actors.cli import main
from transports import After, EnqueueRequest, JobFilter, JobState


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


def run(*args: str) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def seed(url: str) -> list[int]:
    """Workflow order-7: charge, then two e-mails, then a receipt after both (runs anyway)."""

    async def go() -> list[int]:
        async with transports.connect(url) as store:
            results = await store.enqueue_many(
                [
                    EnqueueRequest(kind="charge", workflow="order-7"),
                    EnqueueRequest(kind="email", workflow="order-7", after=[After(index=0)]),
                    EnqueueRequest(kind="email", workflow="order-7", after=[After(index=0)]),
                    EnqueueRequest(
                        kind="receipt",
                        workflow="order-7",
                        after=[After(index=1, on_failure="run"), After(index=2)],
                    ),
                    EnqueueRequest(kind="other", workflow="order-8"),
                ]
            )
            return [result.job_id for result in results]

    return anyio.run(go)


def states(url: str, workflow: str) -> list[JobState]:
    async def go() -> list[JobState]:
        async with transports.connect(url) as store:
            return [job.state for job in await store.list_jobs(JobFilter(workflow=workflow))]

    return anyio.run(go)


def test_list_show_and_cancel_a_workflow(url: str) -> None:
    """list counts each workflow by state; show prints its jobs and their parents; cancel
    ends every active job of it and leaves the others alone."""
    ids = seed(url)
    listed = run("workflows", "list", "-t", url).stdout
    assert "order-7" in listed
    assert "order-8" in listed
    assert "2 workflows" in listed
    shown = run("workflows", "show", "order-7", "-t", url).stdout
    assert "workflow order-7: 4 jobs (1 available, 3 pending)" in shown
    assert f"{ids[1]} (runs anyway), {ids[2]}" in shown
    job = run("jobs", "show", str(ids[3]), "-t", url).stdout
    assert "order-7" in job
    assert f"{ids[1]}, {ids[2]}" in job
    cancelled = run("workflows", "cancel", "order-7", "-t", url).stdout
    assert cancelled.strip() == "cancelled 4 jobs of workflow order-7"
    assert states(url, "order-7") == [JobState.CANCELLED] * 4
    assert states(url, "order-8") == [JobState.AVAILABLE]
    missing = invoke("workflows", "show", "order-9", "-t", url)
    assert missing.exit_code == 1
    assert "no workflow is named 'order-9'" in missing.output
    assert "Traceback" not in missing.output
