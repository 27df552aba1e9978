"""The history records on their own: histogram buckets and quantiles, cells and sums."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transports import BUCKET_BOUNDS, MINUTE, Histogram, InvalidRequest, QueueStats
from transports.lowlevel import bucket_of, rows_of_cells, sum_cells

durations = st.floats(min_value=0.0, max_value=BUCKET_BOUNDS[-1], allow_nan=False)


@given(st.lists(durations, min_size=1, max_size=200), st.floats(0.01, 1.0))
def test_a_quantile_is_never_below_the_truth_and_at_most_19_percent_above(
    values: list[float], q: float
) -> None:
    """The q quantile of a histogram bounds the nearest-rank q quantile of its values from
    above, within one bucket (a factor 2^(1/4)) for values of 1 ms or more."""
    truth = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    estimate = Histogram.of(values).quantile(q)
    assert estimate is not None
    assert estimate >= truth
    assert estimate <= max(truth, 0.001) * 2 ** (1 / 4) * (1 + 1e-9)


@given(st.lists(durations), st.lists(durations))
def test_histograms_add_like_the_union_of_their_values(a: list[float], b: list[float]) -> None:
    """Merging two nodes' histograms is the histogram of all their values."""
    assert Histogram.of(a) + Histogram.of(b) == Histogram.of(a + b)


def test_bucket_edges() -> None:
    """A bound belongs to its own bucket; negatives count as zero; beyond the last, overflow."""
    assert bucket_of(0.001) == 0
    assert bucket_of(0.0010001) == 1
    assert bucket_of(-3.0) == 0
    assert bucket_of(math.inf) == len(BUCKET_BOUNDS)
    assert Histogram.of([1e9]).quantile(1.0) == BUCKET_BOUNDS[-1]
    assert Histogram.empty().quantile(0.5) is None
    for bad in [0, -0.1, 1.5, math.nan, "0.5", True]:
        with pytest.raises(InvalidRequest):
            Histogram.empty().quantile(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        bucket_of(math.nan)


def test_cells_round_trip_and_unknown_metrics_are_skipped() -> None:
    """A row survives its cells; a metric or value another version wrote is skipped, and a
    row whose queue or minute is invalid reads as None."""
    row = QueueStats(
        queue="q",
        minute=MINUTE,
        dead=2,
        run=Histogram.of([0.5, 7.0]),
        recovery=Histogram.of([40.0]),
    )
    assert QueueStats.from_cells("q", MINUTE, row.cells()) == row
    odd = {**row.cells(), "backlog:3": 9, "recovery:97": 2, "wait:999": 1, "wait:x": 1, "dead:1": 4}
    odd |= {"succeeded": -1, "failed": 1.5, "cancelled": True}
    assert QueueStats.from_cells("q", MINUTE, odd) == row
    assert QueueStats.from_cells("bad name", MINUTE, row.cells()) is None
    assert QueueStats.from_cells("q", 30.0, row.cells()) is None


def test_rows_add_only_within_their_queue_and_minute() -> None:
    """Two rows of one queue and minute add figure by figure; others refuse to."""
    a = QueueStats(queue="q", minute=0.0, succeeded=1, wait=Histogram.of([0.1]))
    b = QueueStats(queue="q", minute=0.0, succeeded=2, dead=1, wait=Histogram.of([0.2]))
    assert a + b == QueueStats(
        queue="q", minute=0.0, succeeded=3, dead=1, wait=Histogram.of([0.1, 0.2])
    )
    with pytest.raises(InvalidRequest):
        _ = a + QueueStats(queue="q", minute=MINUTE)
    with pytest.raises(InvalidRequest):
        _ = a + QueueStats(queue="other", minute=0.0)


def test_sum_cells_and_rows_of_cells_are_inverse() -> None:
    """Rows of a batch sum per cell, sorted; cells ordered by minute then queue rebuild them."""
    rows = [
        QueueStats(queue="b", minute=0.0, dead=1),
        QueueStats(queue="a", minute=0.0, dead=2, run=Histogram.of([1.0])),
        QueueStats(queue="b", minute=0.0, dead=3),
        QueueStats(queue="a", minute=MINUTE),
    ]
    cells = sum_cells(rows)
    assert cells == sorted(cells)
    assert ("b", 0.0, "dead", 4) in cells
    ordered = sorted(cells, key=lambda c: (c[1], c[0]))
    assert rows_of_cells(ordered) == [
        QueueStats(queue="a", minute=0.0, dead=2, run=Histogram.of([1.0])),
        QueueStats(queue="b", minute=0.0, dead=4),
    ]
