"""Actors, refs, mailboxes, ask, death watch, dead letters and the system's lifecycle."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors.core import (
    Actor,
    ActorCrashed,
    ActorFailure,
    ActorStopped,
    AskTimeout,
    DeadLetter,
    ExitKind,
    MailboxFull,
    ReplyAlreadySent,
    Terminated,
    WouldBlock,
    open_actor_system,
)

from ._support import Boom, Crash, Echo, Msg, Nap, Note, Recorder, settle, virtual_system

pytestmark = pytest.mark.anyio


class Slow(Actor[Note]):
    """Handles each note only after ``gate`` is set."""

    def __init__(self, seen: list[object], gate: anyio.Event) -> None:
        self.seen = seen
        self.gate = gate

    async def receive(self, msg: Note) -> None:
        await self.gate.wait()
        self.seen.append(msg.value)


async def test_messages_from_one_sender_arrive_in_order() -> None:
    log: list[Any] = []
    async with virtual_system() as system:
        ref = await system.spawn(Recorder(log, "r"))
        for i in range(2500):
            if i % 2:
                await ref.tell(Note(value=i))
            else:
                try:
                    ref.tell_nowait(Note(value=i))
                except WouldBlock:
                    await ref.tell(Note(value=i))
        await settle(system)
    assert [v for _, v in log if isinstance(v, int)] == list(range(2500))


async def test_tell_waits_while_the_mailbox_is_full() -> None:
    """Backpressure: tell blocks at capacity and resumes as the actor drains."""
    seen: list[object] = []
    gate = anyio.Event()
    async with virtual_system() as system:
        ref = await system.spawn(Slow(seen, gate), mailbox_size=2)
        await ref.tell(Note(value=0))  # taken by the actor, which waits on the gate
        await settle(system)
        await ref.tell(Note(value=1))
        await ref.tell(Note(value=2))
        sent = False

        async def third() -> None:
            nonlocal sent
            await ref.tell(Note(value=3))
            sent = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(third)
            await settle(system)
            assert not sent
            with pytest.raises(MailboxFull):
                ref.tell_nowait(Note(value=4))
            gate.set()
        assert sent
        await settle(system)
    assert seen == [0, 1, 2, 3]


async def test_tell_nowait_raises_mailbox_full_a_would_block() -> None:
    gate = anyio.Event()
    async with virtual_system() as system:
        ref = await system.spawn(Slow([], gate), mailbox_size=1)
        ref.tell_nowait(Note(value=0))
        await settle(system)
        ref.tell_nowait(Note(value=1))
        with pytest.raises(WouldBlock) as excinfo:
            ref.tell_nowait(Note(value=2))
        assert isinstance(excinfo.value, MailboxFull)
        gate.set()


async def test_ask_returns_the_reply() -> None:
    async with virtual_system() as system:
        ref = await system.spawn(Recorder([], "r"))
        assert await ref.ask(lambda r: Echo(value=41, reply_to=r), timeout=1) == 41


async def test_ask_times_out_on_the_virtual_clock() -> None:
    """An unanswered ask raises AskTimeout after its timeout in virtual time."""
    async with virtual_system() as system:
        ref = await system.spawn(Recorder([], "s"), name="slowpoke")
        await ref.tell(Nap(seconds=3600))
        start = system.clock.now()
        with pytest.raises(AskTimeout, match=r"slowpoke did not answer Echo within 30"):
            await ref.ask(lambda r: Echo(value=1, reply_to=r), timeout=30)
        assert system.clock.now() == start + 30


async def test_ask_a_stopped_actor_raises_actor_stopped() -> None:
    async with virtual_system() as system:
        ref = await system.spawn(Recorder([], "r"))
        await system.shutdown()
        assert not ref.is_alive
        with pytest.raises(ActorStopped):
            await ref.ask(lambda r: Echo(value=1, reply_to=r), timeout=1)


async def test_ask_fails_when_the_actor_crashes_on_the_request() -> None:
    class Crashy(Actor[Echo]):
        async def receive(self, msg: Echo) -> None:
            raise Boom("no")

    failures: list[ActorFailure] = []
    async with virtual_system(on_failure=failures.append) as system:
        ref = await system.spawn(Crashy())
        with pytest.raises(ActorStopped) as excinfo:
            await ref.ask(lambda r: Echo(value=1, reply_to=r), timeout=10)
        assert isinstance(excinfo.value.__cause__, Boom)
    assert [type(f.exception) for f in failures] == [Boom]


async def test_reply_can_only_be_sent_once() -> None:
    class Twice(Actor[Echo]):
        async def receive(self, msg: Echo) -> None:
            msg.reply_to.send(1)
            with pytest.raises(ReplyAlreadySent):
                msg.reply_to.send(2)
            with pytest.raises(ReplyAlreadySent):
                msg.reply_to.fail(ValueError())

    async with virtual_system() as system:
        ref = await system.spawn(Twice())
        assert await ref.ask(lambda r: Echo(value=0, reply_to=r), timeout=1) == 1


async def test_reply_fail_raises_in_the_asker() -> None:
    class Refuser(Actor[Echo]):
        async def receive(self, msg: Echo) -> None:
            msg.reply_to.fail(LookupError("nope"))

    async with virtual_system() as system:
        ref = await system.spawn(Refuser())
        with pytest.raises(LookupError, match="nope"):
            await ref.ask(lambda r: Echo(value=0, reply_to=r), timeout=1)


async def test_crash_runs_on_stop_and_reaches_the_system() -> None:
    """An unsupervised crash ends the system block with ActorCrashed, cause attached."""
    log: list[Any] = []
    refs = []

    async def body() -> None:
        async with virtual_system() as system:
            refs.append(system)
            ref = await system.spawn(Recorder(log, "r"))
            refs.append(ref)
            await ref.tell(Crash(why="kaput"))
            await system.clock.sleep(10**6)  # cancelled by the crash
            pytest.fail("the body was not cancelled")  # pragma: no cover

    with pytest.raises(ActorCrashed) as excinfo:
        await body()
    system, ref = refs
    assert isinstance(excinfo.value.__cause__, Boom)
    assert ("r", ("stop", "crashed")) in log
    assert system.failures[0].ref is ref


async def test_on_start_crash_is_a_crash() -> None:
    log: list[Any] = []
    failures: list[ActorFailure] = []
    async with virtual_system(on_failure=failures.append) as system:
        ref = await system.spawn(Recorder(log, "r", crash_on_start=True))
        await settle(system)
        assert not ref.is_alive
    assert log == [("r", "start"), ("r", ("stop", "crashed"))]
    assert len(failures) == 1


async def test_death_watch_sends_terminated() -> None:
    log: list[Any] = []
    failures: list[ActorFailure] = []
    async with virtual_system(on_failure=failures.append) as system:
        watcher = await system.spawn(Recorder(log, "w"), name="watcher")
        target = await system.spawn(Recorder([], "t"), name="target")
        crasher = await system.spawn(Recorder([], "c"), name="crasher")
        cell = watcher._cell.actor
        cell.context.watch(target)
        cell.context.watch(crasher)
        await target.tell(Note(value="bye"))
        target._cell.request_stop(target._cell._stop_reason)  # a normal stop
        await settle(system)
        await crasher.tell(Crash())
        await settle(system)
        # Watching an actor that is already dead notifies at once.
        cell.context.watch(target)
        await settle(system)
    terminated = [v for label, v in log if label == "w" and v[0] == "terminated"]
    assert terminated == [
        ("terminated", "target", "normal"),
        ("terminated", "crasher", "crashed"),
        ("terminated", "target", "normal"),
    ]


async def test_unwatch_stops_notifications() -> None:
    log: list[Any] = []
    async with virtual_system() as system:
        watcher = await system.spawn(Recorder(log, "w"))
        target = await system.spawn(Recorder([], "t"))
        ctx = watcher._cell.actor.context
        ctx.watch(target)
        ctx.unwatch(target)
        await system.shutdown()
    assert not [v for _, v in log if isinstance(v, tuple) and v[0] == "terminated"]


async def test_dead_letters_get_messages_to_stopped_actors_and_leftovers() -> None:
    letters: list[DeadLetter] = []
    gate = anyio.Event()
    async with virtual_system(dead_letters=letters.append) as system:
        ref = await system.spawn(Slow([], gate), mailbox_size=10, shutdown=0)
        for i in range(4):
            await ref.tell(Note(value=i))
        await settle(system)
        # Note 0 is being handled; 1..3 are queued. Shutdown kills it after 0 s: they are left.
        await system.shutdown()
        await ref.tell(Note(value="late"))
        ref.tell_nowait(Note(value="later"))
    assert [letter.message for letter in letters] == [
        Note(value=1),
        Note(value=2),
        Note(value=3),
        Note(value="late"),
        Note(value="later"),
    ]
    assert all(letter.ref is ref for letter in letters)
    assert system.statistics().dead_letters == 5


async def test_dead_letters_are_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    async with virtual_system() as system:
        ref = await system.spawn(Recorder([], "r"), name="gone")
        await system.shutdown()
        await ref.tell(Note(value="hello"))
    assert "dead letter to gone" in caplog.text


async def test_stop_finishes_the_current_message_then_on_stop() -> None:
    log: list[Any] = []

    class Stopper(Recorder):
        async def receive(self, msg: Msg) -> None:
            await super().receive(msg)
            if isinstance(msg, Note) and msg.value == "stop":
                self.context.stop()

    letters: list[DeadLetter] = []
    async with virtual_system(dead_letters=letters.append) as system:
        ref = await system.spawn(Stopper(log, "s"))
        for value in ["a", "stop", "b"]:
            ref.tell_nowait(Note(value=value))
        await settle(system)
        assert not ref.is_alive
    assert log == [("s", "start"), ("s", "a"), ("s", "stop"), ("s", ("stop", "normal"))]
    assert [letter.message for letter in letters] == [Note(value="b")]


async def test_linked_child_stops_with_parent_and_crash_propagates() -> None:
    log: list[Any] = []

    class Parent(Recorder):
        async def on_start(self) -> None:
            await super().on_start()
            self.child = await self.context.spawn(Recorder(self.log, "child"), name="kid")

    failures: list[ActorFailure] = []
    async with virtual_system(on_failure=failures.append) as system:
        parent = await system.spawn(Parent(log, "parent"), name="p")
        child = parent._cell.actor.child
        assert child.name == "p/kid"
        await child.tell(Crash())
        await settle(system)
        assert not parent.is_alive
    assert isinstance(failures[0].exception, ActorCrashed)
    assert isinstance(failures[0].exception.__cause__, Boom)
    assert log.index(("child", ("stop", "crashed"))) < log.index(("parent", ("stop", "crashed")))


async def test_shutdown_cancels_an_actor_that_ignores_its_timeout() -> None:
    log: list[Any] = []
    async with virtual_system() as system:
        ref = await system.spawn(Recorder(log, "r"), shutdown=5)
        await ref.tell(Nap(seconds=3600))
        await settle(system)
        start = system.clock.now()
        await system.shutdown()
        assert system.clock.now() - start == pytest.approx(5, abs=0.01)
    assert log[-1] == ("r", ("stop", "killed"))
    assert ref._cell.exit_reason is not None
    assert ref._cell.exit_reason.kind is ExitKind.KILLED


def _task_count() -> int:
    return len(anyio.get_running_tasks())


async def test_no_task_outlives_the_system() -> None:
    before = _task_count()
    async with open_actor_system() as system:
        for i in range(20):
            ref = await system.spawn(Recorder([], str(i)))
            await ref.tell(Note(value=i))
        sup = await system.spawn_supervisor([])
        assert sup.is_alive
        assert _task_count() > before
    assert _task_count() == before
    assert system.statistics().actors == 0


async def test_spawn_after_shutdown_raises() -> None:
    async with virtual_system() as system:
        await system.shutdown()
        with pytest.raises(ActorStopped):
            await system.spawn(Recorder([], "r"))


async def test_an_actor_instance_cannot_be_spawned_twice() -> None:
    async with virtual_system() as system:
        actor = Recorder([], "r")
        await system.spawn(actor)
        with pytest.raises(ValueError, match="already spawned"):
            await system.spawn(actor)


async def test_terminated_is_a_message() -> None:
    """A Terminated for an already-dead actor is delivered through receive."""
    log: list[Any] = []
    async with virtual_system() as system:
        dead = await system.spawn(Recorder([], "d"), name="dead")
        dead._cell.request_stop(dead._cell._stop_reason)
        await settle(system)
        watcher = await system.spawn(Recorder(log, "w"))
        watcher._cell.actor.context.watch(dead)
        await settle(system)
    assert ("w", ("terminated", "dead", "normal")) in log
    assert isinstance(Terminated, type)
