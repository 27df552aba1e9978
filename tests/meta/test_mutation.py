"""``make mutation``'s groups and report: the files they name exist, families are placed as
meant, and the score leaves out only the equivalents a group lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from property_tests.mutation import (
    AIM,
    GROUPS,
    Group,
    Result,
    family_of,
    fingerprint,
    render,
    split_listed,
)

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
    for listed, why in group.equivalent.items():
        mutant, print_ = split_listed(listed)
        assert mutant.startswith(modules), f"{mutant} is not in {group.name}'s sources"
        assert re.fullmatch(r"\w+(\.\w+)*\.x(ǁ\w+ǁ)?\w+__mutmut_\d+", mutant), listed
        assert print_ is None or re.fullmatch(r"[0-9a-f]{8}", print_), listed
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
    assert f"[cron] {CRON_FIRE}@{fingerprint('')}: changes only a log line's text" in report
    assert f"--- survived [g/cron] {CRON_FIRE.replace('_7', '_10')}" in report
    assert len(AIM) == 7


def _diff(old: str, new: str) -> str:
    """A diff as mutmut shows one: headers, context, the changed line."""
    return "\n".join(
        [
            "--- a.py",
            "+++ a.py",
            "@@ -1,3 +1,3 @@",
            " def f():",
            f"-    {old}",
            f"+    {new}",
            "     return",
        ]
    )


def test_a_fingerprint_is_the_edit_alone() -> None:
    """Context, headers and indentation leave it unchanged; another edit changes it."""
    edit = fingerprint(_diff("x = 1", "x = 2"))
    assert re.fullmatch(r"[0-9a-f]{8}", edit)
    moved = _diff("x = 1", "x = 2").replace(" def f():", " def g(a):").replace("a.py", "b.py")
    assert fingerprint(moved.replace("    x", "        x")) == edit
    assert fingerprint(_diff("x = 1", "x = None")) != edit
    assert fingerprint(_diff("y = 1", "y = 2")) != edit


def test_a_renumbered_equivalent_is_found_by_its_fingerprint_and_reported() -> None:
    """mutmut renumbered the listed edit from _7 to _9, and _7 is another edit now: _9 leaves
    the score as equivalent, _7 counts as a survivor, and the report names the renumbering."""
    edit, other = _diff("x = 1", "x = 2"), _diff("y = 1", "y = None")
    listed = f"{CRON_FIRE}@{fingerprint(edit)}"
    group = Group("g", ("actors/jobs/_cron.py",), (), equivalent={listed: "the same delay"})
    now = CRON_FIRE.replace("_7", "_9")
    statuses = {CRON_FIRE: "survived", now: "survived"}
    result = Result(group, statuses=statuses, diffs={CRON_FIRE: other, now: edit})
    assert result.equivalents() == {now: "the same delay"}
    assert result.stale() == {listed: f"renumbered: now {now}@{fingerprint(edit)}"}
    counts = result.counts()
    assert (counts["equivalent"], counts["survived"]) == (1, 1)
    report = render([result])
    assert f"stale equivalent [g] {listed}: renumbered: now {now}" in report
    assert f"--- survived [g/cron] {CRON_FIRE}@{fingerprint(other)}" in report


def test_a_listed_name_that_is_another_edit_now_is_scored_as_a_survivor() -> None:
    """The listed edit is gone (the code changed): its old name, now another survivor, is not
    left out of the score under the old reason."""
    listed = f"{CRON_FIRE}@{fingerprint(_diff('x = 1', 'x = 2'))}"
    group = Group("g", ("actors/jobs/_cron.py",), (), equivalent={listed: "the same delay"})
    other = _diff("y = 1", "y = None")
    result = Result(group, statuses={CRON_FIRE: "survived"}, diffs={CRON_FIRE: other})
    assert result.equivalents() == {}
    assert result.counts()["survived"] == 1
    (what,) = result.stale().values()
    assert what.startswith(f"renumbered: {CRON_FIRE} is another edit now (@{fingerprint(other)})")
    # Listed by name alone, it is matched by name, whatever its edit.
    bare = Group("g", ("actors/jobs/_cron.py",), (), equivalent={CRON_FIRE: "the same delay"})
    result = Result(bare, statuses={CRON_FIRE: "survived"}, diffs={CRON_FIRE: other})
    assert result.equivalents() == {CRON_FIRE: "the same delay"}
    assert result.stale() == {}
