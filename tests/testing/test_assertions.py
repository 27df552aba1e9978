"""assert_enqueued / refute_enqueued match stored jobs and explain a miss."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from actors.jobs import App, JobContext, Task
from actors.testing import NotEnqueued, TestingError, UnexpectedlyEnqueued, open_tester

pytestmark = pytest.mark.anyio


@attrs.frozen(kw_only=True)
class Address:
    city: str
    zip: str


@attrs.frozen(kw_only=True)
class Parcel:
    order_id: int
    to: Address


def parcel_app() -> tuple[App, Task[Parcel]]:
    app = App()

    @app.task("ship", queue="shipping", priority=5)
    async def ship(ctx: JobContext, payload: Parcel) -> None:
        pass

    @app.task("note")
    async def note(ctx: JobContext, payload: Any) -> None:
        pass

    return app, ship


PARCEL = Parcel(order_id=7, to=Address(city="Lyon", zip="69001"))


async def test_an_instance_matches_the_whole_payload() -> None:
    """An attrs payload matches the stored payload exactly; a different one does not."""
    app, ship = parcel_app()
    async with open_tester(app) as tester:
        result = await app.enqueue(ship, PARCEL)
        job = await tester.assert_enqueued(ship, payload=PARCEL, queue="shipping", priority=5)
        assert job.id == result.job_id
        await tester.refute_enqueued(ship, payload=attrs.evolve(PARCEL, order_id=8))
        with pytest.raises(NotEnqueued):
            await tester.assert_enqueued(ship, payload=PARCEL, queue="default")
        with pytest.raises(NotEnqueued):
            await tester.assert_enqueued("ship", payload=PARCEL, priority=0)


async def test_a_mapping_matches_the_keys_it_names_at_any_depth() -> None:
    """A dict matches partially, nested dicts too; a wrong or missing key is a miss."""
    app, ship = parcel_app()
    async with open_tester(app) as tester:
        await app.enqueue(ship, PARCEL)
        await tester.assert_enqueued("ship", payload={"order_id": 7})
        await tester.assert_enqueued("ship", payload={"to": {"city": "Lyon"}})
        await tester.refute_enqueued("ship", payload={"to": {"city": "Paris"}})
        await tester.refute_enqueued("ship", payload={"weight": 3})
        await tester.refute_enqueued("ship", payload={"order_id": "7"})  # types count


async def test_states_default_to_waiting_and_can_be_named() -> None:
    """By default only available or scheduled jobs match; ``state=`` picks others."""
    app, ship = parcel_app()
    async with open_tester(app) as tester:
        await app.enqueue(ship, PARCEL, delay=60.0)
        await tester.assert_enqueued(ship, state="scheduled")
        await tester.refute_enqueued(ship, state="available")
        await tester.advance(60.0)
        await tester.drain()
        await tester.refute_enqueued(ship)
        await tester.assert_enqueued(ship, state="succeeded")
        await tester.assert_enqueued(ship, state=["dead", "succeeded"])
        assert len(await tester.all_enqueued(state="succeeded")) == 1


async def test_a_miss_lists_what_is_enqueued_and_how_it_differs() -> None:
    """The message names the expectation, every waiting job with its differences, and
    matching jobs found in other states."""
    app, ship = parcel_app()
    async with open_tester(app) as tester:
        await app.enqueue(ship, PARCEL)
        await app.enqueue("note", {"text": "hi"})
        with pytest.raises(NotEnqueued) as caught:
            await tester.assert_enqueued(ship, payload={"order_id": 8, "to": {"zip": "75001"}})
        message = str(caught.value)
        assert message.splitlines()[0] == (
            "no job matches kind='ship', payload contains {'order_id': 8, 'to': {'zip': "
            "'75001'}}, state available or scheduled"
        )
        assert "jobs in state available or scheduled (2):" in message
        assert "#1 ship queue=shipping state=available priority=5" in message
        assert "payload['order_id'] is 7, expected 8" in message
        assert "payload['to']['zip'] is '69001', expected '75001'" in message
        assert "kind is 'note', expected 'ship'" in message

        await tester.drain()
        with pytest.raises(NotEnqueued) as caught:
            await tester.assert_enqueued(ship, payload={"order_id": 7})
        message = str(caught.value)
        assert "no job is in state available or scheduled" in message
        assert "matching jobs in other states:\n  #1 ship queue=shipping state=succeeded" in message


async def test_refute_lists_the_matches() -> None:
    """refute_enqueued fails with every matching job; both errors are AssertionErrors."""
    app, ship = parcel_app()
    async with open_tester(app) as tester:
        await app.enqueue(ship, PARCEL)
        await app.enqueue(ship, attrs.evolve(PARCEL, order_id=8))
        with pytest.raises(UnexpectedlyEnqueued) as caught:
            await tester.refute_enqueued(ship)
        message = str(caught.value)
        assert message.startswith("2 job(s) match kind='ship', state available or scheduled:")
        assert "payload={'order_id': 8," in message
        assert isinstance(caught.value, TestingError)
        assert isinstance(caught.value, AssertionError)
        await tester.refute_enqueued("note")


async def test_an_unknown_state_is_a_clear_failure() -> None:
    """A misspelt state fails with the valid names, not a bare ValueError."""
    app, ship = parcel_app()
    async with open_tester(app) as tester:
        with pytest.raises(TestingError, match="no job state is named 'sucess'"):
            await tester.assert_enqueued(ship, state="sucess")
        with pytest.raises(TestingError, match="one of pending, scheduled, available"):
            await tester.jobs(state="done")
