"""``make mutation``: a mutation score for the lease core and the runtime, with its survivors.

mutmut changes the code one small edit at a time (a comparison flipped, a constant nudged, a
call dropped) and runs the tests that reach the changed function; a mutant the tests do not
notice *survives*. Each group below mutates a few modules and runs only the tests written for
them, so the whole run fits in well under an hour on two cores. Every group runs in a copy of
the tree under ``.mutation/<group>`` (kept afterwards: ``cd .mutation/<group> && mutmut
browse`` to read the survivors), never in the working tree.

The report prints, per group and per family of code (claim, renew, finalize, reap, dedupe,
leader, cron, then "other"), the mutants killed (tests failed or timed out) over the
non-equivalent ones that ran: each group lists the survivors that change nothing a user
could observe, each with its reason, and the report names any listed one that no longer
survives. Then every other survivor with its diff.

Usage: ``python -m property_tests.mutation [GROUP ...] [--children N] [--survivors|--report-only]``
(``--survivors`` runs the last survivors again against new tests, while the sources are unchanged).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"


@dataclass(frozen=True)
class Group:
    """Modules mutated together, and the tests that judge them."""

    name: str
    sources: tuple[str, ...]
    tests: tuple[str, ...]
    # Extra pytest arguments for every run of this group (a backend filter, say).
    args: tuple[str, ...] = ()
    # Families by where a mutant lives, checked before its function's name: (regex searched
    # in the mutant's name, family). ``Reaper.tick`` is reap code, not cron code.
    families: tuple[tuple[str, str], ...] = ()
    # Survivors that change nothing a user could observe: mutant -> why, the mutant named
    # ``name@fingerprint`` (see :func:`fingerprint`; a bare name is matched by name alone).
    # They leave the score's denominator. mutmut numbers a function's mutants afresh when its
    # code or coverage changes: a listed mutant whose diff now has another fingerprint is
    # looked for among its function's survivors by its fingerprint and reported as renumbered;
    # one that is killed or gone is reported as stale.
    equivalent: Mapping[str, str] = field(default_factory=dict)
    # Globs of the mutants to run (empty: all): a slow group may run its aim families only;
    # the rest are reported as not checked.
    only: tuple[str, ...] = ()
    # Seconds any one test may take under a mutant (None: the project's own timeout). A
    # mutant that hangs a test (a supervisor restarting a crashing actor at once, so virtual
    # time never moves) then fails that test, instead of running to mutmut's timeout.
    test_timeout: float | None = None


def _equivalents(prefix: str, reasons: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """``{reason: [mutant, ...]}`` (names after ``prefix``) as ``{mutant: reason}``."""
    return {prefix + mutant: why for why, mutants in reasons.items() for mutant in mutants}


def fingerprint(diff: str) -> str:
    """A short hash of the lines a mutant's diff removes and adds (whitespace aside): the
    same edit keeps it when mutmut renumbers the mutant or other lines of its function change."""
    changed = [
        line[0] + " ".join(line[1:].split())
        for line in diff.splitlines()
        if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    ]
    return hashlib.sha256("\n".join(changed).encode()).hexdigest()[:8]


def split_listed(listed: str) -> tuple[str, str | None]:
    """A listed equivalent's mutant name and fingerprint (None when it has none)."""
    name, _, print_ = listed.partition("@")
    return name, print_ or None


_UNREAD = "a counter nothing reads (no statistics, metric, page or log shows it)"
_FALSY = "strict=None is falsy like strict=False: the same bound"
_LEADING_NONE = "None is falsy like False, and `leading` is only ever tested for truth"
_LEADING_AFTER_STOP = "on_stop runs once, last: nothing reads `leading` after it"
_FLOAT = "croniter's default return type is already float"
_SEQ_UP = "a seq only marks older heap entries stale: a step of 2 does that as well as 1"
_ORDERED_SET = "a dict used as an ordered set: its values are never read"
_STRICT = "the texts are built from the requests: the lengths always match"
_FLAG_NONE = "None is falsy like False, and the flag is only ever tested for truth"
_ZIP_FALSE = "strict=None is falsy like strict=False, zip's default"
_ZIP_PAIRS = (
    "built pair by pair (a result per request, a holder and TTL per lease, a token per job "
    "id): the lengths always match"
)
_TYPE_IGNORED = "traceback ignores the type argument when the value is given (Python >= 3.10)"

#: A store's helpers, by what they serve: the claim's heaps and flow control, a run's end.
_STORE_FAMILIES = (
    (
        r"ǁ_(push_scheduled|make_available|promote|wait_until|eligible|key_full|fair_order"
        r"|held|free|live|live_in|started|log_start|capped)__",
        "claim",
    ),
    (r"ǁ_(end_lease|finish|end|cool)__", "finalize"),
)

#: A SQL store's methods of the aim families (its other methods take a SQL group past an hour).
_LEASE_CORE = (
    *(
        f"*ǁ{method}__mutmut_*"
        for method in (
            "claim",
            "_claim_fair",
            "renew",
            "finalize",
            "reap",
            "enqueue_many",
            "_enqueue_in_transaction",
            "acquire_leader",
            "release_leader",
            "get_cursor",
            "advance_cursor",
        )
    ),
    "*x__finalize_row__mutmut_*",
)

GROUPS = (
    Group(
        "memory",
        ("transports/_memory.py",),
        ("tests/transports/test_memory.py",),
        # The store's code is the same under either loop: the conformance suite on asyncio.
        args=("-k", "not trio"),
        families=_STORE_FAMILIES,
        equivalent=_equivalents(
            "transports._memory.xǁMemoryTransportǁ",
            {
                _SEQ_UP: [
                    "renew__mutmut_29@98ff0367",
                    "_make_available__mutmut_7@98ff0367",
                    "_push_scheduled__mutmut_7@98ff0367",
                    "claim__mutmut_136@98ff0367",
                    "enqueue_many__mutmut_147@98ff0367",
                    "_end__mutmut_7@98ff0367",
                ],
                "a new row's seq is 0, so `= 1` is `+= 1`": ["enqueue_many__mutmut_145@53c43536"],
                "a new pending row has no heap entry, and every later seq is above -1": [
                    "enqueue_many__mutmut_146@562dec9d",
                ],
                "every way back to scheduled first adds 2 (a promotion or retry_jobs, then a "
                "claim), or re-pushes the same run_at (a reopened child): no stale entry is "
                "matched wrongly": ["_push_scheduled__mutmut_6@562dec9d"],
                _ORDERED_SET: [
                    "_end__mutmut_15@c75f37d0",
                    "claim__mutmut_116@4ca2e908",
                    "enqueue_many__mutmut_103@330b1fe5",
                ],
                "tokens only have to be new: nothing orders them": [
                    "claim__mutmut_131@9902280a",
                    "claim__mutmut_132@8294fad7",
                ],
                "the rotation only compares ticks: a step of 2 keeps their order": [
                    "claim__mutmut_166@ceed561f",
                ],
                "ids only have to grow": ["enqueue_many__mutmut_100@d0338fda"],
                "enqueue of a partitioned job made the queue's partition map already": [
                    "claim__mutmut_39@1c22151c",
                    "claim__mutmut_41@2a3a1218",
                ],
                "an unlimited key is never full: the keyed path takes it like the plain one": [
                    "claim__mutmut_78@9931eea5",
                ],
                "a count kept above 0 only sends claims down the fair path, which over the "
                "unpartitioned jobs alone claims in the same order": [
                    "enqueue_many__mutmut_122@d698d269",
                    "enqueue_many__mutmut_127@f1997cc1",
                    "enqueue_many__mutmut_128@ae84a64b",
                ],
                "'' is neither PENDING nor CANCELLED, like None": [
                    "enqueue_many__mutmut_129@cc294c0e"
                ],
                _STRICT: [
                    "enqueue_many__mutmut_33@ae152c1a",
                    "enqueue_many__mutmut_36@77f35e85",
                    "enqueue_many__mutmut_37@d0908815",
                    "finalize__mutmut_22@8a08654a",
                    "finalize__mutmut_25@334c0173",
                    "finalize__mutmut_26@2f3960aa",
                ],
                "a new record has no holder: it is taken at once and its first expiry never read": [
                    "acquire_leader__mutmut_13@548d17ef"
                ],
                "_live skips rows whose lease ended (no expiry): a stale entry in the key's "
                "map of running jobs is never counted": [
                    "_end_lease__mutmut_1@cb8723fb",
                    "_end_lease__mutmut_2@61f93d85",
                    "_end_lease__mutmut_3@a34ccad9",
                    "_end_lease__mutmut_4@8bdc0354",
                    "_end_lease__mutmut_5@f4a5d22b",
                    "_end_lease__mutmut_7@470f0e4f",
                ],
                "a token is compared only with int tokens, which match neither '' nor None": [
                    "_end_lease__mutmut_9@c498c904",
                ],
                "a heap of None is not usable either: no turn, as without the entry": [
                    "_fair_order__mutmut_35@0f75199d",
                ],
                "the hook's queue argument is read only by the simulator's override": [
                    "_fair_order__mutmut_41@bdaf3fbe",
                ],
                "never-served partitions still sort before every served one (ticks start at 1)": [
                    "_fair_order__mutmut_53@179501f2",
                    "_fair_order__mutmut_54@07ab9bb0",
                    "_fair_order__mutmut_55@0cb39a09",
                ],
                "popping more per round only pushes more back: the first `limit` by (rank, "
                "index) are the same": [
                    "_fair_order__mutmut_60@80b8be92",
                    "_fair_order__mutmut_61@3477d294",
                ],
                "(rank, index) pairs are unique, so the whole tuples sort the same": [
                    "_fair_order__mutmut_70@f2f6046a",
                ],
                "the default only sizes one call; the Reaper passes its batch": [
                    "reap__mutmut_1@85571b57",
                ],
                "a running row always has an owner": ["reap__mutmut_24@9f6d8ad6"],
                "lost_at is read only by a claim, and a final row is claimed only after "
                "retry_jobs clears it": ["reap__mutmut_75@10bec1da"],
                "the compaction threshold: the index is rebuilt a little sooner or later, "
                "never lets stale entries grow without bound": [
                    "renew__mutmut_37@597c28c5",
                    "renew__mutmut_40@ff00bd7e",
                    "renew__mutmut_41@91983497",
                ],
            },
        ),
    ),
    Group(
        "sqlite",
        ("transports/_sqlite.py",),
        ("tests/transports/test_sqlite.py",),
        # The conformance suite once, on a file on asyncio: trio only bridges to the same
        # code, and ``:memory:`` runs the same statements (a run of all four takes hours),
        # but for the wake-ups: a file's watcher wakes every waiter on any commit, which
        # hides a lost wake-up, so those tests run on ``:memory:`` too.
        args=("-k", "not trio and (not TestSQLiteMemoryConformance or wait_for)"),
        only=_LEASE_CORE,
        equivalent=_equivalents(
            "transports._sqlite.xǁSQLiteTransportǁ",
            {
                "one of the claim's two statements always assigns the rows": [
                    "claim__mutmut_23",
                ],
                "the one-row statement and the batched one give the same answers": [
                    "renew__mutmut_26",
                    "renew__mutmut_27",
                    "finalize__mutmut_49",
                    "finalize__mutmut_50",
                    "enqueue_many__mutmut_73",
                ],
                "a batch of successes stored by the general statement is stored the same "
                "(a conformance test compares the two), and the statement of successes takes "
                "a batch of several chunks whole (up to 10,921 of SQLite's 32,766 variables)": [
                    "finalize__mutmut_25",
                    "finalize__mutmut_26",
                    "finalize__mutmut_28",
                    "finalize__mutmut_30",
                    "finalize__mutmut_31",
                ],
                "row[21] is the lease token, set on every claimed row: every claimed queue "
                "counts as one with limits, which only adds spurious wake-ups": [
                    "claim__mutmut_52",
                ],
                "the default only sizes one call; the Reaper passes its batch": [
                    "reap__mutmut_1",
                ],
                "only spurious wake-ups, which the contract allows (or None, falsy like False)": [
                    "reap__mutmut_4",
                    "reap__mutmut_5",
                    "reap__mutmut_43",
                    "finalize__mutmut_108",
                ],
                "the states are read only for expired rows, which set them": [
                    "reap__mutmut_18",
                ],
                "JSON reads \\u escapes back as the same text": [
                    "enqueue_many__mutmut_31",
                    "enqueue_many__mutmut_33",
                    "enqueue_many__mutmut_34",
                ],
                "with no `after`, the general path writes what the plain one does": [
                    "enqueue_many__mutmut_38",
                ],
                "a running row always has an owner": ["reap__mutmut_63"],
            },
        ),
    ),
    Group(
        "postgres",
        ("transports/_postgres.py",),
        (
            "tests/transports/test_postgres.py",
            # The wake-ups a process gives itself (NOTIFY hides a missing one), the calls made
            # again on a closed connection, and the event lock of a suspend.
            "tests/transports/test_postgres_local_wakes.py",
            "tests/transports/test_postgres_retry.py",
        ),
        args=("-k", "not trio"),
        only=_LEASE_CORE,
        equivalent=_equivalents(
            "transports._postgres.xǁPostgresTransportǁ",
            {
                "while a key cools down the one-statement claim claims nothing, and the claim "
                "then finds the cool-down itself (any_limits) and takes the limited path, which "
                "gives the same answers: the flag only saves that look (and adds wake-ups)": [
                    "finalize__mutmut_27@7f892f2e",
                    "finalize__mutmut_28@0ca5a432",
                    "finalize__mutmut_29@fdfc0208",
                ],
                "None is falsy like False: `settled or ...` gives the same": [
                    "finalize__mutmut_62@e4cb74ea",
                ],
                "only spurious wake-ups (every waiter of this process), which the contract "
                "allows": ["finalize__mutmut_63@a802537c", "finalize__mutmut_66@c91f943f"],
                "the default only sizes one call; the Reaper passes its batch": [
                    "reap__mutmut_1@85571b57",
                ],
                "a running row always has an owner": ["reap__mutmut_36@eb9a3284"],
                "one of the claim's two statements always assigns the rows": [
                    "claim__mutmut_11@aa791700",
                ],
                "a full claim of one job passes one more wake-up on: one spurious look at "
                "most (an empty claim passes none), which the contract allows": [
                    "claim__mutmut_91@29afed93",
                ],
                "JSON reads \\u escapes back as the same text, and empty headers stored as {} "
                "read back as no headers, as NULL does": [
                    "enqueue_many__mutmut_27@d0755610",
                    "enqueue_many__mutmut_29@0ba6abe8",
                    "enqueue_many__mutmut_31@1d55f427",
                    "enqueue_many__mutmut_32@6e56f47f",
                ],
            },
        ),
    ),
    Group(
        "runtime",
        (
            "actors/jobs/_claimer.py",
            "actors/jobs/_leases.py",
            "actors/jobs/_decide.py",
            "actors/jobs/_execute.py",
            "actors/jobs/_worker.py",
        ),
        (
            "tests/jobs/test_decide.py",
            "tests/jobs/test_leases.py",
            "tests/jobs/test_handoff.py",
            "tests/jobs/test_execute.py",
            "tests/jobs/test_outcomes.py",
            "tests/jobs/test_shutdown.py",
            "tests/jobs/test_supervisor.py",
            "tests/jobs/test_outage.py",
            "tests/jobs/test_events.py",
            "tests/jobs/test_logging.py",
            # Whole nodes running jobs: results, steps, flows, workflows, a mixed workload.
            "tests/jobs/test_app.py",
            "tests/jobs/test_results.py",
            "tests/jobs/test_steps.py",
            "tests/jobs/test_flow.py",
            "tests/jobs/test_workflows.py",
            "tests/jobs/test_backends.py",
            "tests/jobs/test_config.py",
        ),
        # The runtime's logic does not depend on the backend: judge it on memory alone.
        args=("-k", "not sqlite and not postgres"),
        equivalent=_equivalents(
            "actors.jobs.",
            {
                _FLAG_NONE: [
                    "_claimer.xǁHandoffǁ__init____mutmut_5@12d84e57",
                    "_leases.xǁLeaseKeeperǁ_tick__mutmut_8@667df458",
                    "_worker.xǁWorkerǁ__init____mutmut_14@c2d8d8b3",
                    "_worker.xǁWorkerǁ__init____mutmut_16@947b78f7",
                    "_worker.xǁWorkerǁ__init____mutmut_19@15993c27",
                    "_worker.xǁWorkerǁ_serve__mutmut_9@c2d8d8b3",
                    "_worker.xǁWorkerǁ_serve__mutmut_15@947b78f7",
                    "_leases.xǁLeaseKeeperǁ__init____mutmut_8@667df458",
                    "_leases.xǁLeaseKeeperǁ__init____mutmut_10@b9696179",
                    "_leases.xǁLeaseKeeperǁ__init____mutmut_12@f255cb9b",
                    "_claimer.xǁClaimerǁ_claim_forever__mutmut_3@db8996c5",
                    "_claimer.xǁClaimerǁ_claim_forever__mutmut_8@9d50b56b",
                    "_claimer.xǁClaimerǁ__init____mutmut_15@8e1b7d6c",
                    "_claimer.xǁClaimerǁ__init____mutmut_20@a2effc31",
                    "_claimer.xǁClaimerǁ__init____mutmut_22@6b08b223",
                    "_claimer.xǁClaimerǁ__init____mutmut_27@52d4cd18",
                    "_claimer.xǁClaimerǁ_flush_at__mutmut_2@52d4cd18",
                    "_leases.xǁLeaseKeeperǁ_renew_due__mutmut_1@f255cb9b",
                    "_leases.xǁLeaseKeeperǁreceive__mutmut_50@b9696179",
                    "_execute.xǁExecutionǁ__init____mutmut_3@24e52f67",
                    "_execute.xǁExecutionǁ__init____mutmut_5@568e6976",
                ],
                _ZIP_FALSE: [
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_6@191f39b3",
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_9@c1721449",
                ],
                _ZIP_PAIRS: [
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_45@b0890158",
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_48@f8000854",
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_49@8644e244",
                    "_claimer.xǁClaimerǁ_flush__mutmut_16@842b999c",
                    "_claimer.xǁClaimerǁ_flush__mutmut_19@9714bbbf",
                    "_claimer.xǁClaimerǁ_flush__mutmut_20@e405b921",
                    "_claimer.xǁClaimerǁ_flush__mutmut_37@112a4764",
                    "_claimer.xǁClaimerǁ_flush__mutmut_40@b86d6113",
                    "_claimer.xǁClaimerǁ_flush__mutmut_41@915621b7",
                    "_leases.xǁLeaseKeeperǁ_renew__mutmut_41@7b14d42f",
                    "_leases.xǁLeaseKeeperǁ_renew__mutmut_44@71c777be",
                    "_leases.xǁLeaseKeeperǁ_renew__mutmut_45@f933918d",
                    "_leases.xǁLeaseKeeperǁreceive__mutmut_11@e7a7abd7",
                    "_leases.xǁLeaseKeeperǁreceive__mutmut_15@1ce9f7a0",
                    "_leases.xǁLeaseKeeperǁreceive__mutmut_16@3f3e67b8",
                    "_leases.xǁLeaseKeeperǁreceive__mutmut_35@31ec4501",
                    "_leases.xǁLeaseKeeperǁreceive__mutmut_38@a06c7ac8",
                    "_leases.xǁLeaseKeeperǁreceive__mutmut_39@5c4b8e25",
                ],
                _TYPE_IGNORED: [
                    "_execute.x__describe__mutmut_2@b814fe62",
                    "_execute.x__describe__mutmut_4@be56e8c8",
                    "_execute.x__describe__mutmut_6@a0d98274",
                    "_execute.x__traceback_tail__mutmut_4@fcf36b56",
                    "_execute.x__traceback_tail__mutmut_10@f674f550",
                ],
                _ORDERED_SET: [
                    "_claimer.xǁClaimerǁ_free__mutmut_1@c1d571fe",
                    "_claimer.xǁClaimerǁ_claim_for__mutmut_38@dbf00610",
                ],
                "a full batch's claim waits a few more turns of the event loop (no time "
                "passes), and gathers no more slots than a batch": [
                    "_claimer.xǁClaimerǁ_claim_forever__mutmut_18@501d694f",
                ],
                "_free_workers drops a stopped Worker from the idle set before every claim": [
                    "_claimer.xǁClaimerǁ_claim_for__mutmut_36@1cc3f481",
                ],
                "a stopped Worker's inbox is never looked up again (it left _handed and the idle "
                "set), and every Worker in _handed has one (its Ready gave it)": [
                    "_claimer.xǁClaimerǁ_free_workers__mutmut_5@96894b66",
                    "_claimer.xǁClaimerǁ_free_workers__mutmut_7@486fba97",
                ],
                "the first outcome kept sets it before it is read": [
                    "_claimer.xǁClaimerǁ__init____mutmut_25@db0da76b",
                    "_claimer.xǁClaimerǁ__init____mutmut_26@6a70d93f",
                ],
                "a timer started while one is pending has the same deadline or a later one: the first flushes the batch in time, an extra one only sooner (one finalize call more)": [
                    "_claimer.xǁClaimerǁ_add__mutmut_9@3e093e37",
                    "_claimer.xǁClaimerǁ_add__mutmut_10@bfb6528c",
                ],
                "a live Worker handed a job always has an inbox (its Ready gave it), and a stopped one's is closed (put refuses) or gone: given back either way": [
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_62@32087be9",
                ],
                "every Worker handed a job is in _handed already (its Ready put it there)": [
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_70@88b3aaa2",
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_72@4203f851",
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_73@125f3491",
                ],
                "an empty Forget removes nothing, and the keeper's ref is set before any claim": [
                    "_claimer.xǁClaimerǁ_forget__mutmut_2@163feeaf",
                ],
                "receive takes every message but Hold, Forget and RenewNow for a beat, and a Beat "
                "carries nothing": ["_leases.xǁLeaseKeeperǁ_tick__mutmut_13@81d195f8"],
                "set back to a scope before any other task runs (nothing awaits in between)": [
                    "_leases.xǁLeaseKeeperǁ_tick__mutmut_7@df5824cc",
                ],
                "a lease due exactly at the next beat is renewed then, on time, instead of now": [
                    "_leases.xǁLeaseKeeperǁ_renew__mutmut_7@fcfa264c",
                ],
                "the general path builds the same JobSucceeded as the fast one": [
                    "_claimer.xǁClaimerǁ_flush__mutmut_44@c54b71ee",
                    "_decide.x_event_of__mutmut_3@c54b71ee",
                ],
                "a finalize is APPLIED or STALE: an applied Complete took the fast path, a stale one returned FinalizeRefused, so no Complete reaches this line": [
                    "_decide.x_event_of__mutmut_35@62078de9",
                ],
                "set only together with error, which the outcome is decided by first": [
                    "_execute.x__execute__mutmut_63@bfd64aac",
                ],
                "the result is read only when the handler returned one (every other way out sets error, ended or a lost, cancelled or released outcome first)": [
                    "_execute.x__execute__mutmut_65@25be0966",
                ],
                "nothing awaits between the handler's end and the Worker dropping the run: no notice reads its scope or context again": [
                    "_execute.x__execute__mutmut_106@f406269b",
                    "_execute.x_execute__mutmut_50@b850c7e4",
                ],
                "the notice is about the run's own claim: its token or any claim name the same run": [
                    "_worker.xǁWorkerǁ_serve__mutmut_12@4ea7c6cc",
                    "_worker.xǁWorkerǁ_serve__mutmut_14@58abdea1",
                    "_worker.xǁWorkerǁ_renew_now__mutmut_21@746cfaf9",
                    "_worker.xǁWorkerǁ_renew_now__mutmut_23@bd8d83e8",
                ],
                "the Worker clears its current run and sets done in one step: done is set exactly when no run is left": [
                    "_worker.xǁWorkerǁ_stop_current__mutmut_8@b8ca6c89",
                ],
                "extend_lease comes from a running handler, whose task is registered (an unknown kind never runs)": [
                    "_worker.xǁWorkerǁ_ttl_of__mutmut_4@a7cbfe62",
                ],
                "a Release publishes no event and logs nothing: the worker and duration it is "
                "kept with are never read": [
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_13@62996f73",
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_16@54fda73b",
                    "_claimer.xǁClaimerǁ_hand_out__mutmut_21@352e7f30",
                    "_worker.xǁWorkerǁon_stop__mutmut_10@ea5e776e",
                    "_worker.xǁWorkerǁon_stop__mutmut_17@ed6d8fd1",
                ],
                "a cache of each kind's TTL: missing it, a lease looks its task up again and "
                "gets the same TTL": [
                    "_claimer.xǁClaimerǁ_ttl_of__mutmut_2@9728ebf8",
                    "_claimer.xǁClaimerǁ_ttl_of__mutmut_3@3d629358",
                    "_claimer.xǁClaimerǁ_ttl_of__mutmut_16@4f928026",
                ],
                "a job that was not run ends Release, whose finalize publishes no event: its duration is never read": [
                    "_worker.xǁWorkerǁ_run__mutmut_3@37c3ed4a",
                    "_worker.xǁWorkerǁ_run__mutmut_4@74338cf3",
                ],
            },
        ),
        # Its slowest test takes about a second; a hung one cost each mutant 5 s or more.
        test_timeout=3.0,
        families=(
            # Log records, shutdown-phase events and slot statistics: no lease logic.
            (r"\._claimer\.xǁClaimerǁstatistics__", "other"),
            (r"\._execute\.x_(log_\w+|_describe|_traceback_tail)__", "other"),
            (r"\._worker\.xǁWorkerǁ_publish_phase__", "other"),
            # Claiming for the free Workers, handing each lease over, the start guard.
            (r"\._claimer\.xǁHandoffǁ", "claim"),
            (
                r"\._claimer\.xǁClaimerǁ(__init__|on_start|receive|_free|_free_workers"
                r"|_claim_\w+|_wait_changed|_hand_out|_wait_for_work|_ttl_of|_answer_stopped)__",
                "claim",
            ),
            (r"\._decide\.x_may_start__", "claim"),
            (r"\._worker\.xǁWorkerǁ(__init__|on_start|_serve)__", "claim"),
            # Keeping leases: the LeaseKeeper, extend_lease, lost-lease and cancel notices.
            (r"\._leases\.", "renew"),
            (r"\._worker\.(xǁWorkerǁ(receive|_on_lost|_renew_now|_ttl_of)|x__names)__", "renew"),
            (r"\._execute\.x_(lose|request_cancel)__", "renew"),
            # What becomes of a job: its outcome decided, reported, stored (and its event),
            # or given back on a drain or stop.
            (r"\._claimer\.", "finalize"),
            (r"\._(decide|execute|worker)\.", "finalize"),
        ),
    ),
    Group(
        "schedule",
        (
            "actors/jobs/_reaper.py",
            "actors/jobs/_cron.py",
            "actors/jobs/_schedule.py",
            "actors/jobs/_periodic.py",
            "actors/jobs/_cleanup.py",
        ),
        (
            "tests/jobs/test_reaper.py",
            "tests/jobs/test_cron.py",
            "tests/jobs/test_cleanup.py",
            "tests/jobs/test_config.py",
            "tests/jobs/test_logging.py",
            "tests/jobs/test_nodes_history.py",
        ),
        args=("-k", "not sqlite and not postgres"),
        equivalent=_equivalents(
            "actors.jobs.",
            {
                _UNREAD: [
                    "_cron.xǁCronǁ__init____mutmut_54",
                    "_cron.xǁCronǁ_fire_due__mutmut_93",
                    "_cron.xǁCronǁ_fire_due__mutmut_94",
                    "_cron.xǁCronǁ_fire_due__mutmut_95",
                    "_reaper.xǁReaperǁ__init____mutmut_27",
                    "_reaper.xǁReaperǁtick__mutmut_22",
                    "_reaper.xǁReaperǁtick__mutmut_23",
                ],
                _FALSY: [
                    "_cron.xǁCronǁ__init____mutmut_11",
                    "_cron.xǁCronǁ__init____mutmut_22",
                    "_schedule.x__check_jitter__mutmut_3",
                    "_cleanup.xǁCleanupǁ__init____mutmut_13",
                    "_cleanup.xǁCleanupǁ__init____mutmut_24",
                    "_cleanup.xǁCleanupǁ__init____mutmut_43",
                ],
                _LEADING_NONE: [
                    "_cron.xǁCronǁ__init____mutmut_51",
                    "_cron.xǁCronǁtick__mutmut_18",
                    "_cleanup.xǁCleanupǁ__init____mutmut_79",
                ],
                _LEADING_AFTER_STOP: [
                    "_cron.xǁCronǁon_stop__mutmut_1",
                    "_cron.xǁCronǁon_stop__mutmut_2",
                    "_cleanup.xǁCleanupǁon_stop__mutmut_1",
                    "_cleanup.xǁCleanupǁon_stop__mutmut_2",
                ],
                _FLOAT: [
                    "_schedule.xǁCronScheduleǁlatest_until__mutmut_6",
                    "_schedule.xǁCronScheduleǁnext_after__mutmut_6",
                    "_schedule.xǁCronScheduleǁticks_between__mutmut_12",
                ],
                "a remembered answer missed at its first instant is computed again, the same": [
                    "_schedule.xǁCronScheduleǁlatest_until__mutmut_2",
                    "_schedule.xǁCronScheduleǁnext_after__mutmut_2",
                ],
                "uniform(0, 0) is 0.0 too: the same delay, one more draw nothing depends on": [
                    "_cron.xǁCronǁ_fire_due__mutmut_68",
                ],
                "validate_name's default `what` is already 'queue'": [
                    "_schedule.x__check_queue__mutmut_5",
                ],
                "the default batch only sizes each reap call: a tick loops until one comes "
                "back short": ["_reaper.xǁReaperǁ__init____mutmut_1"],
                "receive treats every message but RunNow as a tick; a Tick carries nothing": [
                    "_periodic.xǁPeriodicActorǁ_ticker__mutmut_6",
                ],
            },
        ),
        families=(
            (r"\._reaper\.", "reap"),
            # Taking, keeping and handing back the leader leases (cron and maintenance).
            (r"\._cron\.xǁCronǁ(tick|on_stop)__", "leader"),
            (r"\._cleanup\.xǁCleanupǁon_stop__", "leader"),
            (r"\._(cron|schedule)\.", "cron"),
            # Retention cleanup and the periodic driver are not aim families.
            (r"\._(cleanup|periodic)\.", "other"),
        ),
    ),
)

#: Family of a mutated function, by the first pattern its name matches.
FAMILIES = (
    ("claim", re.compile(r"claim")),
    ("renew", re.compile(r"renew|heartbeat|extend|beat")),
    ("finalize", re.compile(r"finali[sz]e|outcome|flush|announce|failure|release")),
    ("reap", re.compile(r"reap|expire")),
    ("dedupe", re.compile(r"dedupe|enqueue|fold")),
    ("leader", re.compile(r"leader")),
    ("cron", re.compile(r"cron|schedule|tick|fire|cursor")),
)

_NAME = re.compile(r"^(?P<module>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ)?_?(?P<func>\w+?)__mutmut_\d+$")


def family_of(mutant: str, group: Group | None = None) -> str:
    """The family of code a mutant belongs to: by its group's placement, else by its function."""
    for where, placed in group.families if group else ():
        if re.search(where, mutant):
            return placed
    match = _NAME.match(mutant)
    name = (match.group("func") if match else mutant).lower()
    for family, pattern in FAMILIES:
        if pattern.search(name):
            return family
    return "other"


@dataclass
class Result:
    """What one group's run found."""

    group: Group
    statuses: dict[str, str] = field(default_factory=dict)  # mutant -> status
    seconds: float = 0.0
    diffs: dict[str, str] = field(default_factory=dict)  # survivor -> diff

    def family(self, mutant: str) -> str:
        return family_of(mutant, self.group)

    def counts(self, families: Sequence[str] | None = None) -> Counter[str]:
        """Statuses of the mutants in ``families`` (all when None); listed equivalents that
        survived count as ``equivalent``."""
        equivalent = self.equivalents()
        counts: Counter[str] = Counter()
        for mutant, status in self.statuses.items():
            if families is not None and self.family(mutant) not in families:
                continue
            if status in _SURVIVED and mutant in equivalent:
                status = "equivalent"
            counts[status] += 1
        return counts

    def equivalents(self) -> dict[str, str]:
        """This run's survivors that the group lists as equivalent: mutant -> why."""
        return self._resolve()[0]

    def stale(self) -> dict[str, str]:
        """Listed equivalents not found as listed in this run: listed -> what happened
        (killed, no such mutant, or renumbered)."""
        return self._resolve()[1]

    def _resolve(self) -> tuple[dict[str, str], dict[str, str]]:
        survivors = {m for m, s in self.statuses.items() if s in _SURVIVED}
        prints = {m: fingerprint(self.diffs[m]) for m in survivors if m in self.diffs}
        found: dict[str, str] = {}
        astray: dict[str, tuple[str, str | None, str]] = {}  # listed -> its name, print, why
        for listed, why in self.group.equivalent.items():
            name, print_ = split_listed(listed)
            if name in survivors and print_ in (None, prints.get(name)):
                found[name] = why
            else:
                astray[listed] = (name, print_, why)
        stale: dict[str, str] = {}
        for listed, (name, print_, why) in astray.items():
            function = name.rpartition("__mutmut_")[0] + "__mutmut_"
            moved = sorted(
                m
                for m in survivors - found.keys()
                if print_ is not None and m.startswith(function) and prints.get(m) == print_
            )
            if moved:
                found[moved[0]] = why
                stale[listed] = f"renumbered: now {moved[0]}@{print_}"
            elif name in survivors:
                now = prints.get(name, "?")
                stale[listed] = f"renumbered: {name} is another edit now (@{now}), its own is gone"
            else:
                stale[listed] = self.statuses.get(name, "no such mutant")
        return found, stale


_SURVIVED = ("survived", "suspicious")


def _tree() -> list[str]:
    """The tracked and new files of the working tree (not what .gitignore leaves out)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [rel for rel in filter(None, listed.split("\0")) if (ROOT / rel).is_file()]


def _copy(rels: Sequence[str], dest: Path) -> None:
    for rel in rels:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def _copy_tree(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    _copy(_tree(), dest)


#: mutmut's timeout, in multiples of the tests' own time (plus a second) on the unmutated code.
_TIMEOUT_MULTIPLIER = 2.0

_ALSO_COPY = ("actors", "transports", "tests", "property_tests", "examples")


def _configure(dest: Path, group: Group) -> None:
    selection = [*group.tests, *group.args]
    config = (
        "\n[tool.mutmut]\n"
        f"source_paths = {json.dumps(list(group.sources))}\n"
        f"also_copy = {json.dumps(list(_ALSO_COPY))}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(selection)}\n"
        'pytest_add_cli_args = ["-p", "no:randomly", "-q", "-x"]\n'
        "mutate_only_covered_lines = true\n"
        # A mutant that makes the runtime spin (a claim loop that never blocks, so virtual
        # time never moves) runs until mutmut's timeout: at 15 times the tests' own time (the
        # default) each such mutant of the runtime cost over a minute.
        f"timeout_multiplier = {_TIMEOUT_MULTIPLIER}\n"
    )
    with (dest / "pyproject.toml").open("a") as f:
        f.write(config)


def _mutmut(dest: Path, *args: str, check: bool = True, group: Group | None = None) -> str:
    mutmut = Path(sys.executable).with_name("mutmut")
    env = dict(os.environ)
    if group is not None and group.test_timeout is not None:
        # pytest-timeout reads it before the config file's (the environment is not part of
        # the configuration mutmut keys its verdicts by).
        env["PYTEST_TIMEOUT"] = f"{group.test_timeout:g}"
    done = subprocess.run(
        [str(mutmut), *args], cwd=dest, capture_output=True, text=True, check=False, env=env
    )
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise SystemExit(f"mutmut {' '.join(args)} failed in {dest}:\n{output}")
    return done.stdout


def run_group(group: Group, children: int) -> Result:
    """Mutate one group in its own copy of the tree and collect every mutant's status."""
    dest = WORK / group.name
    _copy_tree(dest)
    _configure(dest, group)
    started = time.monotonic()
    _mutmut(dest, "run", "--max-children", str(children), *group.only, group=group)
    (dest / _SECONDS).write_text(f"{time.monotonic() - started:.1f}\n")
    return collect(group)


_SECONDS = "mutation-seconds.txt"


def rerun_survivors(group: Group, children: int) -> Result:
    """Run the group's last survivors again against the tests as they are now: a quick check
    of new tests, valid while the mutated sources are unchanged (the time stays the full
    run's)."""
    dest = WORK / group.name
    last = collect(group)
    for source in group.sources:
        if (dest / source).read_bytes() != (ROOT / source).read_bytes():
            raise SystemExit(f"{source} changed since {group.name} last ran: run it in full")
    rels = [rel for rel in _tree() if rel not in group.sources]
    _copy(rels, dest)
    _copy([rel for rel in rels if rel.split("/")[0] in _ALSO_COPY], dest / "mutants")
    _configure(dest, group)
    survivors = [m for m, status in last.statuses.items() if status in _SURVIVED]
    verdicts = _verdicts(dest)
    if survivors:
        _mutmut(dest, "run", "--max-children", str(children), *survivors, group=group)
    # mutmut forgets every verdict when the test selection changed; the others stand (the
    # mutated code is the same, and tests were only added to).
    _restore(dest, verdicts, keep=set(survivors))
    return collect(group)


def _verdicts(dest: Path) -> dict[Path, dict[str, int | None]]:
    return {
        meta: json.loads(meta.read_text())["exit_code_by_key"]
        for meta in (dest / "mutants").rglob("*.meta")
    }


def _restore(dest: Path, verdicts: Mapping[Path, Mapping[str, int | None]], keep: set[str]) -> None:
    for meta, before in verdicts.items():
        data = json.loads(meta.read_text())
        now = data["exit_code_by_key"]
        lost = {k: v for k, v in before.items() if k not in keep and now.get(k) is None}
        if lost:
            now.update(lost)
            meta.write_text(json.dumps(data))


def collect(group: Group) -> Result:
    """The statuses of the group's last run, read from its copy of the tree."""
    dest = WORK / group.name
    if not (dest / _SECONDS).exists():
        raise SystemExit(f"group {group.name} has no finished run in {dest}")
    result = Result(group, seconds=float((dest / _SECONDS).read_text()))
    for line in _mutmut(dest, "results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            result.statuses[name] = status
    # Every survivor's diff: the listed equivalents' too, matched by their fingerprints.
    survivors = [n for n, s in result.statuses.items() if s in _SURVIVED]
    result.diffs = _diffs(dest, survivors)
    return result


# One process for every diff (``mutmut show`` per survivor loads the project each time).
_SHOW = """
import sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
for name in sys.stdin.read().split():
    print("\\0" + name)
    print(get_diff_for_mutant(name, path=find_mutant(name).path))
"""


def _diffs(dest: Path, mutants: Sequence[str]) -> dict[str, str]:
    if not mutants:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _SHOW],
        cwd=dest,
        input="\n".join(mutants),
        capture_output=True,
        text=True,
        check=False,
    )
    diffs = dict.fromkeys(mutants, "(no diff: mutmut failed)")
    for chunk in done.stdout.split("\0")[1:]:
        name, _, diff = chunk.partition("\n")
        diffs[name] = diff
    return diffs


#: The families the aim speaks of (>= 90% of their non-equivalent mutants killed).
AIM = tuple(f for f, _ in FAMILIES)


def _score(counts: Counter[str]) -> tuple[int, int]:
    """Killed (tests failed or timed out) over non-equivalent mutants that ran."""
    killed = counts["killed"] + counts["timeout"]
    return killed, killed + sum(counts[s] for s in _SURVIVED)


def _cell(counts: Counter[str], width: int, *, percent: bool = False) -> str:
    killed, judged = _score(counts)
    if not judged:
        return f"{'-':>{width}}"
    text = f"{killed}/{judged}"
    if percent:
        text += f" {100 * killed / judged:.1f}%"
    return f"{text:>{width}}"


def render(results: Sequence[Result]) -> str:
    """The score table (aim families, then "other"), the equivalents, then every survivor."""
    lines = [
        "mutation score: killed / non-equivalent mutants (timeouts count as killed)",
        f"aim: >= 90% in {', '.join(AIM)}",
        "",
    ]
    header = (
        f"{'group':<10}"
        + "".join(f"{f:>10}" for f in AIM)
        + f"{'aim':>17}{'other':>17}{'all':>17}  equiv   time"
    )
    lines.append(header)
    aim_total: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for result in results:
        row = f"{result.group.name:<10}"
        row += "".join(_cell(result.counts([f]), 10) for f in AIM)
        aim = result.counts(AIM)
        aim_total += aim
        total += result.counts()
        row += _cell(aim, 17, percent=True)
        row += _cell(result.counts(["other"]), 17, percent=True)
        row += _cell(result.counts(), 17, percent=True)
        row += f"{result.counts()['equivalent']:>7}  {result.seconds / 60:5.1f} min"
        lines.append(row)
    for label, counts in (("aim families", aim_total), ("all code", total)):
        killed, judged = _score(counts)
        if judged:
            lines.append(f"overall, {label}: {killed}/{judged} = {100 * killed / judged:.1f}%")
    judged_statuses = ("killed", "timeout", "equivalent", *_SURVIVED)
    unjudged = {k: v for k, v in total.items() if k not in judged_statuses}
    if unjudged:
        lines.append("not judged: " + ", ".join(f"{k} {v}" for k, v in sorted(unjudged.items())))
    for result in results:
        for name, what in sorted(result.stale().items()):
            lines.append(f"stale equivalent [{result.group.name}] {name}: {what}")
    for result in results:
        listed = result.equivalents()
        equivalents = sorted((result.family(m), m) for m in listed)
        if equivalents:
            lines += ["", f"equivalent survivors of {result.group.name} (as name@fingerprint):"]
            lines += [
                f"  [{f}] {m}@{fingerprint(result.diffs.get(m, ''))}: {listed[m]}"
                for f, m in equivalents
            ]
    for result in results:
        listed = result.equivalents()
        for name, diff in sorted(result.diffs.items()):
            if name in listed:
                continue
            family = result.family(name)
            head = f"--- survived [{result.group.name}/{family}] {name}@{fingerprint(diff)}"
            lines += ["", head, diff.rstrip()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m property_tests.mutation")
    names = [g.name for g in GROUPS]
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"any of {', '.join(names)}")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run only the last run's survivors again, against the current tests",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="report the groups' last runs (kept under .mutation/) without running them",
    )
    options = parser.parse_args(argv)
    unknown = sorted(set(options.groups) - set(names))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    chosen = [g for g in GROUPS if not options.groups or g.name in options.groups]
    results = []
    for group in chosen:
        if options.report_only:
            results.append(collect(group))
            continue
        if options.survivors:
            print(f"running {group.name}'s survivors again", flush=True)
            results.append(rerun_survivors(group, options.children))
            continue
        print(f"mutating {group.name}: {', '.join(group.sources)}", flush=True)
        results.append(run_group(group, options.children))
    report = render(results)
    WORK.mkdir(exist_ok=True)
    (WORK / "report.txt").write_text(report + "\n")
    print(report)
    print(f"\n(report kept in {WORK / 'report.txt'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
