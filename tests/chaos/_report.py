"""Tables and distributions for the chaos report."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

SECTIONS: list[str] = []  # every table printed this session, for the report file
SUMMARY: list[str] = []  # one line per test, for the terminal summary


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float], unit: str = "s") -> str:
    """``n=.. min .. p50 .. p95 .. max ..`` of a sample, or ``none`` when empty."""
    if not values:
        return "none"
    return (
        f"n={len(values)}  min {min(values):.2f}{unit}  p50 {percentile(values, 50):.2f}{unit}  "
        f"p95 {percentile(values, 95):.2f}{unit}  max {max(values):.2f}{unit}"
    )


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with a title line."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"### {title}", "", line(cells[0]), rule, *(line(r) for r in cells[1:])])


def publish(section: str, summary: str) -> None:
    """Keep ``section`` for the report file and ``summary`` for the terminal summary.

    The report file is ``$ACTORQ_CHAOS_REPORT`` when set; each section is appended as soon as
    it is ready, so a later failure does not lose the tables before it.
    """
    SECTIONS.append(section)
    SUMMARY.append(summary)
    target = os.environ.get("ACTORQ_CHAOS_REPORT")
    if target:
        with Path(target).open("a") as out:
            out.write(section + "\n\n")
