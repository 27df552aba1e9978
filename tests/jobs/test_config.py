"""Configuration is checked when it is built: a bad setting is a ConfigInvalid naming it,
raised before anything runs or is written, never a spinning node or a traceback later."""

from __future__ import annotations

import math
from random import Random
from typing import Any

import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    CatchUp,
    ConfigInvalid,
    CronSchedule,
    InvalidCronExpression,
    JobContext,
    JobError,
    Overlap,
    PayloadInvalid,
    Topology,
    UnknownJobKind,
    WorkerConfig,
)
from actors.jobs.lowlevel import Cleanup, Cron, EventBus, QueueSupervisor, Reaper
from transports import InvalidQueueName, MemoryTransport

from ._support import running

pytestmark = pytest.mark.anyio


@attrs.frozen
class Report:
    day: int


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None


async def _report(ctx: JobContext, payload: Report) -> None:
    return None


def _app() -> App:
    app = App()
    app.register("noop", _noop)
    app.register("report", _report, queue="reports")
    return app


# --- WorkerConfig ---------------------------------------------------------------------------

BAD_WORKER_SETTINGS: list[tuple[str, object, str]] = [
    ("lease_ttl", 0, "must be > 0"),
    ("lease_ttl", -1.0, "must be > 0"),
    ("lease_ttl", math.inf, "must be finite"),
    ("lease_ttl", math.nan, "must be finite"),
    ("lease_ttl", "10", "must be a number"),
    ("lease_ttl", True, "must be a number"),
    ("renew_fraction", 0.0, "must be > 0"),
    ("renew_fraction", 0.9, r"\(0, 0.5\]"),
    ("batch_size", 0, "between 1 and"),
    ("batch_size", 10**9, "between 1 and"),
    ("batch_size", 2.5, "must be an integer"),
    ("start_margin", -0.1, "must be >= 0"),
    ("start_margin", 0.5, r"\[0, 0.5\)"),
    ("start_margin", math.nan, "must be finite"),
    ("poll_interval", 0, "must be > 0"),
    ("poll_interval", -0.5, "must be > 0"),
    ("finalize_delay", -0.01, "must be >= 0"),
    ("error_backoff", 0, "must be > 0"),
    ("concurrency", -3, "between 0 and"),
    ("concurrency", 10**6, "between 0 and"),
    ("reaper_interval", 0, "must be > 0"),
    ("leader_ttl", math.inf, "must be finite"),
    ("drain_timeout", -1, "must be >= 0"),
    ("drain_timeout", math.nan, "must be finite"),
    ("shutdown_margin", -5.0, "must be >= 0"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    BAD_WORKER_SETTINGS,
    ids=[f"{f}={v!r}" for f, v, _ in BAD_WORKER_SETTINGS],
)
def test_a_bad_worker_setting_is_refused_at_construction(
    field: str, value: object, message: str
) -> None:
    """Each out-of-range or ill-typed setting raises ConfigInvalid naming the field and the
    value (``lease_ttl=0`` used to spin a core; now it never gets that far)."""
    with pytest.raises(ConfigInvalid, match=message) as caught:
        WorkerConfig(**{field: value})  # type: ignore[arg-type]
    assert f"WorkerConfig.{field}" in str(caught.value)
    assert isinstance(caught.value, JobError)
    assert isinstance(caught.value, ValueError)


def test_the_boundaries_are_accepted() -> None:
    """Zero where zero means "none" (drain, margin, finalize delay, concurrency) is valid."""
    config = WorkerConfig(
        drain_timeout=0, shutdown_margin=0, finalize_delay=0, concurrency=0, renew_fraction=0.5
    )
    assert config.renew_every == config.lease_ttl * 0.5
    assert config.shutdown_timeout == 0.0


def test_shutdown_margins_derive_from_one_place() -> None:
    """Every shutdown bound is the drain timeout plus margins of one setting, each level of
    the tree getting one margin more than the level below it."""
    config = WorkerConfig(drain_timeout=7.0, shutdown_margin=2.0)
    assert config.worker_stop_timeout == 11.0  # drain, cancelled handlers return, release
    assert config.queue_stop_timeout == 13.0
    assert config.shutdown_timeout == 13.0


def test_every_actor_of_the_tree_stops_within_the_margins() -> None:
    """Each child of the root gets its stop bound from the node's WorkerConfig: the queue
    supervisors the queue bound, the maintenance actors and user actors one margin."""
    config = WorkerConfig(drain_timeout=4.0, shutdown_margin=3.0)
    app = _app()
    app.schedule("daily", "0 0 * * *", "report", payload=Report(day=1))
    topology = Topology.default(app, MemoryTransport(), worker=config)
    topology.actor("audit", lambda ctx: None)  # type: ignore[arg-type,return-value]
    bounds = {spec.id: spec.shutdown for spec in topology.child_specs(EventBus())}
    assert bounds == {
        "audit": 3.0,
        "history": 3.0,
        "nodes": 3.0,
        "leases": 3.0,
        "reaper": 3.0,
        "cron": 3.0,
        "cleanup": 3.0,
        "queue:default": 13.0,
        "queue:reports": 13.0,
    }
    assert config.release_timeout == 1.5  # handing a leader lease back, within the margin


def test_node_defaults_come_from_worker_config() -> None:
    """A Topology built with nothing but a WorkerConfig takes every default from it."""
    config = WorkerConfig(concurrency=3, reaper_interval=2.5, leader_ttl=12.0)
    app = _app()
    app.schedule("daily", "0 0 * * *", "report", payload=Report(day=1))
    topology = Topology.default(app, MemoryTransport(), worker=config)
    assert [(plan.queue, plan.concurrency) for plan in topology._queues] == [
        ("default", 3),
        ("reports", 3),
    ]
    assert topology._reaper == 2.5
    assert topology._cron is not None
    assert topology._cron[1] == 12.0
    defaults = Topology(app, MemoryTransport())
    assert defaults.config == WorkerConfig()
    defaults.queue("q").reaper()
    assert defaults._queues[0].concurrency == attrs.fields(WorkerConfig).concurrency.default
    assert defaults._reaper == attrs.fields(WorkerConfig).reaper_interval.default


# --- the Topology builder -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda t: t.queue("q", concurrency=-3), ConfigInvalid, "concurrency"),
        (lambda t: t.queue("q", concurrency=1.5), ConfigInvalid, "integer"),
        (lambda t: t.queue("q", concurrency=100_000), ConfigInvalid, "between 0 and"),
        (lambda t: t.queue("has space"), InvalidQueueName, "queue"),
        (lambda t: t.queue("q").queue("q"), ConfigInvalid, "already"),
        (lambda t: t.reaper(interval=0), ConfigInvalid, "reaper interval"),
        (lambda t: t.reaper(interval=-1), ConfigInvalid, "reaper interval"),
        (lambda t: t.reaper(interval=math.nan), ConfigInvalid, "finite"),
        (lambda t: t.cron([], leader_ttl=0), ConfigInvalid, "leader_ttl"),
        (lambda t: t.cleanup(interval=0), ConfigInvalid, "cleanup interval"),
        (lambda t: t.cleanup(default_retention=-1), ConfigInvalid, "retention"),
        (lambda t: t.cleanup(result_retention=-1), ConfigInvalid, "result_retention"),
        (lambda t: t.cleanup(result_retention=math.inf), ConfigInvalid, "result_retention"),
        (lambda t: t.actor("", lambda ctx: None), ConfigInvalid, "actor id"),
        (lambda t: t.actor("reaper", lambda ctx: None), ConfigInvalid, "runtime's own"),
        (lambda t: t.actor("a", lambda ctx: None, shutdown=-1), ConfigInvalid, "shutdown"),
        (lambda t: t.actor("a", lambda ctx: None, mailbox_size=0), ConfigInvalid, "mailbox"),
        (lambda t: t.actor("a", "not callable"), ConfigInvalid, "callable"),
    ],
)
def test_a_bad_topology_option_is_refused_by_the_builder(
    build: Any, error: type[Exception], message: str
) -> None:
    """Builder methods check their settings when called, not when the node starts."""
    topology = Topology(_app(), MemoryTransport())
    with pytest.raises(error, match=message):
        build(topology)


@pytest.mark.parametrize("node_id", ["", "x" * 101, "tab\there", "new\nline", 7])
def test_a_bad_node_id_is_refused(node_id: object) -> None:
    """A node id becomes part of every lease owner: it must be short printable text (an
    empty or misfit one used to surface as an invalid claim at run time, or not at all)."""
    with pytest.raises(ConfigInvalid, match="node_id"):
        Topology(_app(), MemoryTransport(), node_id=node_id)  # type: ignore[arg-type]


def test_cron_schedules_are_checked_when_planned() -> None:
    """Duplicate schedule names and a payload the task cannot take fail at build time."""
    app = _app()
    topology = Topology(app, MemoryTransport())
    twice = CronSchedule(name="s", expression="* * * * *", kind="noop")
    with pytest.raises(ConfigInvalid, match="unique"):
        topology.cron([twice, twice])
    ill_typed = CronSchedule(name="s", expression="* * * * *", kind="report", payload={"x": 1})
    with pytest.raises(PayloadInvalid):
        topology.cron([ill_typed])
    unknown = CronSchedule(name="s", expression="* * * * *", kind="nope")
    with pytest.raises(UnknownJobKind):
        topology.cron([unknown])


async def test_a_negative_shutdown_timeout_is_refused_before_the_node_starts() -> None:
    """``Topology.run(shutdown_timeout=-1)`` raises before any actor starts."""
    async with MemoryTransport() as memory:
        with pytest.raises(ConfigInvalid, match="shutdown_timeout"):
            async with Topology(_app(), memory).run(shutdown_timeout=-1.0):
                pytest.fail("the node must not start")  # pragma: no cover


async def test_the_node_shuts_down_within_its_configured_timeout(clock: VirtualClock) -> None:
    """Without ``shutdown_timeout``, a node takes ``config.shutdown_timeout`` to stop."""
    async with MemoryTransport(clock=clock) as memory:
        config = WorkerConfig(drain_timeout=1.0, shutdown_margin=0.5)
        topology = Topology.default(_app(), memory, worker=config, clock=clock)
        async with clock.autojump(), topology.run() as node:
            assert node._shutdown_timeout == config.shutdown_timeout == 2.5


def test_the_runtime_actors_check_their_own_settings() -> None:
    """The actors built by hand check what the builder would."""
    memory = MemoryTransport()
    events = EventBus()
    with pytest.raises(ConfigInvalid, match="Reaper interval"):
        Reaper(transport=memory, events=events, interval=0)
    with pytest.raises(ConfigInvalid, match="Cleanup interval"):
        Cleanup(transport=memory, node_id="n", interval=-1)
    with pytest.raises(ConfigInvalid, match="leader_ttl"):
        Cron(
            app=_app(),
            transport=memory,
            events=events,
            node_id="n",
            rng=Random(0),
            schedules=[],
            leader_ttl=0,
        )
    every = CronSchedule(name="s", expression="* * * * *", kind="noop")
    with pytest.raises(ConfigInvalid, match="unique"):
        Cron(
            app=_app(),
            transport=memory,
            events=events,
            node_id="n",
            rng=Random(0),
            schedules=[every, every],
        )
    with pytest.raises(ConfigInvalid, match="grace"):
        Cron(
            app=_app(),
            transport=memory,
            events=events,
            node_id="n",
            rng=Random(0),
            schedules=[every],
            grace=-1.0,
        )
    supervisor = QueueSupervisor(
        node_id="n",
        queue="q",
        app=_app(),
        transport=memory,
        events=events,
        rng=Random(0),
        worker_config=WorkerConfig(concurrency=4),
    )
    assert supervisor._default == 4  # the node default, from its WorkerConfig
    with pytest.raises(ConfigInvalid, match="concurrency"):
        QueueSupervisor(
            node_id="n",
            queue="q",
            app=_app(),
            transport=memory,
            events=events,
            rng=Random(0),
            concurrency=-5,
        )


# --- task options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2**40}, "max_attempts"),
        ({"priority": 10**30}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"timeout": math.inf}, "timeout"),
        ({"lease_ttl": -1}, "lease_ttl"),
        ({"backoff": 5}, "backoff"),
    ],
)
def test_a_bad_task_option_is_refused_by_the_decorator_call(
    options: dict[str, Any], message: str
) -> None:
    """``@app.task(...)`` checks its options when called, before it decorates anything."""
    app = App()
    with pytest.raises(ConfigInvalid, match=message):
        app.task("k", **options)
    assert app.tasks == {}


def test_a_bad_queue_name_is_refused_by_the_decorator_call() -> None:
    """``app.task(queue="a b")`` raises InvalidQueueName at once, not a traceback later."""
    app = App()
    with pytest.raises(InvalidQueueName, match="a b"):
        app.task("k", queue="a b")
    with pytest.raises(InvalidQueueName):
        app.task("bad kind")
    assert app.tasks == {}


def test_task_options_left_out_take_the_defaults() -> None:
    """An option not given is TaskOptions' default; one given is kept."""
    app = App()
    task = app.register("k", _noop, queue="q", priority=-1)
    default = app.register("d", _noop)
    assert (task.options.queue, task.options.priority) == ("q", -1)
    assert default.options == type(default.options)()


# --- schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["* * * * * * *", "0 0 1 1 * 0 2030", "* * * *", "", "61 * * * *", "every minute"],
)
def test_a_bad_cron_expression_is_refused(expression: str) -> None:
    """Only 5 or 6 fields (or an ``@alias``) that croniter parses are accepted."""
    app = _app()
    with pytest.raises(InvalidCronExpression):
        app.schedule("s", expression, "noop")
    assert app.schedules == []


def test_a_cron_expression_must_be_text() -> None:
    """A non-string expression is an InvalidCronExpression, not a crash inside croniter."""
    with pytest.raises(InvalidCronExpression, match="string"):
        CronSchedule(name="s", expression=5, kind="noop")  # type: ignore[arg-type]


@pytest.mark.parametrize("expression", ["* * * * *", "* * * * * */5", "@hourly"])
def test_good_cron_expressions_are_accepted(expression: str) -> None:
    """Five fields, six (seconds last) and aliases are schedules."""
    app = _app()
    assert app.schedule("s", expression, "noop").expression == expression


@pytest.mark.parametrize("jitter", [-1.0, math.inf, math.nan, "5"])
def test_a_bad_jitter_is_refused(jitter: object) -> None:
    """Jitter is a finite number of seconds, at least 0."""
    with pytest.raises(ConfigInvalid, match="jitter"):
        _app().schedule("s", "* * * * *", "noop", jitter=jitter)  # type: ignore[arg-type]


def test_a_schedule_payload_is_checked_against_the_task() -> None:
    """A payload the task's handler could not take fails at registration."""
    app = _app()
    with pytest.raises(PayloadInvalid):
        app.schedule("s", "* * * * *", "report", payload={"day": "monday"})
    with pytest.raises(PayloadInvalid):
        app.schedule("s", "* * * * *", "report", payload=None)
    assert app.schedules == []
    ok = app.schedule("s", "* * * * *", "report", payload=Report(day=1))
    assert ok.payload == Report(day=1)


def test_schedule_options_are_checked() -> None:
    """A duplicate name, an unknown overlap policy or a bad queue is refused."""
    app = _app()
    app.schedule("s", "* * * * *", "noop", overlap=Overlap.SKIP, catch_up=CatchUp.FIRE_ONCE)
    with pytest.raises(ConfigInvalid, match="already exists"):
        app.schedule("s", "* * * * *", "noop")
    with pytest.raises(ConfigInvalid, match="Overlap"):
        app.schedule("t", "* * * * *", "noop", overlap="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidQueueName):
        app.schedule("u", "* * * * *", "noop", queue="no good")
    with pytest.raises(UnknownJobKind):
        app.schedule("v", "* * * * *", "missing")
    assert [s.name for s in app.schedules] == ["s"]


async def test_a_valid_configuration_still_runs(clock: VirtualClock) -> None:
    """The checks refuse nothing a working node uses: a node built from validated settings
    starts and stops."""
    async with MemoryTransport(clock=clock) as memory:
        config = WorkerConfig(lease_ttl=3.0, renew_fraction=0.25, drain_timeout=0.0)
        topology = Topology.default(_app(), memory, worker=config, clock=clock)
        async with clock.autojump(), running(topology) as (node, _):
            assert (await node.child("queue:default")).is_alive
