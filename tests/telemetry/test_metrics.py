"""Prometheus metrics of a running node: every outcome counted, gauges sampled, a real scrape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from actors.core import VirtualClock
from actors.jobs import (
    App,
    ConfigInvalid,
    Drop,
    FinalizeRefused,
    JobClaimed,
    JobContext,
    JobLeaseLost,
    JobRetried,
    JobSucceeded,
    Node,
    RetryLater,
    ShutdownPhase,
    SnoozeUntil,
    WorkerCrashed,
)
from actors.telemetry import (
    METRICS_LEADER,
    MeteredTransport,
    MetricsActor,
    MetricsServerFailed,
    NodeMetrics,
    Sample,
    serve_metrics,
)
from actors.telemetry._metrics import _MAX_BUFFERED
from transports import JobNotFound, JobState, MemoryTransport, Transport

from ..jobs._support import START, running, topology, wait_final, wait_state

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def mixed_app(transport: Transport) -> App:
    app = App(transport)

    @app.task("mixed", max_attempts=2)
    async def mixed(ctx: JobContext, payload: str) -> Any:
        if payload == "retry" and ctx.attempt == 1:
            return RetryLater(delay=2.0)
        if payload == "raise":
            raise ValueError("boom")  # twice: retried, then dead
        if payload == "drop":
            return Drop(reason="no")
        if payload == "snooze" and ctx.clock.now() < START + 5:
            return SnoozeUntil(at=START + 5)
        if payload == "wait":
            await ctx.wait_cancel_requested()
        return None

    return app


async def sample(node: Node) -> None:
    """Fold every event so far and sample the gauges, as the ticker would."""
    ref = await node.child("metrics")
    await ref.ask(lambda reply: Sample(reply_to=reply), timeout=30)


async def run_every_outcome(transport: Transport, clock: VirtualClock) -> tuple[NodeMetrics, str]:
    """A node with metrics runs one job of each outcome (and one reclaimed); returns the
    metrics and a scrape of them over HTTP."""
    app = mixed_app(transport)
    # A job some other node claimed and then died holding: the Reaper takes it back.
    orphan = (await app.enqueue("mixed", "ok")).job_id
    (lease,) = await transport.claim("default", owner="gone", limit=1, ttl=1.0)
    assert lease.job_id == orphan
    ids = [
        (await app.enqueue("mixed", p)).job_id
        for p in ("ok", "retry", "raise", "drop", "snooze", "wait")
    ]
    metrics = NodeMetrics()
    node_topology = metrics.install(topology(app, transport, clock, concurrency=2), interval=1.0)
    async with clock.autojump(), running(node_topology) as (node, _):
        waiting = ids[-1]
        await wait_state(transport, clock, waiting, JobState.RUNNING)
        await sample(node)
        assert value(parse(metrics.text()), "actorq_slots_busy", queue="default") >= 1
        await transport.cancel(waiting)
        await wait_final(transport, clock, [orphan, *ids])
        with pytest.raises(JobNotFound):
            await node.topology.transport.get(10**9)
        await sample(node)
        with clock.hold():
            async with (
                serve_metrics(metrics, port=0, host="127.0.0.1") as port,
                httpx.AsyncClient() as client,
            ):
                response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    return metrics, response.text


async def test_a_scrape_shows_every_outcome_with_its_numbers(
    transport: Transport, clock: VirtualClock
) -> None:
    """Scraped over HTTP, a node's metrics count each outcome of the jobs it ran, by queue and
    kind, with their durations and latencies, the storage calls, the slots, the mailboxes and
    (as the metrics leader) the queue by state."""
    metrics, text = await run_every_outcome(transport, clock)
    s = parse(text)
    job = {"queue": "default", "kind": "mixed"}
    # ok, orphan, retry x2, raise x2, drop, snooze x2, wait: 10 runs
    assert value(s, "actorq_jobs_claimed_total", **job) == 10
    assert value(s, "actorq_jobs_succeeded_total", **job) == 4  # ok, orphan, retry, snooze
    assert value(s, "actorq_jobs_retried_total", **job) == 2  # retry, raise
    assert value(s, "actorq_jobs_dead_total", **job) == 2  # raise, drop
    assert value(s, "actorq_jobs_snoozed_total", **job) == 1
    assert value(s, "actorq_jobs_cancelled_total", **job) == 1
    assert value(s, "actorq_jobs_reclaimed_total", **job) == 1
    # The cancel reached the running job through a renewal of its lease.
    assert value(s, "actorq_lease_renewals_total") >= 1
    assert value(s, "actorq_job_reclaim_delay_seconds_count", queue="default") == 1
    # The orphan ran again: one recovery, from its lease's expiry to its start.
    assert value(s, "actorq_recovery_seconds_count", **job) == 1
    assert value(s, "actorq_recovery_seconds_bucket", le="10.0", **job) == 1
    # Durations of succeeded, retried and dead runs that ran a handler (all but the cancel).
    assert value(s, "actorq_job_run_duration_seconds_count", **job) == 8
    assert value(s, "actorq_job_start_latency_seconds_count", **job) == 10
    # Measured from when each run was due: the retry's 2 s delay and the 5 s snooze are not
    # latency (a run waiting for one of the two slots is).
    assert value(s, "actorq_job_start_latency_seconds_bucket", le="1.0", **job) == 10
    for operation in ("claim", "finalize", "reap", "counts", "acquire_leader"):
        assert value(s, "actorq_storage_call_duration_seconds_count", operation=operation) > 0
    assert value(s, "actorq_storage_call_duration_seconds_count", operation="wait_for_work") == 0
    assert value(s, "actorq_storage_errors_total", operation="get", error="JobNotFound") == 1
    assert value(s, "actorq_slots_busy", queue="default") == 0
    assert value(s, "actorq_slots_free", queue="default") == 2
    actors = {dict(labels)["actor"] for name, labels in s if name == "actorq_mailbox_depth"}
    assert {
        "root",
        "root/leases",
        "root/queue:default/claimer",
        "root/queue:default/worker",
    } <= actors
    assert value(s, "actorq_metrics_leader") == 1
    assert value(s, "actorq_queue_jobs", queue="default", state="succeeded") == 4
    assert value(s, "actorq_queue_jobs", queue="default", state="dead") == 2
    assert value(s, "actorq_queue_jobs", queue="default", state="cancelled") == 1
    assert value(s, "actorq_queue_jobs", queue="default", state="available") == 0
    assert metrics.text() == text or "actorq_jobs_claimed_total" in metrics.text()


async def test_only_the_metrics_leader_counts_the_queues(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """With the ``metrics`` leader lease held elsewhere, a node exports no queue depth (so N
    nodes do not run N counts nor show N copies), and takes over when the lease is free."""
    app = mixed_app(memory)
    await app.enqueue("mixed", "ok", delay=3600.0)
    held = await memory.acquire_leader(METRICS_LEADER, holder="other", ttl=5.0)
    assert held is not None
    metrics = NodeMetrics()
    node_topology = metrics.install(topology(app, memory, clock), interval=1.0)
    async with clock.autojump(), running(node_topology) as (node, _):
        await sample(node)
        s = parse(metrics.text())
        assert value(s, "actorq_metrics_leader") == 0
        assert not [name for name, _ in s if name == "actorq_queue_jobs"]
        await clock.sleep(6.0)  # the other holder's lease lapses
        await sample(node)
        s = parse(metrics.text())
        assert value(s, "actorq_metrics_leader") == 1
        assert value(s, "actorq_queue_jobs", queue="default", state="scheduled") == 1
    assert await memory.acquire_leader(METRICS_LEADER, holder="next", ttl=5.0) is not None


async def test_the_metrics_leader_exports_each_limited_keys_use(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Keys with a limit (or a cool-down) get their use and their limits as gauges; a key
    without any has no series, nor does a limit left unset."""
    app = mixed_app(memory)
    await memory.set_limit("stripe", concurrency=3, rate=10, per=60.0)
    await memory.set_limit("held", concurrency=0)
    for key in ("stripe", "held", "free"):
        await app.enqueue("mixed", "ok", delay=3600.0, concurrency_key=key)
    metrics = NodeMetrics()
    node_topology = metrics.install(topology(app, memory, clock), interval=1.0)
    async with clock.autojump(), running(node_topology) as (node, _):
        await sample(node)
        s = parse(metrics.text())
    assert value(s, "actorq_key_jobs", key="stripe", use="waiting") == 1
    assert value(s, "actorq_key_jobs", key="stripe", use="running") == 0
    assert value(s, "actorq_key_jobs", key="stripe", use="started") == 0
    assert value(s, "actorq_key_limit", key="stripe", limit="concurrency") == 3
    assert value(s, "actorq_key_limit", key="stripe", limit="rate") == 10
    assert value(s, "actorq_key_limit", key="stripe", limit="rate_window_seconds") == 60
    assert value(s, "actorq_key_limit", key="held", limit="cooling_down") == 0
    keys = {dict(labels)["key"] for name, labels in s if name == "actorq_key_jobs"}
    assert keys == {"stripe", "held"}
    assert ("actorq_key_limit", frozenset({"key": "held", "limit": "rate"}.items())) not in s


def test_the_correctness_counters_count_their_events() -> None:
    """Lost leases, refused finalizes and crashed Workers, which a scrape of a healthy run
    never shows, count by queue (and kind), never by job id."""
    metrics = NodeMetrics()
    metrics.observe(JobLeaseLost(at=1.0, job_id=7, kind="k", queue="q", worker="w", token=3))
    metrics.observe(FinalizeRefused(at=1.0, job_id=7, kind="k", queue="q", worker="w", token=3))
    metrics.observe(FinalizeRefused(at=2.0, job_id=8, kind="k", queue="q", worker="w", token=4))
    metrics.observe(WorkerCrashed(at=1.0, queue="q", worker="w", error="bug"))
    s = parse(metrics.text())
    assert value(s, "actorq_leases_lost_total", queue="q", kind="k") == 1
    assert value(s, "actorq_finalizes_refused_total", queue="q", kind="k") == 2
    assert value(s, "actorq_worker_restarts_total", queue="q") == 1
    assert "job_id" not in metrics.text()


def test_two_nodes_in_one_process_keep_their_own_numbers() -> None:
    """Each NodeMetrics has a registry of its own: no clash, no shared counts."""
    first, second = NodeMetrics(), NodeMetrics()
    first.observe(WorkerCrashed(at=1.0, queue="q", worker="w", error="bug"))
    assert value(parse(first.text()), "actorq_worker_restarts_total", queue="q") == 1
    assert value(parse(second.text()), "actorq_worker_restarts_total", queue="q") == 0


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf"), True, "5"])
def test_a_bad_sample_interval_is_refused(interval: Any, clock: VirtualClock) -> None:
    app = App()
    with pytest.raises(ConfigInvalid, match="metrics interval"):
        NodeMetrics().install(topology(app, MemoryTransport(), clock), interval=interval)


async def test_a_port_in_use_is_a_typed_error() -> None:
    metrics = NodeMetrics()
    async with serve_metrics(metrics, port=0, host="127.0.0.1") as port:
        with pytest.raises(MetricsServerFailed, match=f"127.0.0.1:{port}"):
            async with serve_metrics(NodeMetrics(), port=port, host="127.0.0.1"):
                pass


async def test_the_metered_transport_forwards_every_call(clock: VirtualClock) -> None:
    """Wrapped, the store answers as before; each call is timed under its operation."""
    metrics = NodeMetrics()
    async with MeteredTransport(MemoryTransport(clock=clock), metrics, clock=clock) as metered:
        app = App(metered)

        @app.task("anything")
        async def anything(ctx: JobContext, payload: None) -> None:
            pass

        job = await app.enqueue(anything, None)
        assert (await metered.get(job.job_id)).state is JobState.AVAILABLE
    s = parse(metrics.text())
    assert value(s, "actorq_storage_call_duration_seconds_count", operation="enqueue_many") == 1
    assert value(s, "actorq_storage_call_duration_seconds_count", operation="get") == 1


async def test_events_beyond_the_buffer_are_dropped_and_counted(
    memory: MemoryTransport, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst the metrics actor cannot keep up with costs the publishers nothing: what does
    not fit its buffer is dropped, and the drop is itself a metric."""
    from actors.telemetry import _metrics

    monkeypatch.setattr(_metrics, "_MAX_BUFFERED", 2)
    metrics = NodeMetrics()
    node_topology = metrics.install(topology(mixed_app(memory), memory, clock), interval=1.0)
    async with clock.autojump(), running(node_topology) as (node, _):
        await sample(node)
        for _ in range(5):  # in one turn of the loop: the actor folds none of them meanwhile
            node.events.publish(WorkerCrashed(at=START, queue="q", worker="w", error="bug"))
        await sample(node)
    s = parse(metrics.text())
    assert value(s, "actorq_worker_restarts_total", queue="q") == 2
    assert value(s, "actorq_metrics_events_dropped_total") == 3


def test_every_transport_of_the_node_is_wrapped_once(clock: VirtualClock) -> None:
    """``install`` meters the default transport and each queue's own, one wrapper each."""
    shared, local = MemoryTransport(clock=clock), MemoryTransport(clock=clock)
    plan = (
        topology(App(shared), shared, clock, queues=["a"])
        .queue("b", transport=local)
        .queue("c", transport=shared)
    )
    NodeMetrics().install(plan)
    assert isinstance(plan.transport, MeteredTransport)
    assert plan.transport.inner is shared
    by_queue = {p.queue: p.transport for p in plan._queues}
    assert by_queue["a"] is None  # the default one, wrapped above
    assert isinstance(by_queue["b"], MeteredTransport)
    assert by_queue["b"].inner is local
    assert by_queue["c"] is plan.transport


def test_the_metrics_actor_drops_what_its_buffer_cannot_hold() -> None:
    """The metrics actor buffers events up to its bound; what lies past it when the actor
    looks (its folder's wake-up, a fold) is cut, the newest first, and counted as dropped."""
    actor = MetricsActor.__new__(MetricsActor)
    actor._dropped = 0
    events = [ShutdownPhase(at=float(i), phase="stopped") for i in range(5)]
    bound = _MAX_BUFFERED
    actor._buffer = [events[0]] * (bound - 2)
    actor._buffer.extend(events)  # what the event bus does for each publish
    actor._cut()
    assert len(actor._buffer) == bound
    assert actor._buffer[-2:] == events[:2]
    assert actor._dropped == 3
    actor._buffer.extend(events[:1])
    actor._cut()
    assert len(actor._buffer) == bound
    assert actor._dropped == 4


_labels = st.sampled_from(["qa", "qb"])
_seconds = st.floats(min_value=0.0, max_value=400.0, allow_nan=False)


@st.composite
def _job_events(draw: st.DrawFn) -> JobClaimed | JobSucceeded | JobRetried | WorkerCrashed:
    at = draw(_seconds)
    about = {"at": at, "job_id": draw(st.integers(1, 9)), "kind": draw(_labels)}
    about |= {"queue": draw(_labels), "worker": "w"}
    pick = draw(st.integers(0, 3))
    if pick == 0:
        return JobClaimed(
            **about,
            attempt=1,
            token=1,
            enqueued_at=draw(_seconds),
            run_at=draw(_seconds),
            lost_at=draw(st.none() | _seconds),
        )
    if pick == 1:
        return JobSucceeded(**about, attempt=1, duration=draw(_seconds))
    if pick == 2:
        return JobRetried(**about, attempt=1, run_at=at, error="e", duration=draw(_seconds))
    return WorkerCrashed(at=at, queue=about["queue"], worker="w", error="bug")


@settings(max_examples=300, deadline=None)
@given(st.lists(_job_events(), max_size=40), st.lists(st.integers(1, 12), max_size=6))
def test_a_folded_batch_counts_what_its_events_one_by_one_count(
    events: list[Any], cuts: list[int]
) -> None:
    """``observe_all`` (the actor's fold, with its shortcut for runs of one queue and kind)
    gives the numbers that ``observe`` of each event in turn gives, however the events are
    split into batches."""
    one_by_one, batched = NodeMetrics(), NodeMetrics()
    for event in events:
        one_by_one.observe(event)
    rest = list(events)
    for cut in cuts:
        batched.observe_all(rest[:cut])
        rest = rest[cut:]
    batched.observe_all(rest)
    assert parse(batched.text()) == parse(one_by_one.text())
