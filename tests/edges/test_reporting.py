"""How any exception a command meets becomes one line: what, what to do, and the status.

The command catches everything a request can raise (transport, job runtime, actor and OS
errors, and the unexpected) and reports it through ``describe``; these cases drive each path
through a real command by making the store raise it.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import transports
from actors.cli._errors import describe
from actors.core import ActorCrashed
from actors.jobs import ConfigInvalid, LeaseLost

from .conftest import assert_one_line_error, cli

URL = "postgresql://app:hunter2@db.example/app"

CASES: list[tuple[str, BaseException, int, str]] = [
    ("store-connection-lost", transports.ConnectionLost(f"connection to {URL} refused"), 1,
     "lost the store: connection to postgresql://app:***@db.example/app refused"),
    ("store-closed", transports.TransportClosed("closed"), 1, "TransportClosed: closed"),
    ("store-schema-mismatch", transports.SchemaVersionMismatch("schema 9, code 3"), 1,
     'run "actorq migrate -t postgresql://app:***@db.example/app" with this version'),
    ("store-not-found", transports.StoreNotFound("no schema"), 1,
     "no store at postgresql://app:***@db.example/app"),
    ("store-invalid-request", transports.InvalidRequest("priority out of range"), 2,
     "priority out of range (fix the value; nothing was written)"),
    ("job-config-invalid", ConfigInvalid("lease_ttl must be > 0"), 2, "lease_ttl must be > 0"),
    ("job-error", LeaseLost("job 3"), 1, "LeaseLost: job 3 (run with -v for the traceback)"),
    ("actor-error", ActorCrashed("worker"), 1, "the node failed: ActorCrashed: worker"),
    ("os-permission", PermissionError(errno.EACCES, "Permission denied", "/var/jobs.db"), 1,
     "Permission denied: /var/jobs.db (check the file's permissions)"),
    ("os-read-only", OSError(errno.EROFS, "Read-only file system", "/ro/jobs.db"), 1,
     "Read-only file system: /ro/jobs.db (check the file's permissions)"),
    ("os-missing", FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"), 1,
     "No such file or directory: /x (check the path)"),
    ("unexpected", RuntimeError("boom"), 1,
     "unexpected RuntimeError: boom (run with -v for the traceback)"),
    ("unexpected-empty", KeyError(), 1, "unexpected KeyError: KeyError"),
    ("group-of-one", ExceptionGroup("tasks", [transports.ConnectionLost("reset")]), 1,
     "lost the store: reset"),
    ("nested-groups", ExceptionGroup("a", [ExceptionGroup("b", [RuntimeError("deep")])]), 1,
     "unexpected RuntimeError: deep"),
    ("multi-line", RuntimeError("first\nsecond"), 1, "unexpected RuntimeError: first second"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "code", "message"), [c[1:] for c in CASES], ids=[f"raised-{c[0]}" for c in CASES]
)
def test_any_error_is_one_line(
    exc: BaseException, code: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`actorq status` on a store that raises: one line with the hint, its status, no password."""

    @asynccontextmanager
    async def raising(url: str, **options: Any) -> AsyncIterator[None]:
        raise exc
        yield

    monkeypatch.setattr(transports, "connect", raising)
    result = cli(["status", "-t", URL])
    assert_one_line_error(result, code, message)
    assert "hunter2" not in result.output


def test_verbose_prints_the_traceback_of_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    """With -v the traceback comes first, the same one line last."""

    @asynccontextmanager
    async def raising(url: str, **options: Any) -> AsyncIterator[None]:
        raise RuntimeError("boom")
        yield

    monkeypatch.setattr(transports, "connect", raising)
    result = cli(["status", "-t", "sqlite:///x.db", "-v"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "actorq: error: unexpected RuntimeError: boom (run with -v for the traceback)"
    )


def test_describe_without_a_url_keeps_the_message() -> None:
    """Outside a command (no URL known) the store's own message is kept."""
    failure = describe(transports.StoreNotFound("no SQLite database at x.db"))
    assert failure.format_message().startswith("no SQLite database at x.db (run")
