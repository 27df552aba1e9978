"""Real interleavings on every backend and loop: racing claimants never share a lease."""

from __future__ import annotations

from hypothesis import settings

from .conftest import examples
from .harness import Harness
from .interleavings import run_schedules

EXAMPLES = {"memory": 100, "sqlite": 50, "postgres": 50}


def test_concurrent_claimants_keep_the_invariants(harness: Harness) -> None:
    """Claimants racing on separate connections, under any schedule of overlaps, stalls and clock
    jumps, behave as some sequential order of their calls and keep every lease invariant."""
    run_schedules(harness, settings(max_examples=examples(EXAMPLES[harness.backend.name])))
