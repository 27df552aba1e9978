"""The SQL backends' shared helpers for batches of renewals and finalizes."""

from __future__ import annotations

from transports.lowlevel import RenewRequest, distinct_pairs


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
