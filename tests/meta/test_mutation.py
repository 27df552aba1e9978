"""``make mutation``'s groups and report: the files they name exist, families are placed as
meant, and the score leaves out only the equivalents a group lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from property_tests.mutation import AIM, GROUPS, Group, Result, family_of, render

ROOT = Path(__file__).resolve().parents[2]

REAP_TICK = "actors.jobs._reaper.xǁReaperǁtick__mutmut_3"
CRON_FIRE = "actors.jobs._cron.xǁCronǁ_fire_due__mutmut_7"


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_every_group_names_files_that_exist(group: Group) -> None:
    """A renamed module or test file breaks its group here, not an hour into a run."""
    for path in (*group.sources, *group.tests):
        assert (ROOT / path).is_file(), f"{group.name}: no {path}"


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_every_listed_equivalent_is_a_mutant_of_the_group_with_a_reason(group: Group) -> None:
    modules = tuple(s.removesuffix(".py").replace("/", ".") + "." for s in group.sources)
    for mutant, why in group.equivalent.items():
        assert mutant.startswith(modules), f"{mutant} is not in {group.name}'s sources"
        assert why.strip(), f"{mutant} has no reason"


def test_a_groups_placement_wins_over_the_function_name() -> None:
    """``Reaper.tick`` would be cron code by its name; the schedule group places it in reap."""
    (schedule,) = (g for g in GROUPS if g.name == "schedule")
    assert family_of(REAP_TICK) == "cron"
    assert family_of(REAP_TICK, schedule) == "reap"
    assert family_of("transports._memory.xǁMemoryTransportǁclaim__mutmut_1") == "claim"
    assert family_of("transports._memory.xǁMemoryTransportǁcounts__mutmut_1") == "other"


def test_the_score_is_killed_over_non_equivalent_and_stale_equivalents_are_named() -> None:
    group = Group(
        "g",
        ("actors/jobs/_cron.py",),
        (),
        equivalent={
            CRON_FIRE: "changes only a log line's text",
            CRON_FIRE.replace("_7", "_8"): "no longer survives",
        },
    )
    statuses = {
        CRON_FIRE: "survived",
        CRON_FIRE.replace("_7", "_8"): "killed",
        CRON_FIRE.replace("_7", "_9"): "timeout",
        CRON_FIRE.replace("_7", "_10"): "survived",
        "actors.jobs._cron.xǁCronǁnext_delay__mutmut_1": "killed",
    }
    result = Result(group, statuses=statuses, diffs={CRON_FIRE.replace("_7", "_10"): "-a\n+b"})
    cron = result.counts(["cron"])
    assert (cron["killed"], cron["timeout"], cron["survived"], cron["equivalent"]) == (1, 1, 1, 1)
    assert result.stale() == {CRON_FIRE.replace("_7", "_8"): "killed"}
    report = render([result])
    row = next(line for line in report.splitlines() if line.startswith("g "))
    assert "2/3 66.7%" in row  # the aim: killed and timed out over those, less the equivalent
    assert "1/1 100.0%" in row  # "other": next_delay is not named after an aim family
    assert f"stale equivalent [g] {CRON_FIRE.replace('_7', '_8')}: killed" in report
    assert f"[cron] {CRON_FIRE}: changes only a log line's text" in report
    assert f"--- survived [g/cron] {CRON_FIRE.replace('_7', '_10')}" in report
    assert len(AIM) == 7
