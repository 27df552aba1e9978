"""The LeaseKeeper: the one owner of a node's job leases.

Every lease a node holds, from claim to finalize, is in one table here. The keeper renews them
in one batched call per transport and TTL each ``ttl * renew_fraction`` (measured on the
node's clock from when the claim, or the last renewal, was sent), tells the holding Worker when
a lease was lost or a cancel was requested, and serves ``ctx.extend_lease()`` through the same
table, so there is one renewal path. The Claimer adds leases (``Hold``) as it hands them out
and removes them (``Forget``) once their finalize was answered.

A notice names the token it is about: by the time it arrives the Worker may run a newer claim
of the same job, which it must not stop.
"""

from __future__ import annotations

import logging
import math
from typing import TypeAlias

import anyio
import attrs

from transports import Transport
from transports.lowlevel import Lease, RenewRequest, RenewResult

from ..core import Actor, ActorRef, ActorStopped, ExitKind, ExitReason, MailboxFull, Reply
from ._config import WorkerConfig
from ._errors import RETRYABLE
from ._events import EventBus, LeasesRenewed

__all__ = [
    "Beat",
    "CancelsRequested",
    "Forget",
    "Hold",
    "LeaseKeeper",
    "LeaseKeeperMessage",
    "LeaseLink",
    "LeasesLost",
    "RenewNow",
]

_log = logging.getLogger("actorq.leases")

_DEFAULT_FRACTION = WorkerConfig().renew_fraction


# --- what the keeper tells a Worker ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class LeasesLost:
    """These leases are gone: stop their handlers. Sent by LeaseKeeper to the holding Worker."""

    job_ids: tuple[int, ...]
    # The lost leases' tokens, pair by pair with job_ids: by the time this arrives the Worker
    # may hold a newer claim of the same job, which is not lost (empty: any claim).
    tokens: tuple[int, ...] = ()


@attrs.frozen(kw_only=True)
class CancelsRequested:
    """An operator asked to cancel these running jobs. Sent by LeaseKeeper to the Worker."""

    job_ids: tuple[int, ...]


# --- what the keeper is told ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Hold:
    """Renew these leases from now on and report about them to ``holder``. Sent by the
    Claimer as it hands the leases out."""

    transport: Transport  # the store the leases are in
    leases: tuple[Lease, ...]
    # The Worker running each lease, pair by pair with leases (told when it is lost).
    holders: tuple[ActorRef[LeasesLost | CancelsRequested], ...]
    # The TTL each lease is renewed with, pair by pair with leases (its task's lease_ttl).
    ttls: tuple[float, ...]
    sent_at: float  # node clock time the claim was sent: the first renewal is due from there
    claimed_ttl: float  # the TTL they were claimed with (the first renewal is due within it)


@attrs.frozen(kw_only=True)
class Forget:
    """Stop renewing these claims (finalized, released, or lost). Sent by the Claimer."""

    transport: Transport  # the store the leases are in
    job_ids: tuple[int, ...]
    tokens: tuple[int, ...]  # pair by pair: a newer claim of the same job stays held


@attrs.frozen(kw_only=True)
class RenewNow:
    """Renew this claim now (``ctx.extend_lease()``); the answer is the store's. Sent by a
    Worker on behalf of its handler."""

    transport: Transport
    job_id: int
    token: int
    ttl: float
    reply_to: Reply[RenewResult]


@attrs.frozen(kw_only=True)
class Beat:
    """Time to renew what is due. Sent by the keeper's ticker to the keeper."""


LeaseKeeperMessage: TypeAlias = Hold | Forget | RenewNow | Beat


class LeaseLink:
    """Where a node's LeaseKeeper is now: the keeper sets it when it starts (again, after a
    restart), and Claimers and Workers read it each time they talk to the keeper."""

    __slots__ = ("held", "ref")

    def __init__(self) -> None:
        self.ref: ActorRef[LeaseKeeperMessage] | None = None
        # The keeper's table, by store and job id (two stores may both have a job 7), kept
        # here so a restarted keeper goes on renewing what the node holds (only the keeper
        # reads or writes it).
        self.held: dict[tuple[Transport, int], _Held] = {}

    def get(self) -> ActorRef[LeaseKeeperMessage]:
        """The running keeper's ref.

        Raises:
            ActorStopped: no keeper ever started on this link (a wiring bug).
        """
        ref = self.ref
        if ref is None:
            raise ActorStopped("no LeaseKeeper has started on this link")
        return ref


class _Held:
    """One lease the keeper renews."""

    __slots__ = ("holder", "renew_at", "span", "token", "transport", "ttl")

    def __init__(
        self,
        token: int,
        ttl: float,
        span: float,
        renew_at: float,
        transport: Transport,
        holder: ActorRef[LeasesLost | CancelsRequested],
    ) -> None:
        self.token = token
        self.ttl = ttl  # renewed with this TTL
        self.span = span  # the TTL of its last grant (the claim's, until first renewed)
        self.renew_at = renew_at  # a renewal period after it was last sent for
        self.transport = transport
        self.holder = holder


class LeaseKeeper(Actor[LeaseKeeperMessage]):
    """Holds and renews every job lease of a node (one per node, or per queue supervisor
    when it is run on its own).

    Each lease is renewed ``fraction`` of its TTL after its claim (or last renewal) was sent,
    measured on the node's clock: the store may keep time by another clock (PostgreSQL's), and
    the two need not agree. The ticker beats every ``fraction`` of the shortest TTL held, and
    each beat renews, in one call per transport and TTL, the leases due before the next beat.

    Args:
        link: where the keeper announces itself on start (Claimers and Workers read it).
        fraction: the part of a TTL after which a lease is renewed
            (``WorkerConfig.renew_fraction``).
        events: where ``LeasesRenewed`` goes after each renewal call (none: not published).
    """

    def __init__(
        self,
        *,
        link: LeaseLink | None = None,
        fraction: float = _DEFAULT_FRACTION,
        events: EventBus | None = None,
    ) -> None:
        self.link = link or LeaseLink()
        self._fraction = fraction
        self._events = events
        self._held = self.link.held  # survives a restart of the keeper
        self._sleeping_for = math.inf  # the period the ticker sleeps now
        self._sleep: anyio.CancelScope | None = None  # cancelled to beat sooner
        self._sleep_cut = False
        self._beat_queued = False
        self._renewing = False

    async def on_start(self) -> None:
        self.link.ref = self.context.self_ref
        self.context.start_soon(self._tick)

    async def on_stop(self, reason: ExitReason) -> None:
        if reason.kind is ExitKind.CRASHED:
            # A bug (an invalid request, a broken invariant): loud, once; the supervisor
            # restarts the keeper, which goes on with the same table.
            _log.error(
                "lease keeper crashed (%d lease(s) held): %s",
                len(self._held),
                reason,
                exc_info=reason.exception,
            )

    def statistics(self) -> int:
        """How many leases are held now."""
        return len(self._held)

    def _period(self) -> float:
        if not self._held:
            return math.inf
        return min(h.span for h in self._held.values()) * self._fraction

    async def _tick(self) -> None:
        clock = self.context.clock
        ref = self.context.self_ref
        while True:
            self._sleeping_for = period = self._period()
            with anyio.CancelScope() as self._sleep:
                if math.isinf(period):
                    await anyio.Event().wait()  # nothing held: until a lease comes in
                else:
                    await clock.sleep(period)
            self._sleep = None
            if self._sleep_cut:
                self._sleep_cut = False
                continue  # a shorter TTL came in: sleep its period from now, then beat
            if self._held and not self._beat_queued:
                try:
                    ref.tell_nowait(Beat())
                except anyio.WouldBlock:
                    continue  # a full mailbox: the next period tries again
                self._beat_queued = True

    def _shorten(self, span: float) -> None:
        """A lease was granted for ``span`` seconds: beat on its rhythm if the ticker sleeps
        longer than that allows."""
        if span * self._fraction < self._sleeping_for and self._sleep is not None:
            self._sleep_cut = True
            self._sleep.cancel()

    async def receive(self, msg: LeaseKeeperMessage) -> None:
        kind = type(msg)
        if kind is Hold:
            assert isinstance(msg, Hold)
            span = msg.claimed_ttl
            renew_at = msg.sent_at + span * self._fraction
            for lease, holder, ttl in zip(msg.leases, msg.holders, msg.ttls, strict=True):
                self._held[msg.transport, lease.job_id] = _Held(
                    lease.token, ttl, span, renew_at, msg.transport, holder
                )
            self._shorten(span)
        elif kind is Forget:
            assert isinstance(msg, Forget)
            held = self._held
            for job_id, token in zip(msg.job_ids, msg.tokens, strict=True):
                entry = held.get((msg.transport, job_id))
                if entry is not None and entry.token == token:
                    del held[msg.transport, job_id]
        elif kind is RenewNow:
            assert isinstance(msg, RenewNow)
            self.context.start_soon(self._renew_one, msg)
        else:
            self._beat_queued = False
            if self._held and not self._renewing:
                self._renewing = True
                self.context.start_soon(self._renew_due)

    async def _renew_one(self, msg: RenewNow) -> None:
        now = self.context.clock.now()
        try:
            (result,) = await msg.transport.renew(
                [RenewRequest(job_id=msg.job_id, token=msg.token)], ttl=msg.ttl
            )
        except Exception as exc:  # the handler's call raises it (a TransportError)
            msg.reply_to.fail(exc)
            return
        key = (msg.transport, msg.job_id)
        held = self._held.get(key)
        if held is not None and held.token == msg.token:
            if result is RenewResult.LOST:
                del self._held[key]
            else:
                held.span = held.ttl
                held.renew_at = now + held.ttl * self._fraction
                self._shorten(held.ttl)
        self._publish([result])
        msg.reply_to.send(result)

    def _publish(self, results: list[RenewResult]) -> None:
        events = self._events
        if events is None or not events.has_subscribers:
            return
        lost = sum(1 for r in results if r is RenewResult.LOST)
        cancels = sum(1 for r in results if r is RenewResult.CANCEL_REQUESTED)
        events.publish(
            LeasesRenewed(
                at=self.context.clock.now(),
                renewed=len(results) - lost,
                lost=lost,
                cancels=cancels,
            )
        )

    async def _renew_due(self) -> None:
        try:
            await self._renew()
        finally:
            self._renewing = False

    async def _renew(self) -> None:
        now = self.context.clock.now()
        horizon = now + self._period()  # due before the next beat: renew on this one
        due: dict[tuple[int, float], list[tuple[int, _Held]]] = {}
        for key, held in list(self._held.items()):
            if not held.holder.is_alive:
                # Its Worker stopped without handing it back (a crash): let it lapse, so the
                # Reaper gives the job to someone else.
                del self._held[key]
                continue
            if held.renew_at <= horizon:
                due.setdefault((id(held.transport), held.ttl), []).append((key[1], held))
        lost: dict[ActorRef[LeasesLost | CancelsRequested], list[tuple[int, int]]] = {}
        cancels: dict[ActorRef[LeasesLost | CancelsRequested], list[int]] = {}
        for (_, ttl), group in due.items():
            transport = group[0][1].transport
            try:
                results = await transport.renew(
                    [RenewRequest(job_id=job_id, token=held.token) for job_id, held in group],
                    ttl=ttl,
                )
            except RETRYABLE as exc:
                # The store blinked: these stay due and the next beat tries again. If it stays
                # away the leases lapse, and the next successful renewal reports them lost.
                # Any other error is a bug: it crashes the keeper.
                _log.warning("could not renew %d lease(s): %s", len(group), exc)
                continue
            self._publish(results)
            for (job_id, held), result in zip(group, results, strict=True):
                if result is RenewResult.LOST:
                    lost.setdefault(held.holder, []).append((job_id, held.token))
                    if self._held.get((held.transport, job_id)) is held:
                        del self._held[held.transport, job_id]
                    continue
                held.span = ttl
                held.renew_at = now + ttl * self._fraction
                self._shorten(ttl)
                if result is RenewResult.CANCEL_REQUESTED:
                    cancels.setdefault(held.holder, []).append(job_id)
        for holder, pairs in lost.items():
            _tell(
                holder,
                LeasesLost(job_ids=tuple(j for j, _ in pairs), tokens=tuple(t for _, t in pairs)),
            )
        for holder, job_ids in cancels.items():
            _tell(holder, CancelsRequested(job_ids=tuple(job_ids)))


def _tell(
    holder: ActorRef[LeasesLost | CancelsRequested], msg: LeasesLost | CancelsRequested
) -> None:
    """Tell a holder without waiting: a stopped Worker needs no notice (its claims are being
    given back), and a notice is never worth blocking every other lease's renewal for."""
    try:
        holder.tell_nowait(msg)
    except MailboxFull:
        _log.debug("notice to %s not delivered: %r", holder.name, msg)
