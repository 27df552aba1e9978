"""The backends' shared helpers: batches of renewals and finalizes, and the waiters."""

from __future__ import annotations

import anyio
import pytest

from transports.lowlevel import RenewRequest, Waiters, distinct_pairs


def _renew(job_id: int, token: int) -> RenewRequest:
    return RenewRequest(job_id=job_id, token=token)


def test_each_pair_is_sent_once_in_job_id_order() -> None:
    """A repeated (job, token) pair is sent once; the pairs go in job id order (so a renewal
    and a finalize over the same rows lock them in one order); each request learns where its
    pair went."""
    requests = [_renew(3, 1), _renew(1, 1), _renew(3, 1), _renew(2, 5), _renew(2, 4)]
    sent, first = distinct_pairs(requests)
    assert [(requests[i].job_id, requests[i].token) for i in sent] == [
        (1, 1),
        (2, 4),
        (2, 5),
        (3, 1),
    ]
    assert sent == [1, 4, 3, 0]  # the first occurrence of each pair
    assert first == [3, 0, 3, 2, 1]


def test_an_empty_batch_sends_nothing() -> None:
    assert distinct_pairs([]) == ([], [])


@pytest.mark.anyio
async def test_a_kept_wake_up_serves_one_wait_of_its_queue_only() -> None:
    """A queue woken while nobody waited keeps it for one wait; other queues and job keys
    (``wake`` without ``keep``) keep nothing."""
    waiters = Waiters()
    pending: set[anyio.Event] = set()
    waiters.wake_one(["a"])
    waiters.wake(["job:1"])  # a job key: nobody will ever wait for an ended job again
    waiters.wake(["b"], keep=True)
    with anyio.fail_after(1):
        await waiters.wait(["a"], pending)
        await waiters.wait(["b", "c"], pending)
    for queues in (["a"], ["b"], ["job:1"]):
        with anyio.move_on_after(0.05) as blocked:
            await waiters.wait(queues, pending)
        assert blocked.cancelled_caught, queues
    waiters.wake_one(["a"])
    waiters.clear()
    with anyio.move_on_after(0.05) as blocked:
        await waiters.wait(["a"], pending)
    assert blocked.cancelled_caught
