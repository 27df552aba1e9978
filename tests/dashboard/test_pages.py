"""The dashboard's pages and actions, through HTTP, on every backend and both loops."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import transports
from actors.dashboard import create_dashboard
from actors.jobs import App, JobContext
from transports import (
    After,
    EnqueueRequest,
    JobFilter,
    JobState,
    MemoryTransport,
    QueueConfig,
    Transport,
)
from transports.lowlevel import Complete, FinalizeRequest

from ._support import CountingTransport, client, csrf_of, seed_dead, seed_retrying

pytestmark = pytest.mark.anyio
TOKEN = "t0ken-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def test_every_page_shows_the_store_and_actions_change_it(backend_store: Transport) -> None:
    """Overview, queues, jobs and a job render; pause, concurrency and cancel reach the backend_store."""
    await backend_store.enqueue_many(
        [EnqueueRequest(kind="email.send", queue="emails", payload={"to": "a@b.c"})] * 3
    )
    dead = await seed_dead(backend_store, queue="reports", error="KeyError: 'rows'")
    app = create_dashboard(backend_store, token=TOKEN)
    async with client(app, headers=AUTH) as http:
        overview = await http.get("/")
        assert overview.status_code == 200
        assert re.search(r"<td[^>]*>\s*<a[^>]*>emails</a>", overview.text)
        assert 'hx-trigger="every 2.0s"' in overview.text
        partial = await http.get("/partials/overview")
        assert partial.text.lstrip().startswith('<div id="overview-table"')
        assert 'data-history="[[' in partial.text
        counts = (await http.get("/api/counts")).json()
        assert counts["emails"]["available"] == 3
        assert counts["reports"]["dead"] == 1

        listing = await http.get("/jobs", params={"state": "dead"})
        assert f'href="http://dash.test/jobs/{dead}"' in listing.text
        assert "email.send" not in listing.text
        detail = await http.get(f"/jobs/{dead}")
        assert "KeyError: &#39;rows&#39;" in detail.text
        assert f'action="http://dash.test/jobs/{dead}/retry"' in detail.text
        assert f"/jobs/{dead}/cancel" not in detail.text  # a dead job is not cancellable
        assert f"/jobs/{dead}/discard" not in detail.text  # nor discarded again
        history = re.search(
            r'<table class="grid" id="error-history">(.*?)</table>', detail.text, re.S
        )
        assert history
        assert "worker-1" in history.group(1)

        csrf = await csrf_of(http, "/queues")
        paused = await http.post("/queues/emails", data={"csrf": csrf, "action": "pause"})
        assert paused.status_code == 303
        assert (await backend_store.get_queue_config("emails")).paused
        saved = await http.post(
            "/queues/emails",
            data={"csrf": csrf, "action": "save", "concurrency": "4", "retention": "3600"},
        )
        assert saved.status_code == 303
        assert await backend_store.get_queue_config("emails") == QueueConfig(
            name="emails", paused=True, concurrency=4, retention=3600.0
        )
        queues = await http.get("/queues")
        assert "Resume" in queues.text
        assert "1h" in queues.text
        await http.post("/queues/emails", data={"csrf": csrf, "action": "resume"})
        assert not (await backend_store.get_queue_config("emails")).paused

        (first, second, third) = await backend_store.list_jobs(JobFilter(queue="emails"))
        cancelled = await http.post(f"/jobs/{first.id}/cancel", data={"csrf": csrf})
        assert cancelled.status_code == 303
        assert (await backend_store.get(first.id)).state is JobState.CANCELLED
        shown = await http.get(cancelled.headers["location"])
        assert "cancel: cancelled" in shown.text

        retried = await http.post(f"/jobs/{dead}/retry", data={"csrf": csrf})
        assert "retry: done" in (await http.get(retried.headers["location"])).text
        job = await backend_store.get(dead)
        assert (job.state, job.attempt) == (JobState.AVAILABLE, 0)
        again = await http.post(f"/jobs/{dead}/retry", data={"csrf": csrf})
        assert "nothing changed" in (await http.get(again.headers["location"])).text

        discarded = await http.post(
            f"/jobs/{second.id}/discard", data={"csrf": csrf, "reason": "bad address"}
        )
        assert discarded.status_code == 303
        job = await backend_store.get(second.id)
        assert (job.state, job.last_error) == (JobState.DEAD, "bad address")
        deleted = await http.post(f"/jobs/{third.id}/delete", data={"csrf": csrf})
        assert deleted.headers["location"].startswith("http://dash.test/jobs?")
        with pytest.raises(transports.JobNotFound):
            await backend_store.get(third.id)
        unknown = await http.post(f"/jobs/{first.id}/explode", data={"csrf": csrf})
        assert unknown.status_code == 400
        missing = await http.post("/jobs/99999/retry", data={"csrf": csrf})
        assert missing.status_code == 303  # nothing matched: nothing changed
        assert (await http.post("/jobs/99999/cancel", data={"csrf": csrf})).status_code == 404


async def test_an_action_on_every_job_a_filter_matches_goes_in_bounded_batches(
    backend_store: Transport,
) -> None:
    """Retry all / cancel all / discard all act on the filter's jobs only, and never on all."""
    dead = [await seed_dead(backend_store, queue="reports", error=f"E{n}") for n in range(3)]
    other = await seed_dead(backend_store, queue="emails", error="E9")
    waiting = await backend_store.enqueue_many([EnqueueRequest(kind="a", queue="reports")] * 2)
    app = create_dashboard(backend_store, token=TOKEN)
    async with client(app, headers=AUTH) as http:
        page = await http.get("/jobs", params={"state": "dead", "queue": "reports"})
        assert 'id="bulk-actions"' in page.text
        assert 'id="bulk-actions"' not in (await http.get("/jobs")).text  # no filter: no bulk
        csrf = await csrf_of(http, "/jobs")
        done = await http.post(
            "/jobs/bulk",
            data={"csrf": csrf, "action": "retry", "state": "dead", "queue": "reports"},
        )
        assert done.status_code == 303
        assert "retry: 3 jobs" in (await http.get(done.headers["location"])).text
        for job_id in dead:
            assert (await backend_store.get(job_id)).state is JobState.AVAILABLE
        assert (await backend_store.get(other)).state is JobState.DEAD
        everything = await http.post("/jobs/bulk", data={"csrf": csrf, "action": "cancel"})
        assert everything.status_code == 400
        assert "every job is refused" in everything.text
        bad = await http.post(
            "/jobs/bulk", data={"csrf": csrf, "action": "retry", "state": "zombie"}
        )
        assert bad.status_code == 400
        done = await http.post(
            "/jobs/bulk",
            data={"csrf": csrf, "action": "discard", "queue": "reports", "reason": "stop"},
        )
        assert "discard: 5 jobs" in (await http.get(done.headers["location"])).text
        for job in await backend_store.list_jobs(JobFilter(queue="reports")):
            assert (job.state, job.last_error) == (JobState.DEAD, "stop")
        assert waiting[0].job_id in [
            j.id for j in await backend_store.list_jobs(JobFilter(queue="reports", error="stop"))
        ]


async def test_a_bad_queue_setting_is_shown_inline_and_nothing_is_written() -> None:
    """A concurrency out of range, or not a number, re-renders the page with the reason."""
    async with MemoryTransport() as store:
        await store.set_queue_config(QueueConfig(name="emails", concurrency=2))
        app = create_dashboard(store, token=TOKEN)
        async with client(app, headers=AUTH) as http:
            csrf = await csrf_of(http, "/queues")
            for concurrency, retention, reason in [
                ("20000", "", "concurrency"),
                ("two", "", "&#39;two&#39; is not a whole number"),
                ("3", "-5", "retention"),
                ("3", "inf", "retention"),
            ]:
                answer = await http.post(
                    "/queues/emails",
                    data={
                        "csrf": csrf,
                        "action": "save",
                        "concurrency": concurrency,
                        "retention": retention,
                    },
                )
                assert answer.status_code == 400, (concurrency, retention)
                (alert,) = re.findall(r'<p class="error" role="alert">([^<]*)</p>', answer.text)
                assert reason in alert
                assert await store.get_queue_config("emails") == QueueConfig(
                    name="emails", concurrency=2
                )
            unknown = await http.post("/queues/emails", data={"csrf": csrf, "action": "explode"})
            assert unknown.status_code == 400
            bad_name = await http.post("/queues/bad%20name", data={"csrf": csrf, "action": "pause"})
            assert bad_name.status_code == 400
            assert await store.list_queue_configs() == [QueueConfig(name="emails", concurrency=2)]


async def test_the_job_list_pages_by_id_and_refuses_bad_filters() -> None:
    """Keyset pages of 50, newest first or oldest first; bad filters are a 400."""
    async with MemoryTransport() as store:
        await store.enqueue_many([EnqueueRequest(kind="a", queue="q")] * 120)
        await seed_dead(store, queue="mail", error="Timeout while talking to the mail relay")
        app = create_dashboard(store, read_only=True)
        async with client(app) as http:
            for order, expected in [
                ("oldest", list(range(1, 121))),
                ("newest", list(range(120, 0, -1))),
            ]:
                seen: list[int] = []
                page = await http.get("/jobs", params={"queue": "q", "order": order})
                while True:
                    ids = [
                        int(i) for i in re.findall(r'href="http://dash.test/jobs/(\d+)"', page.text)
                    ]
                    assert len(ids) <= 50
                    seen.extend(ids)
                    following = re.search(r'id="next-page" href="([^"]+)"', page.text)
                    if following is None:
                        break
                    page = await http.get(following.group(1).replace("&amp;", "&"))
                assert seen == expected, order
            found = await http.get("/jobs", params={"error": "MAIL RELAY"})
            assert re.findall(r'href="http://dash.test/jobs/(\d+)"', found.text) == ["121"]
            for params, reason in [
                ({"state": "zombie"}, "unknown state"),
                ({"queue": "no spaces"}, "invalid queue name"),
                ({"kind": "x" * 200}, "invalid kind name"),
                ({"before": "-1"}, "the page cursor is between"),
                ({"after": "ten", "order": "oldest"}, "the page cursor is a whole number"),
            ]:
                answer = await http.get("/jobs", params=params)
                assert answer.status_code == 400, params
                assert reason in answer.text
            missing = await http.get("/jobs/999")
            assert missing.status_code == 404
            huge = await http.get(f"/jobs/{2**70}")
            assert huge.status_code == 404


async def test_the_payload_goes_through_the_redaction_hook() -> None:
    """``redact`` decides what of a payload the job page shows."""
    async with MemoryTransport() as store:
        (job,) = await store.enqueue_many(
            [EnqueueRequest(kind="charge", payload={"card": "4111111111111111", "amount": 5})]
        )

        def redact(job: object) -> object:
            payload = dict(getattr(job, "payload"))  # noqa: B009
            payload["card"] = "****"
            return payload

        app = create_dashboard(store, read_only=True, redact=redact)  # type: ignore[arg-type]
        async with client(app) as http:
            page = await http.get(f"/jobs/{job.job_id}")
            assert "4111" not in page.text
            assert "****" in page.text
            assert "amount" in page.text


async def test_a_retrying_job_shows_its_last_error_in_the_list() -> None:
    """The job list shows each job's last error next to its attempt count."""
    async with MemoryTransport() as store:
        await seed_retrying(store, queue="q", error="TimeoutError: upstream slow")
        app = create_dashboard(store, read_only=True)
        async with client(app) as http:
            page = await http.get("/jobs", params={"state": "scheduled"})
            assert "TimeoutError: upstream slow" in page.text
            assert "1/20" in page.text


class _Clock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


async def test_the_schedules_page_shows_each_schedules_last_and_next_tick() -> None:
    """Each schedule of the App, with its stored cursor and its next tick after now."""
    app = App()

    @app.task("report.build")
    async def build(ctx: JobContext, payload: None) -> None:
        pass

    app.schedule("nightly", "0 3 * * *", "report.build")
    app.schedule("hourly", "0 * * * *", "report.build", queue="reports")
    app.schedule("broken", "*/5 * * * *", "report.build")
    now = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC
    async with MemoryTransport() as store:
        nightly, _hourly, _broken = app.schedules
        await store.advance_cursor(nightly.cursor, expected=None, new=1_795_964_400.0)
        dashboard = create_dashboard(
            store, read_only=True, schedules=app.schedules, clock=_Clock(now)
        )
        async with client(dashboard) as http:
            page = (await http.get("/schedules")).text
    row = re.search(r'<tr id="schedule-nightly">(.*?)</tr>', page, re.S)
    assert row
    assert "2026-11-29 15:00:00Z" in row.group(1)  # the cursor
    assert "2026-11-30 03:00:00Z" in row.group(1)  # the next tick
    row = re.search(r'<tr id="schedule-hourly">(.*?)</tr>', page, re.S)
    assert row
    assert "never" in row.group(1)
    assert "2026-11-30 01:00:00Z" in row.group(1)
    assert "reports" in row.group(1)
    with pytest.raises(TypeError, match="CronSchedule"):
        create_dashboard(MemoryTransport(), read_only=True, schedules=["nightly"])  # type: ignore[list-item]


class _Unreachable(CountingTransport):
    async def _forward(self, name: str, call: Any) -> Any:
        raise transports.ConnectionLost("the database went away")


async def test_a_store_failure_is_a_503_page_naming_it() -> None:
    """A storage error mid-page is a 503 with its reason, not a traceback."""
    async with MemoryTransport() as inner:
        app = create_dashboard(_Unreachable(inner), read_only=True)
        async with client(app) as http:
            for path in ["/", "/queues", "/jobs", "/jobs/1"]:
                page = await http.get(path)
                assert page.status_code == 503, path
                assert "ConnectionLost: the database went away" in page.text


async def test_history_nodes_and_correctness_come_from_the_nodes_records(
    backend_store: Transport,
) -> None:
    """The overview charts the per-minute history and its wait percentiles; the nodes page
    shows who is alive and leads; the correctness panel sums the fencing counters."""
    now = 1_796_000_000.0
    clock = _Clock(now)
    minute = transports.minute_of(now)
    await backend_store.enqueue_many([EnqueueRequest(kind="a", queue="emails")])
    await backend_store.add_stats(
        [
            transports.QueueStats(
                queue="emails",
                minute=minute - 120,
                succeeded=40,
                failed=3,
                dead=1,
                finalize_refused=2,
                leases_lost=1,
                reclaimed=4,
                deduplicated=7,
                wait=transports.Histogram.of([0.004] * 98 + [2.0, 2.0]),
                recovery=transports.Histogram.of([1.5] * 9 + [40.0]),
            ),
            transports.QueueStats(queue="emails", minute=minute, succeeded=2, reclaimed=1),
            transports.QueueStats(
                queue="reports", minute=minute - 3 * 3600, finalize_refused=5
            ),  # outside 1h, inside 6h
        ]
    )
    for name in ("alive", "gone"):
        await backend_store.register_node(
            transports.NodeInfo(
                id=f"node-{name}",
                host="h1",
                pid=10,
                queues=("emails",),
                slots=8,
                version="0.1.0",
                started_at=now - 600,
                heartbeat=5.0,
            )
        )
    app = create_dashboard(backend_store, read_only=True, clock=clock)
    async with client(app) as http:
        overview = (await http.get("/")).text
        row = re.search(r"<tr>\s*<td><a[^>]*>emails</a></td>(.*?)</tr>", overview, re.S)
        assert row
        # The upper bounds of the buckets holding the hour's p50 and p99 waits.
        assert '<td class="num">≤4 ms</td>' in row.group(1)
        assert '<td class="num">≤2.05 s</td>' in row.group(1)
        history = re.search(r'data-history="([^"]+)"', overview)
        assert history
        series = json.loads(history.group(1).replace("&#34;", '"'))
        assert len(series[0]) == 60
        assert series[1][-3:] == [40, 0, 2]
        assert series[3][-3] == 1

        correctness = (await http.get("/correctness")).text
        emails = re.search(r'<tr id="correctness-emails">(.*?)</tr>', correctness, re.S)
        assert emails
        assert re.findall(r">(\d+)<", emails.group(1)) == ["2", "1", "5", "7", "10"]
        # Recovery time p50 and p99: the upper bounds of the buckets holding them.
        assert re.findall(r">(≤[^<]+)<", emails.group(1)) == ["≤1.72 s", "≤46.3 s"]
        chart = re.search(r'data-recovery="([^"]+)"', correctness)
        assert chart
        minutes, p50s, p99s = json.loads(chart.group(1).replace("&#34;", '"'))
        assert len(minutes) == 60
        assert minutes[-3] == minute - 120
        assert p50s[-3] == pytest.approx(1.72, abs=0.01)
        assert p99s[-3] == pytest.approx(46.3, abs=0.1)
        assert p50s[-1] is None  # a minute that recovered nothing
        assert "correctness-reports" not in correctness
        wider = (await http.get("/correctness", params={"window": "6h"})).text
        assert "correctness-reports" in wider


async def test_the_nodes_page_shows_who_is_alive_gone_and_leading() -> None:
    """A node three heartbeats late is gone; the leader leases show who leads what."""
    clock = _Clock(1_796_000_000.0)
    async with MemoryTransport(clock=clock) as store:
        for name in ("alive", "gone"):
            await store.register_node(
                transports.NodeInfo(
                    id=f"node-{name}",
                    host="h1",
                    pid=10,
                    queues=("emails", "reports"),
                    slots=8,
                    version="0.1.0",
                    started_at=clock.now() - 600,
                    heartbeat=5.0,
                )
            )
        clock._now += 12
        assert await store.node_heartbeat("node-alive")
        assert await store.acquire_leader("cron", holder="node-alive", ttl=60)
        assert await store.acquire_leader("maintenance", holder="elsewhere:1", ttl=60)
        clock._now += 8  # node-gone: last seen 20 s ago, over 3 x 5 s
        app = create_dashboard(store, read_only=True)
        async with client(app) as http:
            nodes = (await http.get("/nodes")).text
            schedules = (await http.get("/schedules")).text
    alive = re.search(r'<tr id="node-node-alive">(.*?)</tr>', nodes, re.S)
    gone = re.search(r'<tr id="node-node-gone">(.*?)</tr>', nodes, re.S)
    assert alive
    assert gone
    assert ">alive<" in alive.group(1)
    assert "8s ago" in alive.group(1)
    assert "<td>cron</td>" in alive.group(1)
    assert ">gone<" in gone.group(1)
    assert "20s ago" in gone.group(1)
    assert "1 alive of 2 registered" in nodes
    assert "Leader of maintenance: <code>elsewhere:1</code> (not a registered node)" in nodes
    assert "Cron leader: <strong>node-alive</strong>" in schedules


async def test_the_queues_page_shows_each_keys_limits(backend_store: Transport) -> None:
    """Each key with a limit or a cool-down: its concurrency, rate, use and waiting jobs."""
    await backend_store.set_limit("stripe", concurrency=5, rate=100, per=60.0)
    await backend_store.set_limit("tenant:42", concurrency=0)
    await backend_store.enqueue_many(
        [EnqueueRequest(kind="charge", queue="billing", concurrency_key="stripe")] * 2
    )
    app = create_dashboard(backend_store, token=TOKEN)
    async with client(app, headers=AUTH) as http:
        page = await http.get("/queues")
    table = re.search(r'<table class="grid" id="limits">(.*?)</table>', page.text, re.S)
    assert table
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows[1:]]
    assert [c[:6] for c in cells] == [
        ["stripe", "5", "0", "100/1m", "0", "2"],
        ["tenant:42", "0", "0", "-", "-", "0"],
    ]


async def test_the_partitions_page_shows_each_partitions_jobs_and_turn(
    backend_store: Transport,
) -> None:
    """A queue's fair-share partitions with waiting jobs, by key: waiting, running, last
    turn; the queues page links to it; a bad queue name is a 400."""
    await backend_store.enqueue_many(
        [EnqueueRequest(kind="report", queue="reports", partition_key="tenant:1")] * 3
        + [EnqueueRequest(kind="report", queue="reports", partition_key="tenant:2")]
    )
    await backend_store.claim("reports", owner="w1", limit=1, ttl=30.0)
    app = create_dashboard(backend_store, token=TOKEN)
    async with client(app, headers=AUTH) as http:
        queues = await http.get("/queues")
        assert 'href="http://dash.test/queues/reports/partitions"' in queues.text
        page = await http.get("/queues/reports/partitions")
        empty = await http.get("/queues/other/partitions")
        bad = await http.get("/queues/bad%20name/partitions")
    table = re.search(r'<table class="grid" id="partitions">(.*?)</table>', page.text, re.S)
    assert table
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows[1:]]
    assert [c[:3] for c in cells] == [["tenant:1", "2", "1"], ["tenant:2", "1", "0"]]
    assert cells[1][3] == "never"
    assert "No partition of other has waiting jobs" in empty.text
    assert bad.status_code == 400


async def test_the_queues_page_says_when_no_key_is_limited(backend_store: Transport) -> None:
    app = create_dashboard(backend_store, token=TOKEN)
    async with client(app, headers=AUTH) as http:
        page = await http.get("/queues")
    assert "No key has a limit or a cool-down" in page.text


async def test_the_job_page_shows_the_result_unless_a_redaction_hook_is_set() -> None:
    """A succeeded job's result is on its page; with ``redact`` it is hidden, since it may
    hold what the hook hides of the payload."""
    async with MemoryTransport() as store:
        await store.enqueue(EnqueueRequest(kind="charge", queue="q"))
        (lease,) = await store.claim("q", owner="w1", limit=1, ttl=30.0)
        outcome = Complete(result={"receipt": "R-77"})
        await store.finalize(
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
        )
        async with client(create_dashboard(store, read_only=True)) as http:
            page = await http.get(f"/jobs/{lease.job_id}")
            assert "R-77" in page.text
        hidden = create_dashboard(store, read_only=True, redact=lambda job: None)
        async with client(hidden) as http:
            page = await http.get(f"/jobs/{lease.job_id}")
            assert "R-77" not in page.text
            assert "Hidden: a redaction hook is set." in page.text


async def test_the_workflow_pages_show_counts_and_the_graph() -> None:
    """/workflows lists each workflow by state; a workflow's page draws its jobs in levels,
    each naming its parents; an unknown one is a 404."""
    async with MemoryTransport() as store:
        results = await store.enqueue_many(
            [
                EnqueueRequest(kind="charge", queue="q", workflow="order-7"),
                EnqueueRequest(kind="email", queue="q", workflow="order-7", after=[After(index=0)]),
                EnqueueRequest(
                    kind="receipt",
                    queue="q",
                    workflow="order-7",
                    after=[After(index=0), After(index=1, on_failure="run")],
                ),
            ]
        )
        ids = [r.job_id for r in results]
        async with client(create_dashboard(store, read_only=True)) as http:
            listing = await http.get("/workflows")
            assert listing.status_code == 200
            assert "order-7" in listing.text
            page = await http.get("/workflows/order-7")
            assert page.status_code == 200
            assert "3 jobs: 1 available, 2 pending" in page.text
            assert f"after #{ids[0]}, #{ids[1]} (runs anyway)" in page.text
            assert page.text.index(f'id="node-{ids[0]}"') < page.text.index(f'id="node-{ids[2]}"')
            missing = await http.get("/workflows/nope")
            assert missing.status_code == 404


async def test_the_job_page_shows_steps_and_what_it_waits_for() -> None:
    """A suspended job's page lists its recorded steps and the event it waits for; with a
    redaction hook the steps' results are hidden (they may hold what the payload does)."""
    from transports.lowlevel import FinalizeRequest, Suspend

    async with MemoryTransport() as store:
        (job,) = await store.enqueue_many([EnqueueRequest(kind="order", payload={"card": "4111"})])
        (lease,) = await store.claim("default", owner="w", limit=1, ttl=30.0)
        await store.record_step(
            lease.job_id, token=lease.token, name="charge", value={"charge": "ch_4111"}
        )
        outcome = Suspend(event_key="order:1:paid", run_at=lease.expires_at + 60.0)
        await store.finalize(
            [FinalizeRequest(job_id=job.job_id, token=lease.token, outcome=outcome)]
        )
        async with client(create_dashboard(store, read_only=True)) as http:
            page = await http.get(f"/jobs/{job.job_id}")
        steps = re.search(r'<table class="grid" id="steps">(.*?)</table>', page.text, re.S)
        assert steps
        assert "charge" in steps.group(1)
        assert "ch_4111" in steps.group(1)
        assert 'id="wait-key">order:1:paid' in page.text
        assert "state-suspended" in page.text
        redacted = create_dashboard(store, read_only=True, redact=lambda job: "****")
        async with client(redacted) as http:
            hidden = await http.get(f"/jobs/{job.job_id}")
        assert "4111" not in hidden.text
        assert "charge" in hidden.text
