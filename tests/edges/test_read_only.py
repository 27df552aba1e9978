"""A store this process may only read: a clear error at once, never a worker that spins.

The file is made immutable with ``chattr +i``, which binds root too (CI runs as root, for whom
file permissions mean nothing); where ``chattr`` is not allowed the tests skip.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from transports import EnqueueRequest, SQLiteTransport, StoreReadOnly

from .conftest import assert_one_line_error, cli


def _chattr(flag: str, *paths: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    """A migrated SQLite file holding one job, then made immutable (undone afterwards)."""
    path = tmp_path / "jobs.db"

    async def seed() -> None:
        async with SQLiteTransport(str(path)) as transport:
            await transport.enqueue(EnqueueRequest(kind="report.build", payload=1))

    anyio.run(seed)
    if not _chattr("+i", path):
        pytest.skip("chattr +i is not allowed here")
    try:
        yield path
    finally:
        _chattr("-i", path)


def test_opening_a_read_only_file_for_work_raises_store_read_only(read_only_db: Path) -> None:
    """``open()`` finds out at once (one write, rolled back), instead of the first claim; a
    read-only opening (``create=False``) still reads."""

    async def check() -> None:
        with pytest.raises(StoreReadOnly, match="read-only"):
            async with SQLiteTransport(str(read_only_db)):
                pass
        async with SQLiteTransport(str(read_only_db), create=False) as transport:
            assert sum(c.total for c in await transport.counts()) == 1

    anyio.run(check)


def test_a_worker_on_a_read_only_file_exits_with_one_line(
    read_only_db: Path, apps: dict[str, str]
) -> None:
    """``actorq worker`` says the store is read-only and what to do, exit 1, no traceback;
    ``actorq status`` still shows the store."""
    url = f"sqlite:///{read_only_db}"
    result = cli(["worker", f"{apps['good']}:app", "-t", url])
    assert_one_line_error(result, 1, "read-only")
    status = cli(["status", "-t", url])
    assert status.exit_code == 0, status.output
    assert "default" in status.stdout
