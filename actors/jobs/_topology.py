"""Topology: what actors a node runs, and the running Node.

The default topology is what most deployments want: one queue Supervisor per queue the App
uses, one Reaper, one Cron (when there are schedules) and one Cleanup, all under one root
supervisor. The builder composes others: several queue supervisors with different transports
or concurrency, a node that only reaps and fires cron, user actors that follow the events.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import Any

import anyio
import attrs

from transports import Transport
from transports.lowlevel import validate_name

from ..core import (
    Actor,
    ActorRef,
    ActorSystem,
    ChildSpec,
    Clock,
    RealClock,
    Restart,
    Strategy,
    SupervisorRef,
    open_actor_system,
)
from ._app import App
from ._claimer import Claimer, SlotStatistics
from ._cleanup import (
    DEFAULT_INTERVAL,
    DEFAULT_NODE_RETENTION,
    DEFAULT_RESULT_RETENTION,
    DEFAULT_RETENTION,
    DEFAULT_SIGNAL_RETENTION,
    DEFAULT_STATS_RETENTION,
    Cleanup,
)
from ._config import MAX_CONCURRENCY, WorkerConfig, integer, number
from ._cron import Cron
from ._errors import ConfigInvalid, UnknownJobKind
from ._events import EventBus, ShutdownPhase
from ._history import History
from ._leases import LeaseKeeper, LeaseLink
from ._queue import DrainWorkers, QueueSupervisor
from ._reaper import Reaper
from ._registry import NodeRegistry
from ._schedule import CronSchedule

__all__ = ["Node", "NodeContext", "Topology", "current_node_id", "default_node_id"]

_log = logging.getLogger("actorq.node")

#: Child ids of the runtime's own actors (queue supervisors are ``queue:NAME``).
_RUNTIME_IDS = frozenset({"leases", "reaper", "cron", "cleanup", "nodes", "history"})


#: The id of the node whose actor runs the current task (inherited by every task it starts).
_CURRENT_NODE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "actorq_node", default=None
)


def current_node_id() -> str | None:
    """The id of the node running the current task (a handler, a runtime actor), or None
    outside a node: what structured logs name as ``node``."""
    return _CURRENT_NODE.get()


def default_node_id() -> str:
    """``host:pid:random``, unique per process, readable in lease owner columns."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@attrs.frozen(kw_only=True)
class NodeContext:
    """What a user actor factory gets: the node's shared parts."""

    node_id: str
    app: App
    transport: Transport  # the node's default transport
    events: EventBus
    clock: Clock
    rng: Random
    # The slots of each queue on this node now (read by a metrics actor), in plan order.
    slots: Callable[[], list[SlotStatistics]] = attrs.field(default=lambda: [])


@attrs.frozen(kw_only=True)
class _QueuePlan:
    queue: str
    concurrency: int
    worker: WorkerConfig
    transport: Transport | None


@attrs.frozen(kw_only=True)
class _ActorPlan:
    id: str
    factory: Callable[[NodeContext], Actor[Any]]
    restart: Restart
    mailbox_size: int
    shutdown: float


#: Longest node id: Worker ids (lease owners, at most 255 characters) add the queue name (at
#: most 128) and a slot number to it.
MAX_NODE_ID_LENGTH = 100


def _check_node_id(node_id: object) -> str:
    if (
        type(node_id) is not str
        or not 0 < len(node_id) <= MAX_NODE_ID_LENGTH
        or not node_id.isprintable()
    ):
        raise ConfigInvalid(
            f"node_id must be 1-{MAX_NODE_ID_LENGTH} printable characters, got {node_id!r:.80}"
        )
    return node_id


class Topology:
    """A recipe for a node: which actors to run, with which settings.

    Build one with :meth:`default` or chain the builder methods, then run it with
    ``async with topology.run() as node:``. Every builder method checks its settings at once:
    a bad one raises :class:`ConfigInvalid` (``transports.InvalidQueueName`` for a bad queue
    name) before anything runs. A setting left out comes from ``config``.

    Args:
        app: the handler registry.
        transport: the default transport (queue supervisors may each use another).
        node_id: the node's name in leases and events, 1 to 100 printable characters
            (default: host, pid and a random tag).
        clock: the clock every actor uses (default: the real clock).
        rng: the seeded RNG every actor draws from (default: a fresh ``Random()``).
        config: the node's settings and defaults (Workers of a queue given no ``worker``
            use it too).
    """

    def __init__(
        self,
        app: App,
        transport: Transport,
        *,
        node_id: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        config: WorkerConfig | None = None,
    ) -> None:
        self.app = app
        self.transport = transport
        self.config = config or WorkerConfig()
        self.node_id = default_node_id() if node_id is None else _check_node_id(node_id)
        self.clock = clock or RealClock()
        self.rng = rng if rng is not None else Random()
        self._queues: list[_QueuePlan] = []
        self._reaper: float | None = None
        self._cron: tuple[Sequence[CronSchedule], float] | None = None
        self._cleanup: (
            tuple[float | None, float, float | None, float | None, float | None, float | None]
            | None
        ) = None
        self._registry: float | None = None
        self._history: float | None = None
        self._actors: list[_ActorPlan] = []
        self._leases = LeaseLink()  # the node's LeaseKeeper, once it runs
        self._claimers: dict[str, Claimer] = {}  # the running Claimer of each queue

    @classmethod
    def default(
        cls,
        app: App,
        transport: Transport,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        worker: WorkerConfig | None = None,
        schedules: Sequence[CronSchedule] | None = None,
        reaper_interval: float | None = None,
        leader_ttl: float | None = None,
        node_id: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
    ) -> Topology:
        """Every queue of the App (or ``queues``), one Reaper, Cron for the App's schedules
        (or ``schedules``) if any, with a cron leader lease of ``leader_ttl`` seconds,
        Cleanup, the node's registration (NodeRegistry) and its History. Settings left out come from ``worker`` (default ``WorkerConfig()``).

        Raises:
            ConfigInvalid: a setting is out of range, or a queue is named twice.
            transports.InvalidQueueName: a queue name is malformed.
            UnknownJobKind: a schedule names a kind the App has no handler for.
        """
        topology = cls(app, transport, node_id=node_id, clock=clock, rng=rng, config=worker)
        for queue in queues if queues is not None else (app.queues or ["default"]):
            topology.queue(queue, concurrency=concurrency)
        topology.reaper(interval=reaper_interval)
        schedules = app.schedules if schedules is None else schedules
        if schedules:
            topology.cron(schedules, leader_ttl=leader_ttl)
        topology.cleanup()
        topology.registry()
        topology.history()
        return topology

    # --- builder --------------------------------------------------------------------------

    def queue(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker: WorkerConfig | None = None,
        transport: Transport | None = None,
    ) -> Topology:
        """Run a Supervisor keeping ``concurrency`` Workers on queue ``name`` (when the
        queue's stored config does not say; default ``worker.concurrency``).

        Raises:
            ConfigInvalid: ``concurrency`` is out of range, or the queue is already planned.
            transports.InvalidQueueName: ``name`` is malformed.
        """
        validate_name(name)
        if any(plan.queue == name for plan in self._queues):
            raise ConfigInvalid(f"queue {name!r} is already in this topology")
        worker = worker or self.config
        if concurrency is None:
            concurrency = worker.concurrency
        integer(f"queue {name!r}: concurrency", concurrency, minimum=0, maximum=MAX_CONCURRENCY)
        self._queues.append(
            _QueuePlan(queue=name, concurrency=concurrency, worker=worker, transport=transport)
        )
        return self

    def reaper(self, *, interval: float | None = None) -> Topology:
        """Run a Reaper reclaiming expired leases every ``interval`` seconds (default
        ``config.reaper_interval``).

        Raises:
            ConfigInvalid: ``interval`` is not a finite number > 0.
        """
        self._reaper = number(
            "reaper interval", self.config.reaper_interval if interval is None else interval
        )
        return self

    def cron(
        self, schedules: Sequence[CronSchedule], *, leader_ttl: float | None = None
    ) -> Topology:
        """Run Cron for ``schedules`` (it fires only while it holds the leader lease, of
        ``leader_ttl`` seconds, default ``config.leader_ttl``).

        Raises:
            UnknownJobKind: a schedule names a kind the App has no handler for.
            PayloadInvalid: a schedule's payload is not of its task's payload type.
            ConfigInvalid: two schedules share a name, or ``leader_ttl`` is out of range.
        """
        ttl = number(
            "cron leader_ttl", self.config.leader_ttl if leader_ttl is None else leader_ttl
        )
        names = [schedule.name for schedule in schedules]
        if len(set(names)) != len(names):
            raise ConfigInvalid(f"cron schedule names must be unique: {names}")
        for schedule in schedules:
            task = self.app.get(schedule.kind)
            if task is None:
                raise UnknownJobKind(
                    f"schedule {schedule.name!r}: no handler for job kind {schedule.kind!r}"
                )
            task.unstructure(schedule.payload)  # PayloadInvalid now, not at every tick
        self._cron = (tuple(schedules), ttl)
        return self

    def cleanup(
        self,
        *,
        default_retention: float | None = DEFAULT_RETENTION,
        interval: float = DEFAULT_INTERVAL,
        stats_retention: float | None = DEFAULT_STATS_RETENTION,
        node_retention: float | None = DEFAULT_NODE_RETENTION,
        signal_retention: float | None = DEFAULT_SIGNAL_RETENTION,
        result_retention: float | None = DEFAULT_RESULT_RETENTION,
    ) -> Topology:
        """Run Cleanup (leader only), deleting finished jobs past their retention, history
        rows older than ``stats_retention`` seconds, signalled events older than
        ``signal_retention`` seconds and registered nodes not seen for ``node_retention``
        seconds, and clearing the results of succeeded jobs finished more than
        ``result_retention`` seconds ago (a day by default; None keeps them as long as their
        job).

        Raises:
            ConfigInvalid: ``interval`` is not > 0, or a retention is negative.
        """
        for what, retention in [
            ("default_retention", default_retention),
            ("stats_retention", stats_retention),
            ("node_retention", node_retention),
            ("signal_retention", signal_retention),
            ("result_retention", result_retention),
        ]:
            if retention is not None:
                number(f"cleanup {what}", retention, strict=False)
        self._cleanup = (
            default_retention,
            number("cleanup interval", interval),
            stats_retention,
            node_retention,
            signal_retention,
            result_retention,
        )
        return self

    def registry(self, *, heartbeat: float | None = None) -> Topology:
        """Register the node in the store's node registry and heartbeat every ``heartbeat``
        seconds (default ``config.node_heartbeat``); it is forgotten when it stops.

        Raises:
            ConfigInvalid: ``heartbeat`` is not a finite number > 0.
        """
        self._registry = number(
            "node heartbeat", self.config.node_heartbeat if heartbeat is None else heartbeat
        )
        return self

    def history(self, *, interval: float | None = None) -> Topology:
        """Record the node's per-queue, per-minute figures and add them to the store every
        ``interval`` seconds (default ``config.stats_interval``).

        Raises:
            ConfigInvalid: ``interval`` is not a finite number > 0.
        """
        self._history = number(
            "history interval", self.config.stats_interval if interval is None else interval
        )
        return self

    def actor(
        self,
        id: str,
        factory: Callable[[NodeContext], Actor[Any]],
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown: float | None = None,
        mailbox_size: int = 1000,
    ) -> Topology:
        """Run a user actor beside the runtime's; its factory gets the node's context.

        Subscribe it to runtime events in its ``on_start``:
        ``node.events.subscribe(self.context.self_ref.tell_nowait)``. It gets ``shutdown``
        seconds to stop (default ``config.shutdown_margin``).

        Raises:
            ConfigInvalid: ``id`` is empty or taken, ``shutdown`` is negative, or
                ``mailbox_size`` is below 1.
        """
        if not isinstance(id, str) or not id or id in {a.id for a in self._actors}:
            raise ConfigInvalid(f"actor id {id!r} is empty or already in this topology")
        if id in _RUNTIME_IDS or id.startswith("queue:"):
            raise ConfigInvalid(f"actor id {id!r} is the runtime's own")
        if not callable(factory):
            raise ConfigInvalid(f"actor {id!r}: the factory must be callable, got {factory!r}")
        if shutdown is None:
            shutdown = self.config.shutdown_margin
        number(f"actor {id!r}: shutdown", shutdown, strict=False)
        integer(f"actor {id!r}: mailbox_size", mailbox_size, minimum=1, maximum=10**9)
        self._actors.append(
            _ActorPlan(
                id=id,
                factory=factory,
                restart=restart,
                shutdown=shutdown,
                mailbox_size=mailbox_size,
            )
        )
        return self

    # --- running --------------------------------------------------------------------------

    def _context(self, events: EventBus) -> NodeContext:
        return NodeContext(
            node_id=self.node_id,
            app=self.app,
            transport=self.transport,
            events=events,
            clock=self.clock,
            rng=self.rng,
            slots=self.slots,
        )

    def slots(self) -> list[SlotStatistics]:
        """The slots busy and free of each queue whose Claimer runs now."""
        claimers = self._claimers
        return [claimers[p.queue].statistics() for p in self._queues if p.queue in claimers]

    def wrap_transports(self, wrap: Callable[[Transport], Transport]) -> Topology:
        """Replace the default transport and every queue's own by ``wrap(transport)`` (one
        wrapper per distinct transport), before the node runs: a metrics or tracing proxy."""
        wrapped: dict[int, Transport] = {}

        def once(transport: Transport) -> Transport:
            if id(transport) not in wrapped:
                wrapped[id(transport)] = wrap(transport)
            return wrapped[id(transport)]

        self.transport = once(self.transport)
        self._queues = [
            attrs.evolve(p, transport=None if p.transport is None else once(p.transport))
            for p in self._queues
        ]
        return self

    def child_specs(self, events: EventBus) -> list[ChildSpec]:
        """The root supervisor's children, in start order (user actors first, so they see
        every event; queue supervisors last, so they stop first)."""
        ctx = self._context(events)
        margin = self.config.shutdown_margin  # to stop; on_stop hands leader leases back
        specs: list[ChildSpec] = [
            ChildSpec(
                id=p.id,
                factory=functools.partial(p.factory, ctx),
                restart=p.restart,
                shutdown=p.shutdown,
                mailbox_size=p.mailbox_size,
            )
            for p in self._actors
        ]
        if self._history is not None:
            # Right after the user actors: it sees every event, and flushes the last ones
            # once the queue supervisors have stopped.
            every = self._history
            specs.append(
                ChildSpec(
                    id="history",
                    factory=lambda: History(
                        transport=self.transport,
                        events=events,
                        interval=every,
                        release_timeout=self.config.release_timeout,
                    ),
                    shutdown=margin,
                    mailbox_size=16,
                )
            )
        if self._registry is not None:
            heartbeat = self._registry
            specs.append(
                ChildSpec(
                    id="nodes",
                    factory=lambda: NodeRegistry(
                        transport=self.transport,
                        node_id=self.node_id,
                        queues=[plan.queue for plan in self._queues],
                        slots=sum(plan.concurrency for plan in self._queues),
                        heartbeat=heartbeat,
                        release_timeout=self.config.release_timeout,
                    ),
                    shutdown=margin,
                )
            )
        if self._queues:
            # Before the queue supervisors (it holds their leases), stopped after them.
            specs.append(
                ChildSpec(
                    id="leases",
                    factory=lambda: LeaseKeeper(
                        link=self._leases, fraction=self.config.renew_fraction, events=events
                    ),
                    shutdown=margin,
                )
            )
        if self._reaper is not None:
            interval = self._reaper
            specs.append(
                ChildSpec(
                    id="reaper",
                    factory=lambda: Reaper(
                        transport=self.transport, events=events, interval=interval
                    ),
                    shutdown=margin,
                )
            )
        if self._cron is not None:
            schedules, ttl = self._cron
            specs.append(
                ChildSpec(
                    id="cron",
                    factory=lambda: Cron(
                        app=self.app,
                        transport=self.transport,
                        events=events,
                        node_id=self.node_id,
                        rng=self.rng,
                        schedules=schedules,
                        leader_ttl=ttl,
                        release_timeout=self.config.release_timeout,
                    ),
                    shutdown=margin,
                )
            )
        if self._cleanup is not None:
            (
                retention,
                cleanup_every,
                stats_retention,
                node_retention,
                signal_retention,
                result_retention,
            ) = self._cleanup
            specs.append(
                ChildSpec(
                    id="cleanup",
                    factory=lambda: Cleanup(
                        transport=self.transport,
                        node_id=self.node_id,
                        default_retention=retention,
                        stats_retention=stats_retention,
                        node_retention=node_retention,
                        signal_retention=signal_retention,
                        result_retention=result_retention,
                        interval=cleanup_every,
                        release_timeout=self.config.release_timeout,
                    ),
                    shutdown=margin,
                )
            )
        for plan in self._queues:
            specs.append(
                ChildSpec(
                    id=f"queue:{plan.queue}",
                    factory=functools.partial(self._queue_supervisor, plan, events),
                    shutdown=plan.worker.queue_stop_timeout,
                )
            )
        return specs

    def _queue_supervisor(self, plan: _QueuePlan, events: EventBus) -> QueueSupervisor:
        return QueueSupervisor(
            node_id=self.node_id,
            queue=plan.queue,
            app=self.app,
            transport=plan.transport or self.transport,
            events=events,
            rng=self.rng,
            concurrency=plan.concurrency,
            worker_config=plan.worker,
            leases=self._leases,
            claimers=self._claimers,
        )

    @contextlib.asynccontextmanager
    async def run(
        self, *, events: EventBus | None = None, shutdown_timeout: float | None = None
    ) -> AsyncIterator[Node]:
        """Start the node; on exit, shut it down gracefully within ``shutdown_timeout``
        seconds (default ``config.shutdown_timeout``).

        Raises:
            ConfigInvalid: ``shutdown_timeout`` is negative or not finite.
        """
        if shutdown_timeout is None:
            shutdown_timeout = self.config.shutdown_timeout
        number("shutdown_timeout", shutdown_timeout, strict=False)
        events = events or EventBus()
        async with open_actor_system(
            clock=self.clock, name=self.node_id, shutdown_timeout=shutdown_timeout
        ) as system:
            # Every actor task of the node descends from the root's, which copies this context.
            token = _CURRENT_NODE.set(self.node_id)
            try:
                root = await system.spawn_supervisor(
                    self.child_specs(events),
                    strategy=Strategy.ONE_FOR_ONE,
                    max_restarts=10,
                    within=60.0,
                    name=f"{self.node_id}/root",
                )
            finally:
                _CURRENT_NODE.reset(token)
            node = Node(self, system, root, events, shutdown_timeout)
            try:
                yield node
            finally:
                await node.shutdown()


class Node:
    """A running node: its actor system, root supervisor and event stream."""

    def __init__(
        self,
        topology: Topology,
        system: ActorSystem,
        root: SupervisorRef,
        events: EventBus,
        shutdown_timeout: float,
    ) -> None:
        self.topology = topology
        self.system = system
        self.root = root
        self.events = events
        self.node_id = topology.node_id
        self.clock = topology.clock
        self._shutdown_timeout = shutdown_timeout
        self._stopped = False

    async def child(self, id: str) -> ActorRef[Any]:
        """The running actor with child id ``id`` (``queue:NAME``, ``reaper``, ``cron``, ...)."""
        return await self.root.child_ref(id)

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop gracefully: stop claiming, let running jobs finish, cancel and release the
        rest, then stop every actor — within ``timeout`` seconds on the clock. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        timeout = self._shutdown_timeout if timeout is None else timeout
        clock = self.clock
        deadline = clock.now() + timeout
        self._phase("draining", f"deadline in {timeout:g}s")
        if self.root.is_alive:
            children = await self.root.which_children()
            if any(info.id == "cron" for info in children):
                # No new cron jobs while the queues drain; the leader lease is handed back.
                await self.root.terminate_child("cron")
            queues = [
                info.ref
                for info in children
                if info.id.startswith("queue:") and info.ref is not None
            ]
            async with anyio.create_task_group() as tg:
                for ref in queues:
                    tg.start_soon(self._drain, ref, deadline)
        self._phase("stopping", "actors")
        await self.system.shutdown(max(0.0, deadline - clock.now()))
        self._phase("stopped", "")

    async def _drain(self, ref: ActorRef[Any], deadline: float) -> None:
        remaining = max(0.0, deadline - self.clock.now())
        try:
            await ref.ask(lambda r: DrainWorkers(reply_to=r), timeout=remaining)
        except Exception as exc:  # a stuck or stopped queue: the system shutdown bounds it
            _log.warning("%s: drain of %s incomplete: %s", self.node_id, ref.name, exc)

    def _phase(self, phase: str, detail: str) -> None:
        self.events.publish(ShutdownPhase(at=self.clock.now(), phase=phase, detail=detail))
        _log.info("%s: shutdown %s %s", self.node_id, phase, detail)
