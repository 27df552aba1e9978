"""With 1,000,000 jobs in PostgreSQL, every page is a bounded number of storage calls.

The bound of each page is :data:`actors.dashboard.QUERY_BOUNDS` (at most 2 calls; the job
list 1, a page of 50 found by keyset). The jobs are seeded in one ``INSERT ... SELECT
generate_series`` into this module's own schema, so seeding takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import pytest

import transports
from actors.dashboard import BULK_LIMIT, QUERY_BOUNDS, create_dashboard
from transports import JobFilter

from ._support import CountingTransport, client, csrf_of

JOBS = 1_000_000
pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.slow]

SEED = """
INSERT INTO {schema}.jobs (kind, queue, payload, state, run_at, attempt, max_attempts,
                           last_error, created_at, updated_at, finished_at)
SELECT 'kind.' || (g % 7),
       'queue' || (g % 5),
       jsonb_build_object('n', g),
       (ARRAY['succeeded', 'succeeded', 'succeeded', 'dead', 'available',
              'scheduled', 'cancelled', 'succeeded'])[1 + g % 8],
       1.7e9 + g, 1, 3,
       CASE WHEN g % 8 = 3 THEN 'ValueError: row ' || g END,
       1.7e9 + g, 1.7e9 + g,
       CASE WHEN g % 8 IN (0, 1, 2, 3, 6, 7) THEN 1.7e9 + g END
FROM generate_series(1, {jobs}) AS g
"""


@pytest.fixture(scope="module")
def million(postgres_dsn: str) -> Iterator[str]:
    """A store URL whose schema holds JOBS jobs over 5 queues and 7 kinds."""
    schema = f"t_million_{uuid.uuid4().hex[:8]}"
    url = f"{postgres_dsn}?schema={schema}"
    import asyncpg

    async def seed() -> None:
        async with transports.connect(url):
            pass  # creates and migrates the schema
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(SEED.format(schema=f'"{schema}"', jobs=JOBS))
            await conn.execute(f'ANALYZE "{schema}".jobs')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(seed())
    try:
        yield url
    finally:
        asyncio.run(drop())


async def test_every_page_makes_a_bounded_number_of_storage_calls(million: str) -> None:
    """Each page of a million-job store renders with at most its stated number of calls."""
    async with transports.connect(million, create=False) as inner:
        counting = CountingTransport(inner)
        app = create_dashboard(counting, token="tok")
        async with client(app, headers={"authorization": "Bearer tok"}) as http:
            csrf = await csrf_of(http, "/login")
            counting.take()
            pages = {
                "overview": "/",
                "overview_partial": "/partials/overview",
                "counts_json": "/api/counts",
                "queues": "/queues",
                "jobs": "/jobs?state=dead&queue=queue3",
                "jobs_newest": "/jobs",
                "job": "/jobs/500000",
                "nodes": "/nodes",
                "correctness": "/correctness?window=24h",
                "schedules": "/schedules",
                "workflows": "/workflows",
                "partitions": "/queues/queue1/partitions",
            }
            for name, path in pages.items():
                page = await http.get(path)
                assert page.status_code == 200, (name, page.text)
                assert counting.take() <= QUERY_BOUNDS[name.split("_newest")[0]], (
                    name,
                    counting.calls,
                )
            overview = await http.get("/")
            assert f'<th class="num">{JOBS}</th>' in overview.text
            counting.take()

            listing = await http.get(
                "/jobs", params={"state": "dead", "after": "900000", "order": "oldest"}
            )
            rows = re.findall(r'href="http://dash.test/jobs/(\d+)"', listing.text)
            assert len(rows) == 50
            assert all(int(r) > 900000 for r in rows)
            assert 'id="next-page"' in listing.text
            assert counting.take() <= QUERY_BOUNDS["jobs"]
            newest = await http.get("/jobs", params={"state": "dead", "before": "100000"})
            rows = [int(r) for r in re.findall(r'href="http://dash.test/jobs/(\d+)"', newest.text)]
            assert rows == sorted(rows, reverse=True)
            assert len(rows) == 50
            assert rows[0] < 100000
            assert counting.take() <= QUERY_BOUNDS["jobs"]
            found = await http.get("/jobs", params={"state": "dead", "error": "row 77"})
            assert found.status_code == 200
            assert counting.take() <= QUERY_BOUNDS["jobs"]

            actions = {
                "queue_update": ("/queues/queue1", {"action": "pause"}),
                "job_action": ("/jobs/5/cancel", {}),  # 5 % 8 == 5: scheduled
                "jobs_bulk": (
                    "/jobs/bulk",
                    {"action": "retry", "state": "dead", "queue": "queue3"},
                ),
            }
            # (The schema is the module's: the other loop's run may have retried some already.)
            dead3 = JobFilter(queue="queue3", states=[transports.JobState.DEAD])
            batch = await inner.list_jobs(dead3, limit=BULK_LIMIT + 1)
            for name, (path, data) in actions.items():
                answer = await http.post(path, data={"csrf": csrf, **data})
                assert answer.status_code == 303, (name, answer.text)
                assert counting.take() <= QUERY_BOUNDS[name], (name, counting.calls)
        assert (await inner.get_queue_config("queue1")).paused
        assert (await inner.get(5)).state is transports.JobState.CANCELLED
        # One batch: the lowest BULK_LIMIT dead jobs of queue3 run again, not one more.
        assert (await inner.get(batch[0].id)).state is transports.JobState.AVAILABLE
        assert (await inner.get(batch[-2].id)).state is transports.JobState.AVAILABLE
        assert (await inner.get(batch[-1].id)).state is transports.JobState.DEAD
