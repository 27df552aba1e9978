"""The App: registering handlers, typed payloads, and the enqueue API on every backend."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    ConfigInvalid,
    Constant,
    DuplicateJobKind,
    JobContext,
    PayloadInvalid,
    Task,
    UnknownJobKind,
)
from transports import (
    EnqueueRequest,
    InvalidQueueName,
    InvalidRequest,
    JobState,
    MemoryTransport,
    PayloadNotSerializable,
    PayloadTooLarge,
    PostgresTransport,
    Transport,
)

from ._support import START, topology, wait_final

pytestmark = pytest.mark.anyio


@attrs.frozen
class Address:
    city: str
    zip: str


@attrs.frozen
class Signup:
    user_id: int
    email: str
    address: Address
    tags: list[str] = attrs.field(factory=list)


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None


async def _total_jobs(transport: Transport) -> int:
    return sum(c.total for c in await transport.counts())


# --- registration ---------------------------------------------------------------------------


async def test_decorated_handler_receives_its_attrs_payload_structured_by_cattrs(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A handler annotated with an attrs class gets an instance built from the stored JSON."""
    app = App()
    seen: list[object] = []

    @app.task("user.signup", queue="users", max_attempts=3)
    async def signup(ctx: JobContext, payload: Signup) -> None:
        seen.append(payload)

    assert isinstance(signup, Task)
    assert signup.payload_type is Signup
    assert app.queues == ["users"]
    sent = Signup(user_id=7, email="a@b.c", address=Address(city="Oslo", zip="0150"), tags=["x"])
    result = await app.enqueue(signup, sent, transport=memory)
    stored = await memory.get(result.job_id)
    assert stored.payload == {
        "user_id": 7,
        "email": "a@b.c",
        "address": {"city": "Oslo", "zip": "0150"},
        "tags": ["x"],
    }
    assert (stored.queue, stored.max_attempts) == ("users", 3)
    async with clock.autojump(), topology(app, memory, clock).run():
        await wait_final(memory, clock, [result.job_id])
    assert seen == [sent]
    assert type(seen[0]) is Signup
    assert type(seen[0].address) is Address


async def test_plain_register_and_the_payload_type_argument(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """``register`` is the decorator's plain form; ``payload_type=`` overrides annotations."""
    app = App()
    seen: list[object] = []

    async def handler(ctx, payload):  # type: ignore[no-untyped-def]
        seen.append(payload)

    task = app.register("addr.check", handler, payload_type=Address, priority=-1)
    assert app.get("addr.check") is task
    assert task.fn is handler
    assert task.options.priority == -1
    assert app.tasks == {"addr.check": task}
    result = await app.enqueue("addr.check", Address(city="Rome", zip="00100"), transport=memory)
    assert (await memory.get(result.job_id)).priority == -1
    async with clock.autojump(), topology(app, memory, clock).run():
        await wait_final(memory, clock, [result.job_id])
    assert seen == [Address(city="Rome", zip="00100")]


async def test_untyped_payloads_pass_through_as_json(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Handlers annotated ``Any``, ``object`` or not at all get the stored JSON as it is."""
    app = App()
    seen: dict[str, object] = {}

    async def as_any(ctx: JobContext, payload: Any) -> None:
        seen["any"] = payload

    async def as_object(ctx: JobContext, payload: object) -> None:
        seen["object"] = payload

    async def bare(ctx, payload):  # type: ignore[no-untyped-def]
        seen["bare"] = payload

    for kind, fn in [("p.any", as_any), ("p.object", as_object), ("p.bare", bare)]:
        assert app.register(kind, fn).payload_type is None
    ids = [
        (await app.enqueue(kind, {"n": [1, 2]}, transport=memory)).job_id
        for kind in ("p.any", "p.object", "p.bare")
    ]
    async with clock.autojump(), topology(app, memory, clock).run():
        jobs = await wait_final(memory, clock, ids)
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert seen == {"any": {"n": [1, 2]}, "object": {"n": [1, 2]}, "bare": {"n": [1, 2]}}


def test_a_kind_registered_twice_is_refused() -> None:
    """Registering a kind a second time raises DuplicateJobKind, by decorator or plain call."""
    app = App()
    app.register("dup", _noop)
    with pytest.raises(DuplicateJobKind, match="dup"):
        app.register("dup", _noop)
    with pytest.raises(DuplicateJobKind):
        app.task("dup")(_noop)
    assert list(app.tasks) == ["dup"]


def test_a_sync_handler_is_refused() -> None:
    """A handler must be an async function: a plain function raises ConfigInvalid."""
    app = App()

    def sync(ctx: JobContext, payload: Any) -> None:
        return None

    with pytest.raises(ConfigInvalid, match="async"):
        app.register("sync", sync)  # type: ignore[arg-type]
    with pytest.raises(ConfigInvalid):
        app.task("sync2")(sync)  # type: ignore[arg-type]
    assert app.tasks == {}


async def test_async_callable_objects_and_partials_are_handlers(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """An object with an ``async def __call__`` (typed by its annotations) or a partial of an
    async function can be registered like a plain handler."""
    seen: list[tuple[str, object]] = []

    class Mailer:
        async def __call__(self, ctx: JobContext, payload: Address) -> None:
            seen.append(("object", payload))

    async def send(ctx: JobContext, payload: Any, *, prefix: str) -> None:
        seen.append((prefix, payload))

    app = App(memory)
    assert app.register("mailer", Mailer()).payload_type is Address
    assert app.register("partial", functools.partial(send, prefix="partial")).payload_type is None
    ids = [
        (await app.enqueue("mailer", Address(city="Lima", zip="15001"))).job_id,
        (await app.enqueue("partial", [1])).job_id,
    ]
    async with clock.autojump(), topology(app, memory, clock).run():
        await wait_final(memory, clock, ids)
    assert sorted(seen, key=str) == [
        ("object", Address(city="Lima", zip="15001")),
        ("partial", [1]),
    ]


def test_a_handler_with_the_wrong_arity_is_refused() -> None:
    """A handler takes (ctx, payload): any other signature raises ConfigInvalid at
    registration."""

    async def one(ctx: JobContext) -> None:
        return None

    with pytest.raises(ConfigInvalid, match="ctx, payload"):
        App().register("one", one)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["has space", "", "k" * 129, "semi;colon", "quo'te"])
def test_invalid_kind_names_are_refused(kind: str) -> None:
    """A kind outside ``[A-Za-z0-9_.:-]{1,128}`` raises InvalidQueueName."""
    app = App()
    with pytest.raises(InvalidQueueName):
        app.register(kind, _noop)
    assert app.tasks == {}


@pytest.mark.parametrize("queue", ["has space", "", "q" * 129, "drop;table"])
def test_invalid_queue_names_are_refused(queue: str) -> None:
    """A task's queue outside ``[A-Za-z0-9_.:-]{1,128}`` raises InvalidQueueName."""
    app = App()
    with pytest.raises(InvalidQueueName):
        app.register("fine", _noop, queue=queue)
    assert app.tasks == {}


@pytest.mark.parametrize(
    "options",
    [{"max_attempts": 0}, {"timeout": 0.0}, {"timeout": -1.0}, {"lease_ttl": 0.0}],
)
def test_invalid_task_options_are_refused(options: dict[str, Any]) -> None:
    """Options out of range fail at registration with ConfigInvalid, not when a job runs."""
    app = App()
    with pytest.raises(ConfigInvalid):
        app.register("k", _noop, **options)
    assert app.tasks == {}


def test_an_unknown_task_option_is_refused() -> None:
    """The options are spelled out: a misspelt one is refused by the call itself."""
    app = App()
    with pytest.raises(TypeError, match="max_attemps"):
        app.register("k", _noop, max_attemps=3)  # type: ignore[call-arg]
    assert app.tasks == {}


# --- enqueue refusals: nothing is written -----------------------------------------------------


async def test_enqueue_of_an_unknown_kind_writes_nothing(memory: MemoryTransport) -> None:
    """Enqueueing a kind with no handler raises UnknownJobKind before touching storage."""
    app = App(memory)
    app.register("known", _noop)
    with pytest.raises(UnknownJobKind, match="unknown"):
        await app.enqueue("unknown", {})
    with pytest.raises(UnknownJobKind):
        app.request("unknown")
    assert await _total_jobs(memory) == 0


async def test_enqueue_of_a_payload_of_the_wrong_type_writes_nothing(
    memory: MemoryTransport,
) -> None:
    """A payload that does not fit the task's type raises PayloadInvalid; nothing is stored."""
    app = App(memory)
    signup = app.task("signup")(_typed_signup)
    counted = app.register("count", _typed_int)
    wrong: list[tuple[Task[Any], Any]] = [
        (signup, {"user_id": 1}),  # a dict is not a Signup
        (signup, Address(city="x", zip="y")),  # another attrs class
        (signup, Signup(user_id="seven", email="e", address=Address(city="c", zip="z"))),  # type: ignore[arg-type]
        (signup, Signup(user_id=1, email="e", address={"city": "c"})),  # type: ignore[arg-type]
        (counted, "not a number"),
        (counted, None),
    ]
    for task, payload in wrong:
        with pytest.raises(PayloadInvalid):
            await app.enqueue(task, payload)
    assert await _total_jobs(memory) == 0
    # The same tasks accept payloads that fit.
    await app.enqueue(signup, Signup(user_id=1, email="e", address=Address(city="c", zip="z")))
    await app.enqueue(counted, 3)
    assert await _total_jobs(memory) == 2


async def _typed_signup(ctx: JobContext, payload: Signup) -> None:
    return None


async def _typed_int(ctx: JobContext, payload: int) -> None:
    return None


async def test_oversized_and_non_json_payloads_raise_the_transport_errors(
    clock: VirtualClock,
) -> None:
    """Payloads the store refuses raise PayloadTooLarge / PayloadNotSerializable, writing nothing."""
    async with MemoryTransport(clock=clock, max_payload_bytes=64) as small:
        app = App(small)
        app.register("raw", _noop)
        with pytest.raises(PayloadTooLarge):
            await app.enqueue("raw", {"text": "x" * 100})
        for payload in [{1, 2}, b"bytes", math.nan, {"k": object()}]:
            with pytest.raises(PayloadNotSerializable):
                await app.enqueue("raw", payload)
        with pytest.raises(PayloadTooLarge):
            await app.enqueue_many(
                [app.request("raw", {"ok": 1}), app.request("raw", {"text": "x" * 100})]
            )
        assert await _total_jobs(small) == 0


async def test_enqueue_options_are_validated_before_writing(memory: MemoryTransport) -> None:
    """A bad queue name, negative delay or max_attempts below 1 writes nothing."""
    app = App(memory)
    app.register("k", _noop)
    with pytest.raises(InvalidQueueName):
        await app.enqueue("k", None, queue="bad queue")
    with pytest.raises(InvalidRequest):
        await app.enqueue("k", None, delay=-1.0)
    with pytest.raises(InvalidRequest):
        await app.enqueue("k", None, max_attempts=0)
    with pytest.raises(InvalidRequest):
        await app.enqueue("k", None, run_at=math.inf)
    assert await _total_jobs(memory) == 0


def test_enqueue_without_a_transport_is_an_error() -> None:
    """An App built without a transport needs ``transport=`` on each enqueue."""
    app = App()
    app.register("k", _noop)
    with pytest.raises(ConfigInvalid, match="transport"):
        app._transport(None)


# --- enqueue options, stored faithfully on every backend ------------------------------------


async def test_enqueue_options_reach_storage(transport: Transport, clock: VirtualClock) -> None:
    """Task defaults and per-call options (queue, priority, delay, run_at, max_attempts,
    dedupe_key) are what the store records."""
    app = App(transport)
    app.register("mail.send", _noop, queue="mail", priority=5, max_attempts=4)

    plain = await app.enqueue("mail.send", {"to": "a"})
    job = await transport.get(plain.job_id)
    assert (job.kind, job.queue, job.priority, job.max_attempts) == ("mail.send", "mail", 5, 4)
    assert job.state is JobState.AVAILABLE
    assert job.run_at == pytest.approx(START)

    custom = await app.enqueue(
        "mail.send", {"to": "b"}, queue="urgent", priority=-3, max_attempts=9, delay=30.0
    )
    job = await transport.get(custom.job_id)
    assert (job.queue, job.priority, job.max_attempts) == ("urgent", -3, 9)
    assert job.state is JobState.SCHEDULED
    assert job.run_at == pytest.approx(START + 30.0)

    at = await app.enqueue("mail.send", None, run_at=START + 3600.0, delay=5.0)
    job = await transport.get(at.job_id)
    assert job.state is JobState.SCHEDULED
    assert job.run_at == pytest.approx(START + 3600.0)  # run_at wins over delay

    first = await app.enqueue("mail.send", {"n": 1}, dedupe_key="daily-report")
    again = await app.enqueue("mail.send", {"n": 2}, dedupe_key="daily-report")
    assert not first.deduplicated
    assert again.deduplicated
    assert again.job_id == first.job_id
    assert (await transport.get(first.job_id)).payload == {"n": 1}
    elsewhere = await app.enqueue("mail.send", {"n": 3}, dedupe_key="daily-report", queue="other")
    assert not elsewhere.deduplicated  # keys are per queue

    batch = await app.enqueue_many(
        [
            app.request("mail.send", {"n": 4}, priority=1),
            EnqueueRequest(kind="mail.send", payload={"n": 5}, queue="mail"),
        ]
    )
    assert [r.deduplicated for r in batch] == [False, False]
    counts = {c.queue: c.total for c in await transport.counts()}
    assert counts == {"mail": 5, "urgent": 1, "other": 1}


async def test_jobs_run_in_priority_then_due_order(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """With one worker, a lower priority number runs first, then earlier run_at."""
    app = App(memory)
    order: list[str] = []

    @app.task("ordered")
    async def ordered(ctx: JobContext, payload: str) -> None:
        order.append(payload)

    await app.enqueue(ordered, "late-normal", priority=0, run_at=START - 1)
    await app.enqueue(ordered, "early-normal", priority=0, run_at=START - 2)
    await app.enqueue(ordered, "background", priority=10)
    await app.enqueue(ordered, "urgent", priority=-5)
    async with clock.autojump(), topology(app, memory, clock, concurrency=1).run():
        await wait_final(memory, clock, [1, 2, 3, 4])
    assert order == ["urgent", "early-normal", "late-normal", "background"]


def test_task_options_keep_their_defaults() -> None:
    """Options not given keep the documented defaults; the backoff is the task's own."""
    app = App()
    task = app.register("k", _noop, backoff=Constant(seconds=2.0), timeout=5.0)
    assert task.options.queue == "default"
    assert task.options.backoff == Constant(seconds=2.0)
    assert task.options.timeout == 5.0
    assert repr(task) == "Task('k', queue='default')"


# --- PostgreSQL: enqueue inside the caller's transaction -------------------------------------


@pytest.fixture
async def postgres_app(
    postgres_dsn: str, postgres_schema: str, clock: VirtualClock
) -> AsyncIterator[tuple[App, Transport]]:
    async with PostgresTransport(
        postgres_dsn, schema=postgres_schema, clock=clock, pool_size=2
    ) as pg:
        app = App(pg)
        app.register("order.placed", _noop, queue="orders")
        yield app, pg


@pytest.mark.postgres
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_enqueue_commits_and_rolls_back_with_the_callers_transaction(
    postgres_app: tuple[App, Transport], postgres_dsn: str, postgres_schema: str
) -> None:
    """``connection=`` enqueues on the caller's connection: the job commits or rolls back with
    the caller's own writes."""
    import asyncpg

    app, pg = postgres_app
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'CREATE TABLE "{postgres_schema}".orders (id int primary key)')

        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f'INSERT INTO "{postgres_schema}".orders VALUES (1)')
        await app.enqueue("order.placed", {"order": 1}, connection=conn)
        await transaction.rollback()
        assert await _total_jobs(pg) == 0
        assert await conn.fetchval(f'SELECT count(*) FROM "{postgres_schema}".orders') == 0

        async with conn.transaction():
            await conn.execute(f'INSERT INTO "{postgres_schema}".orders VALUES (2)')
            result = await app.enqueue("order.placed", {"order": 2}, connection=conn)
            batch = await app.enqueue_many(
                [app.request("order.placed", {"order": 3})], connection=conn
            )
            # Not visible to the transport's own connections before the commit.
            assert await _total_jobs(pg) == 0
        job = await pg.get(result.job_id)
        assert (job.payload, job.queue, job.state) == ({"order": 2}, "orders", JobState.AVAILABLE)
        assert (await pg.get(batch[0].job_id)).payload == {"order": 3}
        assert await conn.fetchval(f'SELECT count(*) FROM "{postgres_schema}".orders') == 1
    finally:
        await conn.close()
