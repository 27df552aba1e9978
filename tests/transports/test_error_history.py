"""A job's stored error history and headers, whatever wrote them, never crash a reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from transports import AttemptError, EnqueueRequest, SQLiteTransport
from transports.lowlevel import decode_errors

pytestmark = pytest.mark.anyio

GOOD = {"attempt": 2, "at": 5.5, "owner": "w", "type": "E", "message": "m", "traceback": None}


@pytest.mark.parametrize(
    "stored",
    ["", "not json", "{}", "5", "null", '"[]"', b"\xff", None, [1, "x", None], [{"attempt": 1}]],
)
def test_malformed_history_reads_as_empty(stored: object) -> None:
    """Text that is not a JSON array of error objects reads as no errors."""
    assert decode_errors(stored) == ()


def test_malformed_entries_are_skipped_and_good_ones_kept() -> None:
    """One bad entry does not hide the good ones around it."""
    errors = decode_errors([GOOD, {"attempt": "x"}, "junk", {**GOOD, "attempt": 3}])
    assert [e.attempt for e in errors] == [2, 3]
    assert errors[0] == AttemptError(
        attempt=2, at=5.5, owner="w", type="E", message="m", traceback=None
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite's own loop; the conformance suite covers trio


async def test_a_row_written_by_another_tool_still_reads(tmp_path: Path) -> None:
    """Junk in the errors and headers columns reads as empty, not as a crash."""
    path = tmp_path / "jobs.db"
    async with SQLiteTransport(str(path)) as transport:
        job_id = (await transport.enqueue(EnqueueRequest(kind="k"))).job_id
        conn = sqlite3.connect(path)
        conn.execute("UPDATE jobs SET errors = 'oops', headers = '[1, 2]' WHERE id = ?", (job_id,))
        conn.commit()
        conn.close()
        job = await transport.get(job_id)
        assert (job.errors, job.headers) == ((), {})
