"""The stateful test: workers, a reaper, leaders and a clock against one transport and the model.

Hypothesis drives :class:`LeaseMachine` through enqueues, claims by several workers, renewals,
every finalize outcome, cancels, clock jumps, reaps, worker crashes (a crashed worker simply
stops calling), stale workers acting late, renew and finalize batches that name one lease twice
and stale tokens before live ones, leader leases and cursors, and races of several calls at one
instant on separate transport instances. After every step the transport's answers are
checked against the :class:`~property_tests.model.Ledger` invariants and the
:class:`~property_tests.model.ReferenceModel`, and its whole job table against both.

Replays are exact on every backend, so a failure shrinks: each example starts from an empty
store whose ids and tokens count from 1 again, at ``START`` on the harness's manual clock (the
only time any transport sees); rules draw plain integers and pick with them among the leases
and jobs the machine already knows, never a value drawn from a server's answer; and calls at
one instant run in a drawn order, one after another, on SQL backends (see
:meth:`~property_tests.harness.Harness.gather`). ``test_shrinking.py`` proves it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from transports import Job, Transport
from transports.lowlevel import FinalizeRequest, Lease, RenewRequest, RenewResult

from .harness import Harness
from .model import STALE_TOKEN_INERT, Ledger, ReferenceModel, Violation
from .ops import (
    AcquireLeader,
    AdvanceCursor,
    CancelJob,
    CapQueue,
    Claim,
    Enqueue,
    Finalize,
    GetCursor,
    Op,
    Operate,
    Pause,
    Reap,
    ReleaseLeader,
    Renew,
    SetLimit,
    settle,
)
from .strategies import (
    CONCURRENCY_KEYS,
    CURSOR_NAMES,
    HOLDERS,
    LEADER_NAMES,
    QUEUES,
    RATE_WINDOWS,
    WORKERS,
    EnqueueSpec,
    OutcomeSpec,
    advances,
    cool_outcome_specs,
    cursor_values,
    enqueue_batches,
    enqueue_specs,
    key_limits,
    key_rates,
    keyed_enqueue_batches,
    keyed_enqueue_specs,
    limits,
    outcome_specs,
    picks,
    ttls,
)

__all__ = ["FlowMachine", "LeaseMachine", "race_actions"]

_KEEP_OLD = 8  # stale leases a worker remembers, to act on them late

worker_indexes = st.integers(min_value=0, max_value=len(WORKERS) - 1)

race_actions = st.one_of(
    st.tuples(st.just("claim"), worker_indexes, st.sampled_from(QUEUES), limits, ttls),
    st.tuples(st.just("renew"), worker_indexes, picks, ttls),
    st.tuples(st.just("finalize"), worker_indexes, picks, outcome_specs),
    st.tuples(st.just("reap"), limits),
    st.tuples(st.just("cancel"), picks),
    st.tuples(st.just("acquire"), st.sampled_from(LEADER_NAMES), st.sampled_from(HOLDERS), ttls),
    st.tuples(st.just("cursor"), st.sampled_from(CURSOR_NAMES), st.booleans(), cursor_values),
    st.tuples(st.just("enqueue"), enqueue_batches),
)
"""One call of a race of mixed calls (``claim_race`` races claims alone)."""


def _key(lease: Lease) -> tuple[int, int]:
    """What names a lease: SQLite's tokens count per job, so a token alone is not enough."""
    return (lease.job_id, lease.token)


class LeaseMachine(RuleBasedStateMachine):
    """A transport, the reference model and the ledger, stepped together.

    Args:
        harness: the loop, clock and transports (a fresh store per example).
    """

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.transports = harness.fresh()
        self.clock = harness.clock
        self.model = ReferenceModel()
        self.ledger = Ledger()
        self.held: dict[str, list[Lease]] = {w: [] for w in WORKERS}  # leases it believes it holds
        self.old: dict[str, list[Lease]] = {w: [] for w in WORKERS}  # finalized or lost
        self.crashed: set[str] = set()
        self.job_ids: list[int] = []
        self.table: list[Job] = []  # the job table as last read
        self.cursor_seen: dict[str, float | None] = {}

    # --- plumbing -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now()

    def _transport(self, index: int) -> Transport:
        return self.transports[index % len(self.transports)]

    def _run(self, op: Op, instance: int = 0) -> Any:
        """Run one call, check it, and return its answer."""
        transport = self._transport(instance)
        result = self.harness.call(op.run, transport)
        self.harness.log(f"{op!r} -> {result!r}")
        self._settle([(op, result)])
        return result

    def _settle(self, done: list[tuple[Op, Any]]) -> None:
        """Check calls that ran at this instant (see :func:`settle`) and move on."""
        with self.harness.recording():
            self.model, self.ledger = settle(done, self.model, self.ledger, self.now)

    def _get(self, job_ids: list[int]) -> list[Job]:
        """The jobs as the store has them now (one trip to the harness's loop)."""
        transport = self._transport(0)

        async def get_all() -> list[Job]:
            return [await transport.get(job_id) for job_id in job_ids]

        return self.harness.call(get_all)

    def _fenced(self, job_ids: set[int], op: Op, instance: int) -> Any:
        """Run a call carrying stale tokens for ``job_ids``; prove those jobs did not change."""
        ordered = sorted(job_ids)
        before = self._get(ordered) if ordered else []
        result = self._run(op, instance)
        after_all = self._get(ordered) if ordered else []
        for job_id, job, after in zip(ordered, before, after_all, strict=True):
            if after != job:
                with self.harness.recording():
                    raise Violation(
                        STALE_TOKEN_INERT,
                        f"{op!r} with a stale token changed job {job_id}: {job} -> {after}",
                    )
        return result

    def _stale_jobs(self, pairs: list[tuple[int, int]]) -> set[int]:
        """Jobs all of whose (job, token) pairs in a call are stale."""
        live = {job_id for job_id, token in pairs if self.ledger.is_live_holder(job_id, token)}
        return {job_id for job_id, _ in pairs} - live

    def _forget(self, worker: str, leases: list[Lease]) -> None:
        gone = {_key(lease) for lease in leases}
        self.held[worker] = [lease for lease in self.held[worker] if _key(lease) not in gone]
        known = {_key(lease) for lease in self.old[worker]}
        fresh = list({_key(lease): lease for lease in leases if _key(lease) not in known}.values())
        self.old[worker] = (self.old[worker] + fresh)[-_KEEP_OLD:]

    @staticmethod
    def _pick(items: list[Any], pick: int) -> Any:
        return items[pick % len(items)]

    def _holders(self, leases: dict[str, list[Lease]]) -> list[int]:
        """Indexes of the running (not crashed) workers with leases in ``leases``."""
        return [i for i, w in enumerate(WORKERS) if w not in self.crashed and leases[w]]

    def _chosen(self, leases: dict[str, list[Lease]], pick: int) -> int | None:
        """A running worker with leases in ``leases``, or None.

        Rules choose among whoever can act with plain integers, never with preconditions or
        draws whose shape depends on the store: SQL races have no fixed winner, and hypothesis
        needs each example to draw the same way when it is replayed.
        """
        able = self._holders(leases)
        return self._pick(able, pick) if able else None

    # --- producing ----------------------------------------------------------------------

    @initialize(specs=st.lists(enqueue_specs, min_size=1, max_size=6))
    def backlog(self, specs: list[EnqueueSpec]) -> None:
        """Start with a backlog, so the first claims have work."""
        self.enqueue(specs, 0)

    @rule(specs=enqueue_batches, instance=worker_indexes)
    def enqueue(self, specs: list[EnqueueSpec], instance: int) -> None:
        """Enqueue a batch: keyed or not, due now, delayed or at a time, any priority."""
        op = Enqueue(tuple(spec.request(self.now) for spec in specs), before=tuple(self.table))
        results = self._run(op, instance)
        self.job_ids.extend(r.job_id for r in results if not r.deduplicated)

    # --- working ------------------------------------------------------------------------

    @rule(worker=worker_indexes, queue=st.sampled_from(QUEUES), limit=limits, ttl=ttls)
    def claim(self, worker: int, queue: str, limit: int, ttl: float) -> None:
        """A worker claims up to ``limit`` jobs of a queue."""
        name = WORKERS[worker]
        if name in self.crashed:
            return
        leases = self._run(Claim(queue, name, limit, ttl), worker)
        self.held[name].extend(leases)

    @rule(pick=picks, which=st.lists(picks, min_size=1, max_size=3), ttl=ttls)
    def renew(self, pick: int, which: list[int], ttl: float) -> None:
        """A worker's heartbeat renews some of the leases it holds, in one batch."""
        worker = self._chosen(self.held, pick)
        if worker is None:
            return
        held = self.held[WORKERS[worker]]
        chosen = {_key(lease): lease for lease in (self._pick(held, n) for n in which)}
        self._renew(worker, list(chosen.values()), ttl)

    @rule(limit=limits, ttl=ttls, n=st.integers(min_value=2, max_value=len(WORKERS)), order=picks)
    def claim_race(self, limit: int, ttl: float, n: int, order: int) -> None:
        """Several workers claim the same queue at the same instant, on separate instances."""
        names = [name for name in WORKERS[:n] if name not in self.crashed]
        if len(names) >= 2:
            self._race(
                [(Claim(QUEUES[0], name, limit, ttl), self.held[name].extend) for name in names],
                order,
            )

    @rule(ttl=ttls)
    def heartbeats(self, ttl: float) -> None:
        """Every running worker's heartbeat renews all it believes it holds, stale or not."""
        for worker, name in enumerate(WORKERS):
            if name not in self.crashed and self.held[name]:
                self._renew(worker, list(self.held[name]), ttl)

    def _renew(self, worker: int, leases: list[Lease], ttl: float) -> None:
        op = Renew(
            tuple(RenewRequest(job_id=lease.job_id, token=lease.token) for lease in leases), ttl
        )
        stale = self._stale_jobs([(lease.job_id, lease.token) for lease in leases])
        results = self._fenced(stale, op, worker)
        lost = {
            _key(lease)
            for lease, result in zip(leases, results, strict=True)
            if result is RenewResult.LOST
        }
        self._forget(WORKERS[worker], [lease for lease in leases if _key(lease) in lost])

    @rule(pick=picks, which=picks, outcomes=st.lists(outcome_specs, min_size=1, max_size=3))
    def finalize(self, pick: int, which: int, outcomes: list[OutcomeSpec]) -> None:
        """A worker finalizes leases it holds, one or a batch (a flush), with any outcomes."""
        worker = self._chosen(self.held, pick)
        if worker is None:
            return
        name = WORKERS[worker]
        held = self.held[name]
        start = which % len(held)
        leases = (held[start:] + held[:start])[: len(outcomes)]
        self._finalize(worker, leases, outcomes[: len(leases)])
        self._forget(name, leases)

    def _finalize(self, worker: int, leases: list[Lease], outcomes: list[OutcomeSpec]) -> None:
        op = Finalize(
            tuple(
                FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=o.outcome(self.now))
                for lease, o in zip(leases, outcomes, strict=True)
            )
        )
        stale = self._stale_jobs([(lease.job_id, lease.token) for lease in leases])
        self._fenced(stale, op, worker)

    @rule(
        pick=picks,
        entries=st.lists(st.tuples(st.booleans(), picks), min_size=2, max_size=6),
        outcomes=st.lists(outcome_specs, min_size=1, max_size=3),
        ttl=ttls,
        renew=st.booleans(),
    )
    def mixed_batch(
        self,
        pick: int,
        entries: list[tuple[bool, int]],
        outcomes: list[OutcomeSpec],
        ttl: float,
        renew: bool,
    ) -> None:
        """A worker sends one renew or finalize batch that names leases in any order, some of
        them twice and stale ones before live ones (of the same job, too): a retried flush, a
        heartbeat that raced a finalize. Every position's answer is checked against the model,
        which takes the batch in order."""
        worker = self._chosen(self.held, pick)
        if worker is None:
            return
        name = WORKERS[worker]
        held, old = self.held[name], self.old[name]
        leases = [self._pick(old if stale and old else held, n) for stale, n in entries]
        if renew:
            self._renew(worker, leases, ttl)
        else:
            chosen = [outcomes[i % len(outcomes)] for i in range(len(leases))]
            self._finalize(worker, leases, chosen)
            self._forget(name, [lease for lease in leases if lease in held])

    @rule(pick=picks, which=picks, ttl=ttls, outcome=st.one_of(st.none(), outcome_specs))
    def late(self, pick: int, which: int, ttl: float, outcome: OutcomeSpec | None) -> None:
        """A stale worker renews (no outcome) or finalizes a lease it finished or lost."""
        worker = self._chosen(self.old, pick)
        if worker is None:
            return
        lease = self._pick(self.old[WORKERS[worker]], which)
        if outcome is None:
            self._renew(worker, [lease], ttl)
        else:
            self._finalize(worker, [lease], [outcome])

    @rule(worker=worker_indexes)
    def stall(self, worker: int) -> None:
        """A worker stops calling (crash, partition, long pause) or, if it had, comes back and
        goes on with the leases it believes it still holds."""
        name = WORKERS[worker]
        if name in self.crashed:
            self.crashed.discard(name)
        else:
            self.crashed.add(name)

    @rule(limit=limits, instance=worker_indexes)
    def reap(self, limit: int, instance: int) -> None:
        """A reaper on some node takes back expired leases."""
        self._run(Reap(limit), instance)

    @rule(seconds=advances, worker=worker_indexes, ttl=ttls)
    def reclaim(self, seconds: float, worker: int, ttl: float) -> None:
        """Time passes, a reaper takes back what expired and a worker claims at once."""
        self.clock.advance(seconds)
        self._run(Reap(100), worker)
        name = WORKERS[worker]
        if name not in self.crashed:
            self.held[name].extend(self._run(Claim(QUEUES[0], name, 2, ttl), worker))

    @rule(pick=picks, unknown=st.booleans())
    def cancel(self, pick: int, unknown: bool) -> None:
        """An operator cancels a job (or one that does not exist)."""
        if unknown or not self.job_ids:
            job_id = max(self.job_ids, default=0) + 1000
        else:
            job_id = self._pick(self.job_ids, pick)
        self._run(CancelJob(job_id))

    @rule(
        action=st.sampled_from(["retry", "discard", "cancel"]),
        which=st.lists(picks, min_size=1, max_size=3),
        limit=st.integers(min_value=1, max_value=3),
    )
    def operate(self, action: str, which: list[int], limit: int) -> None:
        """An operator retries, discards or cancels some jobs by id, at most ``limit``."""
        if not self.job_ids:
            return
        ids = tuple(sorted({self._pick(self.job_ids, pick) for pick in which}))
        self._run(Operate(action, ids, limit))

    @rule(queue=st.sampled_from(QUEUES), paused=st.sampled_from([False, False, False, True]))
    def pause(self, queue: str, paused: bool) -> None:
        """An operator pauses or resumes a queue."""
        self._run(Pause(queue, paused))

    @rule(seconds=advances)
    def advance(self, seconds: float) -> None:
        """Time moves on by an arbitrary amount."""
        self.clock.advance(seconds)

    # --- leadership and cursors ---------------------------------------------------------

    @rule(
        name=st.sampled_from(LEADER_NAMES),
        holder=worker_indexes,
        ttl=st.one_of(st.none(), ttls),
    )
    def leader(self, name: str, holder: int, ttl: float | None) -> None:
        """A node takes or renews a leader lease, or (no TTL) gives it up."""
        if ttl is None:
            self._run(ReleaseLeader(name, HOLDERS[holder]), holder)
        else:
            self._run(AcquireLeader(name, HOLDERS[holder], ttl), holder)

    @rule(name=st.sampled_from(CURSOR_NAMES), fresh=st.booleans(), new=cursor_values)
    def advance_cursor(self, name: str, fresh: bool, new: float) -> None:
        """A cron leader moves a cursor on from the value it read (or from an outdated one)."""
        if fresh or name not in self.cursor_seen:
            self.cursor_seen[name] = self._run(GetCursor(name))
        self._run(AdvanceCursor(name, self.cursor_seen[name], new))

    # --- races --------------------------------------------------------------------------

    @rule(actions=st.lists(race_actions, min_size=2, max_size=3), order=picks)
    def race(self, actions: list[tuple[Any, ...]], order: int) -> None:
        """Several calls at one instant, each on its own transport instance (node)."""
        ops: list[tuple[Op, Callable[[Any], None]]] = []
        renewing: set[tuple[int, int]] = set()
        for action in actions:
            built = self._build(action)
            if built is None:
                continue
            if isinstance(built[0], Renew):
                # Two renewals of one lease at one instant (which no heartbeat sends: it renews
                # in turn) leave whichever TTL committed last; both orders are right, and the
                # ledger cannot know which the store took.
                (request,) = built[0].requests
                pair = (request.job_id, request.token)
                if pair in renewing:
                    continue
                renewing.add(pair)
            ops.append(built)
        if ops:
            self._race(ops, order)

    def _race(self, ops: list[tuple[Op, Callable[[Any], None]]], order: int) -> None:
        """Run the calls at once, one per transport instance; check them; hand each answer on.

        ``order`` picks the order the calls start in (on SQL backends, the order they run in
        one after another: see :meth:`Harness.gather`).
        """
        orders = list(itertools.permutations(range(len(ops))))
        ops = [ops[i] for i in orders[order % len(orders)]]
        transports = [self._transport(i) for i in range(len(ops))]
        results = self.harness.gather(
            [lambda op=op, t=t: op.run(t) for (op, _), t in zip(ops, transports, strict=True)]
        )
        done = [(op, result) for (op, _), result in zip(ops, results, strict=True)]
        self.harness.log(f"race: {done!r}")
        self._settle(done)
        for (_, after), result in zip(ops, results, strict=True):
            after(result)

    def _build(self, action: tuple[Any, ...]) -> tuple[Op, Callable[[Any], None]] | None:
        """The op for a race action and what to do with its answer; None when it cannot run."""
        kind = action[0]
        if kind == "claim":
            _, worker, queue, limit, ttl = action
            name = WORKERS[worker]
            if name in self.crashed:
                return None
            return Claim(queue, name, limit, ttl), self.held[name].extend
        if kind in ("renew", "finalize"):
            _, worker, pick, extra = action
            name = WORKERS[worker]
            if name in self.crashed or not self.held[name]:
                return None
            lease = self._pick(self.held[name], pick)
            if kind == "renew":
                op: Op = Renew((RenewRequest(job_id=lease.job_id, token=lease.token),), extra)

                def renewed(result: Any, name: str = name, lease: Lease = lease) -> None:
                    if result[0] is RenewResult.LOST:
                        self._forget(name, [lease])

                return op, renewed
            request = FinalizeRequest(
                job_id=lease.job_id, token=lease.token, outcome=extra.outcome(self.now)
            )
            return Finalize((request,)), lambda _r, name=name, lease=lease: self._forget(
                name, [lease]
            )
        if kind == "reap":
            return Reap(action[1]), lambda _r: None
        if kind == "cancel":
            if not self.job_ids:
                return None
            return CancelJob(self._pick(self.job_ids, action[1])), lambda _r: None
        if kind == "acquire":
            _, name, holder, ttl = action
            return AcquireLeader(name, holder, ttl), lambda _r: None
        if kind == "cursor":
            _, name, fresh, new = action
            # Racers that read the same value: exactly one may move the cursor on.
            expected = self.model.cursors.get(name) if fresh else self.cursor_seen.get(name)
            return AdvanceCursor(name, expected, new), lambda _r: None
        specs: list[EnqueueSpec] = action[1]
        op = Enqueue(tuple(spec.request(self.now) for spec in specs))
        return op, lambda results: self.job_ids.extend(
            r.job_id for r in results if not r.deduplicated
        )

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def table_holds(self) -> None:
        """The job table, as the transport shows it, keeps every invariant and equals the model."""
        transport = self._transport(0)

        async def read() -> tuple[list[Job], Any]:
            return await transport.list_jobs(limit=10_000), await transport.counts()

        jobs, counts = self.harness.call(read)
        with self.harness.recording():
            self.ledger.check_table(jobs, counts, self.now)
            self.model.check_table(jobs, self.now)
        self.table = jobs

    def teardown(self) -> None:
        # The harness keeps the loop and SQL transports for the next example.
        pass


class FlowMachine(LeaseMachine):
    """The lease machine plus concurrency keys and their limits, set and changed at any step.

    Every rule of :class:`LeaseMachine` runs as well, so limits meet claims, races, expiries,
    reaps and crashes; the ledger holds each key within its limit (``KEY_LIMIT_HELD``) and
    the model demands exactly the jobs a limited claim must start, so none waits while its
    key has room. A subclass, so that the lease machine's own search (and its shrinking test)
    stays as it was.
    """

    @initialize(
        first=st.sampled_from([0, 1, 1, 1, 2]),
        second=st.sampled_from([1, 1, 2]),
        specs=st.lists(keyed_enqueue_specs, min_size=2, max_size=8),
    )
    def limited_backlog(self, first: int, second: int, specs: list[EnqueueSpec]) -> None:
        """Start with both keys limited (one by concurrency, one by rate) and a backlog of
        their jobs, so claims meet limits."""
        self._run(SetLimit(CONCURRENCY_KEYS[0], first))
        # The second key starts with a rate only, so its jobs finish (and free nothing) while
        # its window fills and slides.
        self._run(SetLimit(CONCURRENCY_KEYS[1], None, second, RATE_WINDOWS[1]))
        # Initializers run in any order, and invariants not between them: read the table on
        # both sides, so each backlog's dedupe is checked against the jobs before it.
        self.table_holds()
        self.enqueue(specs, 0)
        self.table_holds()

    @rule(specs=keyed_enqueue_batches, instance=worker_indexes)
    def enqueue_keyed(self, specs: list[EnqueueSpec], instance: int) -> None:
        """Enqueue a batch of jobs with concurrency keys."""
        self.enqueue(specs, instance)

    @rule(key=st.sampled_from(CONCURRENCY_KEYS), concurrency=key_limits)
    def set_limit(self, key: str, concurrency: int | None) -> None:
        """An operator sets, changes or removes a concurrency key's limit (its rate kept)."""
        rate, per = self.model.rates.get(key, (None, None))
        self._run(SetLimit(key, concurrency, rate, per))

    @rule(index=st.integers(min_value=0, max_value=len(CONCURRENCY_KEYS) - 1), rate=key_rates)
    def set_rate(self, index: int, rate: int | None) -> None:
        """An operator sets, changes or removes a key's rate (its concurrency limit kept).
        Each key keeps one window, so the log the store keeps is the one the ledger counts
        (a window grown later counts only the starts its log still holds)."""
        key = CONCURRENCY_KEYS[index]
        per = None if rate is None else RATE_WINDOWS[index]
        self._run(SetLimit(key, self.model.limits.get(key), rate, per))

    @rule(seconds=st.sampled_from([1.0, 2.0, 2.5, 4.0]), worker=worker_indexes, ttl=ttls)
    def work_within_a_window(self, seconds: float, worker: int, ttl: float) -> None:
        """A little time passes (less than a rate window), a worker completes what it holds
        and claims again: starts spread over a window and across its edges."""
        self.clock.advance(seconds)
        name = WORKERS[worker]
        held = self.held[name]
        if held:
            self._finalize(worker, list(held), [OutcomeSpec("complete", 0.0, None)] * len(held))
            self._forget(name, list(held))
        if name not in self.crashed:
            held.extend(self._run(Claim(QUEUES[0], name, 2, ttl), worker))

    @rule(pick=picks, which=picks, outcome=cool_outcome_specs)
    def cool_down(self, pick: int, which: int, outcome: OutcomeSpec) -> None:
        """A worker's remote said "retry after": its job snoozes and its key cools down."""
        worker = self._chosen(self.held, pick)
        if worker is None:
            return
        name = WORKERS[worker]
        held = self.held[name]
        lease = held[which % len(held)]
        self._finalize(worker, [lease], [outcome])
        self._forget(name, [lease])

    @rule(queue=st.sampled_from(QUEUES), cap=st.sampled_from([None, 1, 2, 3]))
    def cap_queue(self, queue: str, cap: int | None) -> None:
        """An operator caps (or uncaps) a queue's live leases cluster-wide."""
        self._run(CapQueue(queue, queue in self.model.paused, cap))
