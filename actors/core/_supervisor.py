"""OTP-style supervision: restart strategies, restart intensity, ordered shutdown."""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from ._actor import DEFAULT_MAILBOX_SIZE, DEFAULT_SHUTDOWN, Actor
from ._cell import Cell
from ._errors import ChildAlreadyExists, ChildNotFound, RestartIntensityExceeded
from ._messages import ExitReason
from ._ref import ActorRef, Reply

__all__ = [
    "ChildInfo",
    "ChildSpec",
    "Restart",
    "StartChild",
    "Strategy",
    "Supervisor",
    "SupervisorCommand",
    "SupervisorRef",
    "TerminateChild",
    "WhichChildren",
]


class Restart(enum.Enum):
    """When a supervisor restarts a child that stopped."""

    #: Always.
    PERMANENT = "permanent"
    #: Only after an abnormal exit (CRASHED or KILLED), never after NORMAL or SHUTDOWN.
    TRANSIENT = "transient"
    #: Never; the child is forgotten once it stops.
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them fails."""

    #: Only the failed child.
    ONE_FOR_ONE = "one_for_one"
    #: All children: the others are stopped in reverse start order, then all start in order.
    ONE_FOR_ALL = "one_for_all"
    #: The failed child and those started after it, stopped in reverse, restarted in order.
    REST_FOR_ONE = "rest_for_one"


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child."""

    #: Unique among the supervisor's children; also the child's name.
    id: str
    #: Builds a fresh actor for every (re)start.
    factory: Callable[[], Actor[Any]]
    #: Restart policy.
    restart: Restart = Restart.PERMANENT
    #: Seconds the child gets to stop gracefully before it is cancelled (``math.inf`` waits).
    shutdown: float = attrs.field(default=DEFAULT_SHUTDOWN, validator=_non_negative)
    #: Mailbox capacity of the child.
    mailbox_size: int = attrs.field(default=DEFAULT_MAILBOX_SIZE, validator=attrs.validators.ge(1))


@attrs.frozen(kw_only=True)
class ChildInfo:
    """One line of ``which_children()``."""

    #: The child's spec id.
    id: str
    #: The running incarnation, or None when it is not running (a transient child that ended).
    ref: ActorRef[Any] | None
    #: The child's restart policy.
    restart: Restart
    #: How many times this child was restarted.
    restarts: int


@attrs.frozen(kw_only=True)
class StartChild:
    """Ask a supervisor to start a dynamic child. Sent by ``SupervisorRef.start_child``."""

    #: The child to start, appended after the existing ones.
    spec: ChildSpec
    #: Answered with the child's ref, or failed with ``ChildAlreadyExists``.
    reply_to: Reply[ActorRef[Any]]


@attrs.frozen(kw_only=True)
class TerminateChild:
    """Ask a supervisor to stop and forget a child. Sent by ``SupervisorRef.terminate_child``."""

    #: The child's spec id.
    id: str
    #: Answered with None once the child has stopped, or failed with ``ChildNotFound``.
    reply_to: Reply[None]


@attrs.frozen(kw_only=True)
class WhichChildren:
    """Ask a supervisor for its children. Sent by ``SupervisorRef.which_children``."""

    #: Answered with the children in start order.
    reply_to: Reply[list[ChildInfo]]


#: Every message a ``Supervisor`` accepts.
SupervisorCommand = StartChild | TerminateChild | WhichChildren


class _Child:
    __slots__ = ("cell", "restarts", "spec")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.cell: Cell[Any] | None = None
        self.restarts = 0


class Supervisor(Actor[SupervisorCommand]):
    """An actor that starts children, restarts them by policy, and stops them in order.

    Children start in the order given, each after the previous one's ``on_start``. When one
    stops, its ``Restart`` policy decides whether that counts as a failure; a failure triggers
    the ``strategy``. More than ``max_restarts`` restarts within ``within`` seconds (on the
    clock) make the supervisor give up: it crashes with ``RestartIntensityExceeded``, which
    stops all its children in reverse start order and reports the crash to its own parent.
    Supervisors nest: a ``ChildSpec`` factory may return a ``Supervisor``.

    Talk to a running supervisor through ``SupervisorRef``; code running inside the supervisor
    (a subclass) calls ``start_child`` / ``terminate_child`` / ``which_children`` directly.

    Args:
        children: the initial children, started in order.
        strategy: which children to restart when one fails.
        max_restarts: restarts allowed within ``within`` seconds; one more escalates.
        within: the intensity window, in seconds.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
    ) -> None:
        if max_restarts < 0 or within <= 0:
            raise ValueError("max_restarts must be >= 0 and within > 0")
        self._initial = tuple(children)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self._children: list[_Child] = []
        self._restart_times: deque[float] = deque()

    async def on_start(self) -> None:
        """Start the initial children in order."""
        for spec in self._initial:
            await self.start_child(spec)

    async def receive(self, msg: SupervisorCommand) -> None:
        """Serve ``StartChild``, ``TerminateChild`` and ``WhichChildren`` requests."""
        match msg:
            case StartChild(spec=spec, reply_to=reply):
                try:
                    ref = await self.start_child(spec)
                except ChildAlreadyExists as exc:
                    reply.fail(exc)
                else:
                    reply.send(ref)
            case TerminateChild(id=child_id, reply_to=reply):
                try:
                    await self.terminate_child(child_id)
                except ChildNotFound as exc:
                    reply.fail(exc)
                else:
                    reply.send(None)
            case WhichChildren(reply_to=reply):
                reply.send(self.which_children())

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any]:
        """Start a child after the existing ones; returns once its ``on_start`` has run.

        Raises:
            ChildAlreadyExists: a child with that id exists.
        """
        if any(child.spec.id == spec.id for child in self._children):
            raise ChildAlreadyExists(f"{self.context.name} already has a child {spec.id!r}")
        child = _Child(spec)
        self._children.append(child)
        return await self._start(child)

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child gracefully (within its ``shutdown`` timeout) and forget it.

        Raises:
            ChildNotFound: no child has that id.
        """
        for child in self._children:
            if child.spec.id == child_id:
                break
        else:
            raise ChildNotFound(f"{self.context.name} has no child {child_id!r}")
        self._children.remove(child)
        await self._stop(child)

    def which_children(self) -> list[ChildInfo]:
        """Return the children in start order."""
        return [
            ChildInfo(
                id=child.spec.id,
                ref=None if child.cell is None else child.cell.ref,
                restart=child.spec.restart,
                restarts=child.restarts,
            )
            for child in self._children
        ]

    async def _child_exited(self, ref: ActorRef[Any], reason: ExitReason) -> None:
        for child in self._children:
            if child.cell is ref._cell:
                break
        else:
            return  # stopped on purpose (terminate_child, a sibling restart): not a failure
        child.cell = None
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and reason.is_normal):
            if restart is Restart.TEMPORARY:
                self._children.remove(child)
            return
        self._count_restart(child, reason)
        if self.strategy is Strategy.ONE_FOR_ONE:
            affected = [child]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            affected = list(self._children)
        else:
            affected = self._children[self._children.index(child) :]
        was_running = [other for other in affected if other is child or other.cell is not None]
        for other in reversed(was_running):
            if other is not child:
                await self._stop(other)
        for other in was_running:
            if other is not child and other.spec.restart is Restart.TEMPORARY:
                self._children.remove(other)  # stopped by us; temporary children never return
            else:
                other.restarts += 1
                await self._start(other)

    def _count_restart(self, child: _Child, reason: ExitReason) -> None:
        now = self.context.clock.now()
        times = self._restart_times
        times.append(now)
        while times[0] <= now - self.within:
            times.popleft()
        if len(times) > self.max_restarts:
            raise RestartIntensityExceeded(
                f"{self.context.name}: {len(times)} restarts within {self.within} s"
                f" (max_restarts={self.max_restarts}); last: {child.spec.id} {reason}"
            ) from reason.exception

    async def _start(self, child: _Child) -> ActorRef[Any]:
        spec = child.spec
        cell = self.context._cell
        # Keep the cell's child list in spec order, so shutdown runs in reverse spec order
        # even after restarts.
        index = sum(
            1 for c in self._children[: self._children.index(child)] if c.cell in cell.children
        )
        child.cell = await cell.spawn_child(
            spec.factory,
            name=spec.id,
            mailbox_size=spec.mailbox_size,
            shutdown=spec.shutdown,
            index=index,
        )
        return child.cell.ref

    async def _stop(self, child: _Child) -> None:
        cell = child.cell
        if cell is not None:
            child.cell = None  # so that its exit is not taken for a failure
            await cell.stop_and_wait(ExitReason.shutdown(), child.spec.shutdown)


class SupervisorRef:
    """A ``Supervisor``'s ref with its management API; works from any task.

    Called from inside the supervisor's own task, the methods act directly instead of asking
    (which would wait for itself).

    Args:
        ref: the supervisor actor's ref.
    """

    __slots__ = ("ref",)

    def __init__(self, ref: ActorRef[SupervisorCommand]) -> None:
        #: The underlying actor ref (watch it, tell it commands).
        self.ref = ref

    @property
    def name(self) -> str:
        """The supervisor's name."""
        return self.ref.name

    @property
    def is_alive(self) -> bool:
        """True until the supervisor has stopped."""
        return self.ref.is_alive

    def _local(self) -> Supervisor | None:
        cell = self.ref._cell
        if cell.is_current_task():
            assert isinstance(cell.actor, Supervisor)
            return cell.actor
        return None

    async def start_child(self, spec: ChildSpec, *, timeout: float = math.inf) -> ActorRef[Any]:
        """Start a dynamic child; see ``Supervisor.start_child``.

        Raises:
            ChildAlreadyExists: a child with that id exists.
            ActorStopped: the supervisor is stopped.
            AskTimeout: no answer within ``timeout`` seconds on the clock.
        """
        local = self._local()
        if local is not None:
            return await local.start_child(spec)
        return await self.ref.ask(lambda r: StartChild(spec=spec, reply_to=r), timeout=timeout)

    async def terminate_child(self, child_id: str, *, timeout: float = math.inf) -> None:
        """Stop and forget a child; see ``Supervisor.terminate_child``.

        Raises:
            ChildNotFound: no child has that id.
            ActorStopped: the supervisor is stopped.
            AskTimeout: no answer within ``timeout`` seconds on the clock.
        """
        local = self._local()
        if local is not None:
            await local.terminate_child(child_id)
            return
        await self.ref.ask(lambda r: TerminateChild(id=child_id, reply_to=r), timeout=timeout)

    async def which_children(self, *, timeout: float = math.inf) -> list[ChildInfo]:
        """Return the children in start order.

        Raises:
            ActorStopped: the supervisor is stopped.
            AskTimeout: no answer within ``timeout`` seconds on the clock.
        """
        local = self._local()
        if local is not None:
            return local.which_children()
        return await self.ref.ask(lambda r: WhichChildren(reply_to=r), timeout=timeout)

    async def child_ref(self, child_id: str, *, timeout: float = math.inf) -> ActorRef[Any]:
        """Return the running incarnation of a child.

        Raises:
            ChildNotFound: no such child, or it is not running.
        """
        for info in await self.which_children(timeout=timeout):
            if info.id == child_id and info.ref is not None:
                return info.ref
        raise ChildNotFound(f"{self.name} has no running child {child_id!r}")

    def __repr__(self) -> str:
        return f"<SupervisorRef {self.ref.name}>"
