"""Run async transports from hypothesis's synchronous tests: one event loop in a thread.

A :class:`Harness` owns a blocking portal (an asyncio or trio loop in a worker thread), one
:class:`~transports.testing.ManualClock`, and several transport instances over one store, as
several nodes would see it. SQL backends stay open for a whole test and are wiped between
examples (opening and migrating a database per example would dominate the run); the memory
backend gets a fresh store every example. Under trio, SQL backends run behind
:class:`~transports.lowlevel.BridgedTransport`, as ``transports.connect`` would arrange.

A wipe leaves the store as new: every table emptied and every counter restarted (SQLite's
``sqlite_sequence``; PostgreSQL's job identity and ``lease_tokens`` sequence), and the clock is
set back to ``START``. So an example replayed while hypothesis shrinks it sees the same ids,
tokens and times as the run it replays.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import note

from transports import MemoryTransport, Transport
from transports.lowlevel import BridgedTransport
from transports.testing import ManualClock

from .model import Violation
from .strategies import START

__all__ = ["Backend", "Harness", "MemoryBackend", "PostgresBackend", "SQLiteBackend"]

T = TypeVar("T")

SQLITE_TABLES = (
    "jobs",
    "job_edges",
    "leaders",
    "cursors",
    "queue_configs",
    "nodes",
    "stats",
    "limits",
    "key_starts",
    "cooldowns",
    "steps",
    "signals",
    "job_edges",
    "partitions",
)
"""Every SQLite table of the store (``transports/sql/sqlite/schema.sql``), emptied per example."""

POSTGRES_TABLES = (
    "jobs",
    "steps",
    "leaders",
    "cursors",
    "queues",
    "nodes",
    "stats",
    "limits",
    "key_starts",
    "cooldowns",
    "signals",
    "job_edges",
    "partitions",
)
"""Every PostgreSQL table of the store but ``schema_version``, emptied per example."""


class Backend(abc.ABC):
    """How to get ``n`` transports over one empty store, example after example."""

    name: str

    @abc.abstractmethod
    async def fresh(self, clock: ManualClock, loop: str, n: int) -> list[Transport]:
        """Open transports on an empty store (called on the harness's loop)."""

    async def aclose(self) -> None:
        """Close whatever stays open between examples (called on the harness's loop)."""
        return None


class MemoryBackend(Backend):
    """A new memory store per example, shared by ``n`` transports.

    Args:
        transport_cls: the transport class (a mutant in the mutant tests).
    """

    name = "memory"

    def __init__(self, transport_cls: type[MemoryTransport] = MemoryTransport) -> None:
        self.transport_cls = transport_cls
        self._open: list[Transport] = []

    async def fresh(self, clock: ManualClock, loop: str, n: int) -> list[Transport]:
        await self.aclose()
        first = self.transport_cls(clock=clock)  # a fresh store, shared with the others
        self._open = [first] + [
            self.transport_cls(clock=clock, store=first.store) for _ in range(n - 1)
        ]
        return list(self._open)

    async def aclose(self) -> None:
        for transport in self._open:
            await transport.aclose()
        self._open = []


class _SQLBackend(Backend):
    """Transports opened once per test, on a store wiped before each example."""

    def __init__(self) -> None:
        self._open: list[Transport] = []

    @abc.abstractmethod
    def build(self, clock: ManualClock) -> Transport:
        """One unopened asyncio-side transport on the shared store."""

    @abc.abstractmethod
    def wipe(self) -> None:
        """Empty the store (from the test's thread, while no call is in flight)."""

    async def fresh(self, clock: ManualClock, loop: str, n: int) -> list[Transport]:
        if not self._open:
            for _ in range(n):
                if loop == "trio":
                    transport: Transport = BridgedTransport(lambda: self.build(clock))
                else:
                    transport = self.build(clock)
                await transport.open()
                self._open.append(transport)
        return list(self._open)

    async def aclose(self) -> None:
        for transport in self._open:
            await transport.aclose()
        self._open = []


class SQLiteBackend(_SQLBackend):
    """``n`` transports on one database file, as ``n`` processes of one machine.

    Args:
        path: the database file.
        transport_cls: the transport class (a mutant in the mutant tests).
    """

    name = "sqlite"

    def __init__(self, path: str, transport_cls: type[Transport] | None = None) -> None:
        super().__init__()
        from transports import SQLiteTransport

        self.path = path
        self.transport_cls: Any = transport_cls or SQLiteTransport

    def build(self, clock: ManualClock) -> Transport:
        transport: Transport = self.transport_cls(self.path, clock=clock)
        return transport

    def wipe(self) -> None:
        if not self._open:
            return
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as conn, conn:
            for table in SQLITE_TABLES:
                conn.execute(f"DELETE FROM {table}")
            # AUTOINCREMENT ids count on in sqlite_sequence after a DELETE: restart them, so
            # every example numbers its jobs from 1. (Lease tokens and leader epochs live in
            # the rows just deleted.)
            conn.execute("DELETE FROM sqlite_sequence")


class PostgresBackend(_SQLBackend):
    """``n`` connection pools on one schema, as ``n`` machines.

    Args:
        dsn: the server.
        schema: a schema of this test's own (dropped by the fixture that named it).
        transport_cls: the transport class (a mutant in the mutant tests).
    """

    name = "postgres"

    def __init__(self, dsn: str, schema: str, transport_cls: type[Transport] | None = None) -> None:
        super().__init__()
        from transports import PostgresTransport

        self.dsn = dsn
        self.schema = schema
        self.transport_cls: Any = transport_cls or PostgresTransport
        self._runner: asyncio.Runner | None = None
        self._admin: Any = None

    def build(self, clock: ManualClock) -> Transport:
        transport: Transport = self.transport_cls(
            self.dsn, schema=self.schema, clock=clock, pool_size=2
        )
        return transport

    def wipe(self) -> None:
        if not self._open:
            return
        import asyncpg

        if self._runner is None:
            # A loop of the test's own thread, kept for the test: one admin connection.
            self._runner = asyncio.Runner()
            self._admin = self._runner.run(asyncpg.connect(self.dsn))
        self._runner.run(self._admin.execute(self._wipe_sql))

    @property
    def _wipe_sql(self) -> str:
        # TRUNCATE the jobs: a fresh heap, so rows lie in insertion order and one claim mints
        # its tokens in the same order in every replay (after a DELETE, where an UPDATE puts
        # a row depends on the dead rows left before). RESTART IDENTITY numbers the jobs
        # from 1 again; the token sequence belongs to no column and restarts on its own. The
        # small tables are DELETEd: much cheaper per example, and their order is by key.
        schema = f'"{self.schema}"'
        deletes = " ".join(
            f"DELETE FROM {schema}.{table};"
            for table in POSTGRES_TABLES
            if table not in ("jobs", "steps", "job_edges")
        )
        # The steps and the edges reference the jobs: truncated with them.
        return (
            f"BEGIN; TRUNCATE {schema}.jobs, {schema}.steps, {schema}.job_edges RESTART IDENTITY; {deletes}"
            f" SELECT setval('{schema}.lease_tokens', 1, false); COMMIT"
        )

    def close_admin(self) -> None:
        """Close the admin connection (from the test's thread)."""
        if self._runner is not None:
            self._runner.run(self._admin.close())
            self._runner.close()
            self._runner = None


class Harness:
    """An event loop in a thread, a manual clock and transports over one store.

    Use as a context manager around a whole hypothesis run; call :meth:`fresh` at the start of
    every example.

    Args:
        loop: "asyncio" or "trio".
        backend: where the transports keep their data.
        instances: how many transports (nodes) share the store.
        concurrent: whether calls made at one instant overlap (see :meth:`gather`); by
            default on memory only. A hunt for race bugs that needs no shrinking (the
            mutant tests) turns it on for SQL too.
    """

    def __init__(
        self, loop: str, backend: Backend, *, instances: int = 3, concurrent: bool | None = None
    ) -> None:
        self.loop = loop
        self.backend = backend
        self.instances = instances
        self.concurrent = not isinstance(backend, _SQLBackend) if concurrent is None else concurrent
        self.clock = ManualClock(START)
        self.examples = 0  # how many examples started
        # The first violation seen, and in which example: races need not repeat when hypothesis
        # replays an example, so the first sighting is the finding.
        self.found: Violation | None = None
        self.found_in = 0
        # What each example did and saw, one line per call (see :meth:`log`): two runs of the
        # same examples must leave the same traces.
        self.traces: list[list[str]] = []
        self._portal: BlockingPortal | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Harness:
        self._portal = self._stack.enter_context(start_blocking_portal(self.loop))
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.call(self.backend.aclose)
            if isinstance(self.backend, PostgresBackend):
                self.backend.close_admin()
        finally:
            self._stack.close()

    @property
    def description(self) -> str:
        return f"{self.backend.name}/{self.loop}"

    def fresh(self) -> list[Transport]:
        """Start an example: the clock at ``START`` and transports over an empty store."""
        self.examples += 1
        self.traces.append([])
        self.clock.set(START)
        if isinstance(self.backend, _SQLBackend):
            self.backend.wipe()
        return self.call(self.backend.fresh, self.clock, self.loop, self.instances)

    def log(self, line: str) -> None:
        """Note a line of the current example: in hypothesis's report and in :attr:`traces`."""
        note(line)
        if self.traces:
            self.traces[-1].append(line)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Remember the first :class:`Violation` raised inside the block (and let it go on)."""
        try:
            yield
        except Violation as violation:
            if self.found is None:
                self.found, self.found_in = violation, self.examples
            raise

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the harness's loop and return its result."""
        assert self._portal is not None, "use the harness as a context manager"
        return self._portal.call(fn, *args)

    def gather(self, calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
        """Run calls made at one instant and return their results in order.

        On the memory backend they run concurrently, as separate tasks, started in order: one
        loop schedules them the same way every time. On SQL backends they run one after
        another, in order, unless the harness is ``concurrent``: which of two overlapping
        statements the server lets through first differs from run to run, and an example
        whose answers differ when hypothesis replays it cannot shrink. (Real overlap on SQL is
        what ``interleavings.py`` tests, and what the mutant hunt turns on.)
        """

        async def run_all() -> list[Any]:
            results: list[Any] = [None] * len(calls)
            if not self.concurrent:
                for index, call in enumerate(calls):
                    results[index] = await call()
                return results

            async def one(index: int) -> None:
                results[index] = await calls[index]()

            async with anyio.create_task_group() as tg:
                for index in range(len(calls)):
                    tg.start_soon(one, index)
            return results

        return self.call(run_all)
