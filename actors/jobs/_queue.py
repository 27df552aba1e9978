"""The per-queue Supervisor: a queue's Claimer and the right number of Workers for it.

Its children, in start order: the LeaseKeeper when it was given none (a queue supervisor run
on its own), the queue's Claimer, then one Worker per slot. A crashed Worker is restarted on
its own; a crashed Claimer is restarted with every Worker after it, since they report to it
(their running jobs are given back, and the Claimer's unstored outcomes lapse and are reaped).
"""

from __future__ import annotations

import itertools
import logging
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import Any, TypeAlias

import anyio
import attrs

from transports import QueueConfig, Transport

from ..core import (
    ActorRef,
    ChildSpec,
    ExitKind,
    ExitReason,
    Reply,
    Restart,
    Strategy,
    Supervisor,
    SupervisorCommand,
    TerminateChild,
)
from ._app import App
from ._claimer import Claimer, Flush, StopClaiming
from ._config import MAX_CONCURRENCY, WorkerConfig, integer, number
from ._errors import RETRYABLE
from ._events import EventBus, WorkerCrashed
from ._leases import LeaseKeeper, LeaseLink
from ._worker import Drain, Worker

__all__ = ["DrainWorkers", "QueueSupervisor", "Reconfigure", "WorkerCount"]

_log = logging.getLogger("actorq.queue")


@attrs.frozen(kw_only=True)
class Reconfigure:
    """Read the queue's config now and scale to it. Sent by the ticker, or by anyone."""


@attrs.frozen(kw_only=True)
class DrainWorkers:
    """Drain every Worker (graceful shutdown). Sent by the Node before it stops."""

    reply_to: Reply[None]


@attrs.frozen(kw_only=True)
class WorkerCount:
    """How many Workers run now. Sent by operators and tests."""

    reply_to: Reply[int]


QueueCommand: TypeAlias = Reconfigure | DrainWorkers | WorkerCount


class QueueSupervisor(Supervisor):
    """Keeps ``concurrency`` Workers of one queue alive, following the queue's stored config.

    A paused queue scales to zero; a changed ``concurrency`` scales up or down at run time
    (Workers leaving drain first). A stored config no node could honour (a negative or huge
    concurrency, written by another tool) is ignored with a WARNING naming the queue and the
    value, and the Workers of the last good config keep running. Crashed Workers are logged
    at ERROR and restarted one-for-one; too many crashes in a window escalate to the node's
    root supervisor.

    Args:
        node_id: the node's name; Worker ids (lease owners) start with it.
        queue: the queue.
        concurrency: Workers to run when the config does not say (default
            ``worker_config.concurrency``).
        reconfigure_interval: seconds between reads of the queue config.
        leases: the node's LeaseKeeper; without one, the supervisor runs its own.
        claimers: where the running Claimer is announced, by queue (the node reads its
            ``statistics()`` for the slots busy and free).

    Raises:
        ConfigInvalid: ``concurrency`` or ``reconfigure_interval`` is out of range.
    """

    def __init__(
        self,
        *,
        node_id: str,
        queue: str,
        app: App,
        transport: Transport,
        events: EventBus,
        rng: Random,
        concurrency: int | None = None,
        worker_config: WorkerConfig | None = None,
        reconfigure_interval: float = 5.0,
        max_restarts: int = 20,
        within: float = 60.0,
        leases: LeaseLink | None = None,
        claimers: dict[str, Claimer] | None = None,
    ) -> None:
        super().__init__(max_restarts=max_restarts, within=within)
        self._claimers = claimers
        self._config = worker_config or WorkerConfig()
        if concurrency is None:
            concurrency = self._config.concurrency
        integer(f"queue {queue!r}: concurrency", concurrency, minimum=0, maximum=MAX_CONCURRENCY)
        number(f"queue {queue!r}: reconfigure_interval", reconfigure_interval)
        self.node_id = node_id
        self.queue = queue
        self._app = app
        self._transport = transport
        self._events = events
        self._rng = rng
        self._default = concurrency
        self._refused: str | None = None  # the stored value warned about, as its repr
        self._honoured = False  # a stored config was followed: its Workers are the last good
        self._interval = reconfigure_interval
        self._slots: list[str] = []  # child ids of the Workers that should run, in start order
        self._slot_numbers = itertools.count(1)
        self._incarnations = itertools.count(1)
        self._draining = False
        self._own_keeper = leases is None
        self._leases = leases or LeaseLink()

    async def on_start(self) -> None:
        await super().on_start()
        if self._own_keeper:
            await self.start_child(
                ChildSpec(
                    id="leases",
                    factory=lambda: LeaseKeeper(
                        link=self._leases,
                        fraction=self._config.renew_fraction,
                        events=self._events,
                    ),
                    shutdown=self._config.shutdown_margin,
                )
            )
        await self.start_child(
            ChildSpec(
                id="claimer",
                factory=self._make_claimer,
                restart=Restart.PERMANENT,
                shutdown=self._config.shutdown_margin,
            )
        )
        await self._reconfigure()
        self.context.start_soon(self._tick)

    async def _tick(self) -> None:
        ref: ActorRef[Any] = self.context.self_ref
        while True:
            await self.context.clock.sleep(self._interval)
            try:
                ref.tell_nowait(Reconfigure())
            except anyio.WouldBlock:
                pass

    async def receive(self, msg: SupervisorCommand | QueueCommand) -> None:
        if type(msg) is Reconfigure:
            await self._reconfigure()
        elif type(msg) is WorkerCount:
            msg.reply_to.send(len(self._slots))
        elif type(msg) is DrainWorkers:
            self._draining = True
            self.context.start_soon(self._drain_all, msg.reply_to)
        else:
            await super().receive(msg)  # type: ignore[arg-type]

    async def _reconfigure(self) -> None:
        if self._draining:
            return
        try:
            config = await self._transport.get_queue_config(self.queue)
        except RETRYABLE as exc:
            _log.warning(
                "queue %r: cannot read its config, keeping %d workers: %s",
                self.queue,
                len(self._slots),
                exc,
            )
            return
        target = self._target(config)
        if target is not None:
            await self._scale(target)

    def _target(self, config: QueueConfig) -> int | None:
        """The Workers ``config`` asks for, or None when no node could honour it."""
        if config.paused:
            self._honoured = True
            return 0
        stored = config.concurrency
        if stored is None:
            target = self._default
        elif (
            isinstance(stored, int)
            and not isinstance(stored, bool)
            and 0 <= stored <= MAX_CONCURRENCY
        ):
            target = stored
        else:
            # Before any good config was read, the node's own default is the last good one.
            keep = len(self._slots) if self._honoured else self._default
            if repr(stored) != self._refused:  # by repr: NaN is not equal to itself
                self._refused = repr(stored)
                _log.warning(
                    "queue %r: ignoring the stored concurrency %r (must be between 0 and %d), "
                    "keeping %d workers",
                    self.queue,
                    stored,
                    MAX_CONCURRENCY,
                    keep,
                    extra={"queue": self.queue, "concurrency": stored},
                )
            return None if self._honoured else keep
        self._refused = None
        self._honoured = True
        return target

    async def _scale(self, target: int) -> None:
        while len(self._slots) < target:
            slot = f"{self.node_id}/{self.queue}/{next(self._slot_numbers)}"
            self._slots.append(slot)
            await self.start_child(
                ChildSpec(
                    id=slot,
                    factory=lambda slot=slot: self._make_worker(slot),  # type: ignore[misc]
                    restart=Restart.PERMANENT,
                    shutdown=self._config.worker_stop_timeout,
                )
            )
        while len(self._slots) > target:
            slot = self._slots.pop()
            self.context.start_soon(self._retire, slot)

    def _make_claimer(self) -> Claimer:
        claimer = Claimer(
            # A prefix of every Worker id of the queue on this node: the claim is the queue's.
            owner=f"{self.node_id}/{self.queue}",
            queue=self.queue,
            app=self._app,
            transport=self._transport,
            events=self._events,
            leases=self._leases,
            config=self._config,
        )
        if self._claimers is not None:
            self._claimers[self.queue] = claimer
        return claimer

    def _claimer_ref(self) -> ActorRef[Any]:
        ref = next((c.ref for c in self.which_children() if c.id == "claimer"), None)
        assert ref is not None, "the Claimer starts before any Worker"
        return ref

    def _make_worker(self, slot: str) -> Worker:
        # Read when the Worker (re)starts: after a Claimer restart, the new Claimer.
        return Worker(
            worker_id=f"{slot}.{next(self._incarnations)}",
            queue=self.queue,
            app=self._app,
            transport=self._transport,
            events=self._events,
            rng=self._rng,
            claimer=self._claimer_ref(),
            leases=self._leases,
            config=self._config,
        )

    async def _worker_ref(self, slot: str) -> ActorRef[Any] | None:
        for info in self.which_children():
            if info.id == slot:
                return info.ref
        return None

    async def _retire(self, slot: str) -> None:
        """Drain one Worker, then stop it (scale down)."""
        ref = await self._worker_ref(slot)
        if ref is not None:
            await _drain(ref, self._config.worker_stop_timeout)
        self.context.self_ref.tell_nowait(TerminateChild(id=slot, reply_to=Reply()))

    async def _drain_all(self, reply_to: Reply[None]) -> None:
        """Stop claiming, drain every Worker, then store what they handed back."""
        timeout = self._config.worker_stop_timeout
        claimer = self._claimer_ref()
        await _ask(claimer, StopClaiming, timeout)
        slots = set(self._slots)
        refs = [info.ref for info in self.which_children() if info.id in slots and info.ref]
        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(_drain, ref, timeout)
        await _ask(claimer, Flush, self._config.shutdown_margin)
        reply_to.send(None)

    async def _child_exited(self, ref: ActorRef[Any], reason: ExitReason) -> None:
        if reason.kind is ExitKind.CRASHED:
            # A crash is a bug (an invalid request, a broken invariant): loud, with its
            # traceback, once per crash; the restart intensity bounds how often.
            _log.error(
                "queue %r: worker %s crashed: %s",
                self.queue,
                ref.name,
                reason,
                exc_info=reason.exception,
                extra={"queue": self.queue, "worker": ref.name},
            )
            self._events.publish(
                WorkerCrashed(
                    at=self.context.clock.now(),
                    queue=self.queue,
                    worker=ref.name,
                    error=str(reason),
                )
            )
        claimer = next((c.ref for c in self.which_children() if c.id == "claimer"), None)
        if claimer is not None and claimer._cell is ref._cell:
            # The Workers report to the Claimer: restart them with it.
            self.strategy = Strategy.REST_FOR_ONE
            try:
                await super()._child_exited(ref, reason)
            finally:
                self.strategy = Strategy.ONE_FOR_ONE
            return
        await super()._child_exited(ref, reason)


async def _drain(ref: ActorRef[Any], timeout: float) -> None:
    await _ask(ref, Drain, timeout)


async def _ask(ref: ActorRef[Any], message: Any, timeout: float) -> None:
    try:
        await ref.ask(lambda r: message(reply_to=r), timeout=timeout)
    except Exception as exc:  # a stopped or stuck actor: shutdown's own timeout handles it
        _log.debug("%s of %s did not answer: %s", message.__name__, ref.name, exc)
