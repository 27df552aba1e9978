"""Runtime level: Claimers, Workers, LeaseKeepers and Reapers on several nodes never let a
lease lie."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, note, settings

from .conftest import examples
from .runtime import Scenario, check, run, scenarios


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_no_job_lost_and_no_double_run_without_expiry(loop: str) -> None:
    """Across nodes that pause past their leases or crash, with handlers of any duration, no job
    is lost, a job runs on two workers at once only after the first lease truly expired and was
    reclaimed, the late finalize of the first is refused, and no handler starts on a lease that
    already expired (not even on a node frozen just as its claim was answered)."""

    @settings(max_examples=examples(60))
    @given(scenario=scenarios())
    def scenario_holds(scenario: Scenario) -> None:
        result = anyio.run(run, scenario, backend=loop)
        for line in result.trace:
            note(line)
        check(result)

    scenario_holds()
