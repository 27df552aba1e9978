"""Stores for the bad-input suite: seeded ones whose contents must not change, missing ones."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import pytest
from click.testing import CliRunner, Result

import transports
from actors.cli import main
from transports import EnqueueRequest, QueueConfig


@attrs.frozen
class Store:
    """A store URL and how to look at what it holds."""

    backend: str
    url: str
    exists: object  # () -> bool: is there a file / schema at all?

    def snapshot(self) -> object:
        """Everything a command could have changed: job counts by queue and state, configs."""

        async def read() -> object:
            async with transports.connect(self.url, create=False) as transport:
                counts = sorted(
                    (c.queue, tuple(sorted((s.value, c[s]) for s in transports.JobState)))
                    for c in await transport.counts()
                )
                configs = sorted(repr(c) for c in await transport.list_queue_configs())
                return counts, configs

        return anyio.run(read)


def _seed(url: str) -> None:
    async def run() -> None:
        async with transports.connect(url) as transport:
            await transport.enqueue_many(
                [
                    EnqueueRequest(kind="k", payload={"n": 1}),
                    EnqueueRequest(kind="email.welcome", queue="emails", payload=None),
                ]
            )
            await transport.set_queue_config(QueueConfig(name="emails", concurrency=2))

    anyio.run(run)


def _schema_exists(dsn: str, name: str) -> bool:
    import asyncio

    import asyncpg

    async def ask() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", name
            )
            return bool(found)
        finally:
            await conn.close()

    return asyncio.run(ask())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def missing_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """A URL naming no store: a SQLite file or a PostgreSQL schema that does not exist."""
    if backend == "sqlite":
        path = tmp_path / "missing.db"
        return Store(backend, f"sqlite:///{path}", path.exists)
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")  # dropped afterwards, if created
    return Store(backend, f"{dsn}?schema={schema}", lambda: _schema_exists(dsn, schema))


@pytest.fixture
def store(missing_store: Store) -> Store:
    """A migrated store holding two jobs and one queue config."""
    _seed(missing_store.url)
    return missing_store


def cli(args: list[str], *, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, args, input=stdin)


def assert_one_line_error(result: Result, code: int, message: str) -> None:
    """Exit ``code``, nothing on stdout, one ``actorq: error:`` line naming ``message``."""
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("actorq: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert lines[0].endswith(")"), lines[0]  # "(what to do)"


APP_MODULES = {
    "good": """
        import attrs
        from actors.jobs import App, JobContext

        app = App()

        @attrs.frozen
        class Welcome:
            user_id: int

        @app.task("email.welcome", queue="emails")
        async def welcome(ctx: JobContext, payload: Welcome) -> None:
            pass

        @app.task("report.build")
        async def report(ctx: JobContext, payload: int) -> None:
            pass

        not_an_app = 42

        def make_app():
            return app

        def broken_factory():
            raise RuntimeError("factory exploded")
        """,
    "syntax": "def broken(:\n    pass\n",
    "nameerror": "app = undefined_name\n",
    "baddep": "import actorq_no_such_dependency\n",
    "badcron": """
        from actors.jobs import App, JobContext

        app = App()

        @app.task("tick")
        async def tick(ctx: JobContext, payload: None) -> None:
            pass

        app.schedule("every", "* * * * * * *", tick)
        """,
    "exits": "raise SystemExit(3)\n",
}


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Module names of the App modules above, importable for this test only."""
    tag = uuid.uuid4().hex[:8]
    names = {}
    for key, source in APP_MODULES.items():
        name = f"edges_{key}_{tag}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names[key] = name
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield names
    for name in names.values():
        sys.modules.pop(name, None)
