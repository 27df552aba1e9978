"""Every bug a regression test guards, with the mutant that puts it back.

A regression test that passes with its bug back in has lost its teeth: ``test_teeth.py`` runs
each bug's tests with its mutant active and fails unless every one of them fails. A bug is
either a patch of the Python code (``patch``) or a rewrite of one named SQL query
(``sql``, see :class:`transports.testing.SQLMutant`). The tests are pytest node ids, run as
given (both event loops where the test has both).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import attrs
import pytest

from transports.testing import SQLMutant

Patch = Callable[[pytest.MonkeyPatch], None]


@attrs.frozen(kw_only=True)
class Bug:
    """A bug that once shipped (or that the fencing design exists to prevent)."""

    #: A short, stable name: ``ACTORQ_MUTANT=<name>`` puts the bug back for a test run.
    name: str
    #: What went wrong, in a sentence.
    story: str
    #: Tests that must fail while the bug is back (pytest node ids from the repo root).
    tests: tuple[str, ...]
    #: Puts the bug back in Python code (monkeypatch, undone after each test).
    patch: Patch | None = None
    #: Or puts it back in a named SQL query.
    sql: SQLMutant | None = None
    #: Runs of its tests under the mutant, of which each test must fail in at least one: more
    #: than one only for a bug that shows through a real race (a server-closed connection
    #: the driver may or may not have noticed yet), never to hide a test without teeth.
    runs: int = 1

    def active(self, monkeypatch: pytest.MonkeyPatch) -> AbstractContextManager[Any]:
        """Apply the mutant for one test."""
        if self.patch is not None:
            self.patch(monkeypatch)
        return self.sql.active() if self.sql is not None else nullcontext()


def _notices_without_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.jobs.lowlevel import Worker

    original = Worker._on_lost

    def on_lost(self: Worker, job_ids: tuple[int, ...], tokens: tuple[int, ...] = ()) -> None:
        original(self, job_ids, ())  # any claim of the job counts as lost

    monkeypatch.setattr(Worker, "_on_lost", on_lost)


def _starts_on_any_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.jobs import _decide

    monkeypatch.setattr(_decide, "may_start", lambda **_: True)


def _sqlite_url_from_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from transports import SQLiteTransport

    original = SQLiteTransport.__init__
    # The bug resolved sqlite:///x.db against the filesystem root; the mutant resolves it
    # against another directory instead, which is the same mistake without writing at /.
    root = tempfile.mkdtemp(prefix="actorq-root-")

    def init(self: Any, path: str, *args: Any, **kwargs: Any) -> None:
        if path != ":memory:" and not path.startswith("/"):
            path = f"{root}/{path}"
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(SQLiteTransport, "__init__", init)


def _pool_keeps_dead_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    from transports._postgres import PostgresTransport, _mapped

    async def run(self: Any, call: Any, *, idempotent: bool = False) -> Any:
        with _mapped():  # no renewal of the pool, no second try
            return await call()

    monkeypatch.setattr(PostgresTransport, "_run", run)


def _sqlite_without_a_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from transports import SQLiteTransport

    async def start_watcher(self: Any) -> None:
        return None  # other processes' commits are seen only by polling

    monkeypatch.setattr(SQLiteTransport, "_start_watcher", start_watcher)


def _limit_ignores_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from transports import MemoryTransport

    # The limiter counts only what its own claim takes, not the jobs already running.
    monkeypatch.setattr(MemoryTransport, "_live", lambda self, key, now: 0)


_SQLITE = "tests/transports/test_sqlite.py::TestSQLiteConformance"
_POSTGRES = "tests/transports/test_postgres.py::TestPostgresConformance"


def _stale_token(suite: str, *outcomes: str) -> tuple[str, ...]:
    """The cases of ``test_stale_token_changes_nothing`` finalizing ``outcomes`` late (a
    batch of successes only takes a statement of its own), on both loops."""
    return tuple(
        f"{suite}::test_stale_token_changes_nothing[{loop}-{outcome}]"
        for loop in ("asyncio", "trio")
        for outcome in outcomes
    )


_NOT_SUCCESSES = ("Retry", "Snooze", "Discard", "Cancel", "Release")

BUGS: tuple[Bug, ...] = (
    Bug(
        name="lost-lease-notice-without-token",
        story="A late lost-lease notice about an old claim cancelled a newer claim of the same "
        "job, which then ran forever while its lease kept being renewed.",
        tests=(
            "tests/regressions/test_runtime.py::test_a_stale_lost_lease_notice_spares_a_newer_claim",
        ),
        patch=_notices_without_tokens,
    ),
    Bug(
        name="start-on-an-expired-lease",
        story="A worker resumed after SIGSTOP past its lease started the handlers it had "
        "claimed before the pause, whose leases had expired; most of those jobs had already "
        "run elsewhere (fencing refused the finalizes, but the side effects ran twice).",
        tests=(
            "tests/regressions/test_runtime.py::"
            "test_a_node_resumed_past_its_lease_never_starts_what_it_claimed_before",
        ),
        patch=_starts_on_any_lease,
    ),
    Bug(
        name="sqlite-url-from-the-root",
        story="sqlite:///jobs.db was read as the absolute path /jobs.db, so the CLI default "
        "and the README example wrote at the filesystem root.",
        tests=("tests/transports/test_sqlite.py::test_connect_url_with_three_slashes_is_relative",),
        patch=_sqlite_url_from_the_root,
    ),
    Bug(
        name="sqlite-finalize-ignores-token",
        story="SQLite's finalize matches the job but not the lease token: a worker that lost "
        "its lease overwrites the new owner's result.",
        tests=_stale_token(_SQLITE, *_NOT_SUCCESSES),
        sql=SQLMutant(
            dialect="sqlite",
            query="finalize",
            old="JOIN jobs ON jobs.id = requests.id AND jobs.lease_token = requests.token",
            new="JOIN jobs ON jobs.id = requests.id",
        ),
    ),
    Bug(
        name="sqlite-finalize-of-successes-ignores-token",
        story="SQLite's finalize of a batch of successes only matches the job but not the "
        "lease token: a worker that lost its lease completes the new owner's run.",
        tests=_stale_token(_SQLITE, "Complete"),
        sql=SQLMutant(
            dialect="sqlite",
            query="finalize_complete",
            old=" AND jobs.lease_token = requests.token",
        ),
    ),
    Bug(
        name="sqlite-renew-revives-expired",
        story="SQLite's renew extends a lease that already expired but was not reaped yet, so "
        "two workers can both believe they own the job.",
        tests=(f"{_SQLITE}::test_renew_never_revives_an_expired_lease",),
        sql=SQLMutant(dialect="sqlite", query="renew", old="AND jobs.lease_expires_at > :now"),
    ),
    Bug(
        name="sqlite-reap-ignores-expiry",
        story="SQLite's reap takes back live leases, so a job runs twice at once.",
        tests=(f"{_SQLITE}::test_reap_leaves_live_leases_alone",),
        sql=SQLMutant(
            dialect="sqlite",
            query="expired_leases",
            old="AND lease_expires_at <= :now",
        ),
    ),
    Bug(
        name="postgres-finalize-ignores-token",
        story="PostgreSQL's finalize matches the job but not the lease token: a stale worker "
        "overwrites the new owner's result.",
        tests=_stale_token(_POSTGRES, *_NOT_SUCCESSES),
        sql=SQLMutant(
            dialect="postgres",
            query="finalize",
            old="WHERE j.id = req.id AND j.lease_token = req.token",
            new="WHERE j.id = req.id AND j.state = 'running'",
        ),
    ),
    Bug(
        name="postgres-finalize-of-successes-ignores-token",
        story="PostgreSQL's finalize of a batch of successes only matches the job but not the "
        "lease token: a stale worker completes the new owner's run.",
        tests=_stale_token(_POSTGRES, "Complete"),
        sql=SQLMutant(
            dialect="postgres",
            query="finalize_complete",
            old="WHERE j.id = req.id AND j.lease_token = req.token",
            new="WHERE j.id = req.id AND j.state = 'running'",
        ),
    ),
    Bug(
        name="postgres-renew-ignores-token",
        story="PostgreSQL's renew extends any lease of the job, so a worker whose lease was "
        "reaped and reclaimed keeps renewing the new owner's lease.",
        tests=(f"{_POSTGRES}::test_renew_after_reap_and_reclaim_is_lost",),
        sql=SQLMutant(
            dialect="postgres",
            query="renew",
            old="j.id = req.id AND j.lease_token = req.token",
            new="j.id = req.id",
        ),
    ),
    Bug(
        name="postgres-reap-ignores-expiry",
        story="PostgreSQL's reap takes back live leases, so a job runs twice at once.",
        tests=(f"{_POSTGRES}::test_reap_leaves_live_leases_alone",),
        sql=SQLMutant(
            dialect="postgres",
            query="reap",
            old="AND lease_expires_at <= (SELECT t FROM now)",
        ),
    ),
    Bug(
        name="postgres-pool-hands-out-dead-connections",
        story="After the server terminated a backend, the pool handed the next call a "
        "connection the server had already closed, so a healthy server still answered "
        "ConnectionLost (a flaky fault test; 'another operation is in progress' in chaos).",
        tests=(
            "tests/transports/test_postgres_faults.py::test_the_next_call_after_a_kill_works_fifty_times_in_a_row",
            "tests/transports/test_postgres_faults.py::test_an_idempotent_read_retries_once_on_a_closed_connection",
        ),
        patch=_pool_keeps_dead_connections,
        # On a loaded machine the driver sometimes notices a terminated backend before the
        # next call, and then hands out a fresh connection even with the bug back (a clean
        # CI run once saw three runs of fifty kills pass that way).
        runs=8,
    ),
    Bug(
        name="sqlite-wake-up-is-a-poll",
        story="A job enqueued by another process on SQLite waited for the idle worker's poll "
        "interval (p50 404 ms, p99 984 ms at 200 jobs/s offered): nothing told the worker.",
        tests=(
            "tests/transports/test_sqlite.py::test_a_commit_by_another_connection_wakes_a_waiter",
            "tests/transports/test_sqlite.py::test_a_commit_by_another_process_wakes_a_waiter",
        ),
        patch=_sqlite_without_a_watcher,
    ),
)

BUGS += (
    Bug(
        name="memory-limit-ignores-running",
        story="A key's limit counted only the jobs of the claim at hand, so claims one after "
        "another (or two nodes) ran more of the key at once than its limit.",
        tests=(
            "tests/transports/test_memory.py::TestMemoryConformance::test_finishing_or_expiring_frees_a_slot",
            "tests/transports/test_memory.py::TestMemoryConformance::test_a_limit_counts_jobs_started_before_it_was_set",
            "tests/jobs/test_flow.py::test_two_nodes_hold_a_key_limit_and_finish_every_job[asyncio-memory]",
            "tests/jobs/test_flow.py::test_two_nodes_hold_a_key_limit_and_finish_every_job[trio-memory]",
        ),
        patch=_limit_ignores_running,
    ),
    Bug(
        name="sqlite-limit-per-candidate-ignored",
        story="SQLite's claim passed over full keys but started every candidate of a key with "
        "room, so one claim of many jobs overshot the key's free slots.",
        tests=(f"{_SQLITE}::test_the_claim_starts_no_more_of_a_key_than_its_free_slots",),
        sql=SQLMutant(
            dialect="sqlite", query="claim", old="WHERE l.key IS NULL", new="WHERE 1 = 1"
        ),
    ),
    Bug(
        name="postgres-queue-cap-without-queue-lock",
        story="PostgreSQL's claim counted a queue's live leases against its cluster-wide cap "
        "without locking the queue's row, so racing nodes together ran more than the cap.",
        tests=("tests/transports/test_postgres.py::test_racing_nodes_never_exceed_a_queue_cap",),
        sql=SQLMutant(
            dialect="postgres",
            query="claim_candidates",
            old="WHERE name = $1::text AND global_concurrency IS NOT NULL\n    FOR UPDATE\n",
            new="WHERE name = $1::text AND global_concurrency IS NOT NULL\n",
        ),
    ),
    Bug(
        name="postgres-limit-without-key-lock",
        story="PostgreSQL's claim counted a key's live leases without locking the key's limits "
        "row: claimers racing on several nodes each saw room and together ran more than the "
        "limit (FOR UPDATE SKIP LOCKED on the jobs does not serialize a count).",
        tests=("tests/transports/test_postgres.py::test_racing_nodes_never_exceed_a_key_limit",),
        sql=SQLMutant(
            dialect="postgres", query="claim_candidates", old="    ORDER BY l.key\n    FOR UPDATE\n"
        ),
    ),
    Bug(
        name="sqlite-rate-window-closed",
        story="SQLite's claim counted a start still at the very end of its key's rate window "
        "(>= for >): a start at t held its slot at t + per too, so jobs waited with room.",
        tests=(
            f"{_SQLITE}::test_the_window_slides_start_by_start",
            f"{_SQLITE}::test_a_rate_caps_the_starts_of_a_window",
        ),
        sql=SQLMutant(
            dialect="sqlite",
            query="claim",
            old="s.at > :now - l.per",
            new="s.at >= :now - l.per",
        ),
    ),
    Bug(
        name="postgres-rate-window-closed",
        story="PostgreSQL's claim, counting under the key's lock, kept a start at the very end "
        "of the rate window (>= for >): jobs of the key waited though it had room.",
        tests=(
            f"{_POSTGRES}::test_the_window_slides_start_by_start",
            f"{_POSTGRES}::test_a_rate_caps_the_starts_of_a_window",
        ),
        sql=SQLMutant(
            dialect="postgres",
            query="claim_chosen",
            old="AND s.at > (SELECT t FROM now) - l.per",
            new="AND s.at >= (SELECT t FROM now) - l.per",
        ),
    ),
    Bug(
        name="sqlite-results-pruned-under-a-running-dependent",
        story="SQLite's prune_results spared only a parent whose dependent was still pending: "
        "a fan-in already running read its members' results cleared.",
        tests=(f"{_SQLITE}::test_a_result_an_active_dependent_waits_for_is_kept",),
        sql=SQLMutant(
            dialect="sqlite",
            query="prune_results",
            old="c.state IN ('pending', 'scheduled', 'available', 'running', 'suspended')",
            new="c.state = 'pending'",
        ),
    ),
    Bug(
        name="postgres-results-pruned-under-a-running-dependent",
        story="PostgreSQL's prune_results spared only a parent whose dependent was still "
        "pending: a fan-in already running read its members' results cleared.",
        tests=(f"{_POSTGRES}::test_a_result_an_active_dependent_waits_for_is_kept",),
        sql=SQLMutant(
            dialect="postgres",
            query="prune_results",
            old="c.state IN ('pending', 'scheduled', 'available', 'running', 'suspended')",
            new="c.state = 'pending'",
        ),
    ),
)

BY_NAME = {bug.name: bug for bug in BUGS}
