"""``make mutation``: a mutation score for the lease core and the runtime, with its survivors.

mutmut changes the code one small edit at a time (a comparison flipped, a constant nudged, a
call dropped) and runs the tests that reach the changed function; a mutant the tests do not
notice *survives*. Each group below mutates a few modules and runs only the tests written for
them, so the whole run fits in well under an hour on two cores. Every group runs in a copy of
the tree under ``.mutation/<group>`` (kept afterwards: ``cd .mutation/<group> && mutmut
browse`` to read the survivors), never in the working tree.

The report prints, per group and per family of code (claim, renew, finalize, reap, dedupe,
leader, cron, other), the mutants killed (tests failed or timed out) over those that ran,
then every survivor with its diff.

Usage: ``python -m property_tests.mutation [GROUP ...] [--children N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"


@dataclass(frozen=True)
class Group:
    """Modules mutated together, and the tests that judge them."""

    name: str
    sources: tuple[str, ...]
    tests: tuple[str, ...]
    # Extra pytest arguments for every run of this group (a backend filter, say).
    args: tuple[str, ...] = ()


GROUPS = (
    Group(
        "memory",
        ("transports/_memory.py",),
        ("tests/transports/test_memory.py",),
    ),
    Group(
        "sqlite",
        ("transports/_sqlite.py",),
        ("tests/transports/test_sqlite.py",),
    ),
    Group(
        "postgres",
        ("transports/_postgres.py",),
        ("tests/transports/test_postgres.py",),
    ),
    Group(
        "runtime",
        (
            "actors/jobs/_claimer.py",
            "actors/jobs/_leases.py",
            "actors/jobs/_decide.py",
            "actors/jobs/_execute.py",
            "actors/jobs/_worker.py",
            "actors/jobs/_reaper.py",
            "actors/jobs/_cron.py",
            "actors/jobs/_schedule.py",
            "actors/jobs/_periodic.py",
        ),
        (
            "tests/jobs/test_decide.py",
            "tests/jobs/test_leases.py",
            "tests/jobs/test_outcomes.py",
            "tests/jobs/test_reaper.py",
            "tests/jobs/test_cron.py",
            "tests/jobs/test_shutdown.py",
            "tests/jobs/test_supervisor.py",
        ),
        # The runtime's logic does not depend on the backend: judge it on memory alone.
        args=("-k", "not sqlite and not postgres"),
    ),
)

#: Family of a mutated function, by the first pattern its name matches.
FAMILIES = (
    ("claim", re.compile(r"claim")),
    ("renew", re.compile(r"renew|heartbeat|extend|beat")),
    ("finalize", re.compile(r"finali[sz]e|outcome|flush|announce|failure|release")),
    ("reap", re.compile(r"reap|expire")),
    ("dedupe", re.compile(r"dedupe|enqueue|fold")),
    ("leader", re.compile(r"leader")),
    ("cron", re.compile(r"cron|schedule|tick|fire|cursor")),
)

_NAME = re.compile(r"^(?P<module>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ)?_?(?P<func>\w+?)__mutmut_\d+$")


def family_of(mutant: str) -> str:
    """The family of code a mutant belongs to, from the function it changes."""
    match = _NAME.match(mutant)
    name = (match.group("func") if match else mutant).lower()
    for family, pattern in FAMILIES:
        if pattern.search(name):
            return family
    return "other"


@dataclass
class Result:
    """What one group's run found."""

    group: str
    statuses: dict[str, str] = field(default_factory=dict)  # mutant -> status
    seconds: float = 0.0
    diffs: dict[str, str] = field(default_factory=dict)  # survivor -> diff

    def counts(self, family: str | None = None) -> Counter[str]:
        return Counter(
            s for m, s in self.statuses.items() if family is None or family_of(m) == family
        )


def _copy_tree(dest: Path) -> None:
    """The tracked and new files of the working tree (not what .gitignore leaves out)."""
    if dest.exists():
        shutil.rmtree(dest)
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = ROOT / rel
        if not source.is_file():
            continue  # deleted but not yet committed
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _configure(dest: Path, group: Group) -> None:
    selection = [*group.tests, *group.args]
    config = (
        "\n[tool.mutmut]\n"
        f"source_paths = {json.dumps(list(group.sources))}\n"
        'also_copy = ["actors", "transports", "tests", "property_tests", "examples"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(selection)}\n"
        'pytest_add_cli_args = ["-p", "no:randomly", "-q", "-x"]\n'
        "mutate_only_covered_lines = true\n"
    )
    with (dest / "pyproject.toml").open("a") as f:
        f.write(config)


def _mutmut(dest: Path, *args: str, check: bool = True) -> str:
    mutmut = Path(sys.executable).with_name("mutmut")
    done = subprocess.run(
        [str(mutmut), *args], cwd=dest, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise SystemExit(f"mutmut {' '.join(args)} failed in {dest}:\n{output}")
    return done.stdout


def run_group(group: Group, children: int) -> Result:
    """Mutate one group in its own copy of the tree and collect every mutant's status."""
    dest = WORK / group.name
    _copy_tree(dest)
    _configure(dest, group)
    started = time.monotonic()
    _mutmut(dest, "run", "--max-children", str(children))
    result = Result(group.name, seconds=time.monotonic() - started)
    for line in _mutmut(dest, "results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            result.statuses[name] = status
    for name, status in result.statuses.items():
        if status == "survived":
            result.diffs[name] = _mutmut(dest, "show", name, check=False)
    return result


def _killed(counts: Counter[str]) -> tuple[int, int]:
    killed = counts["killed"] + counts["timeout"]
    ran = killed + counts["survived"] + counts["suspicious"]
    return killed, ran


def render(results: Sequence[Result]) -> str:
    """The score table, then every survivor with its diff."""
    lines = ["mutation score (killed / ran; timeouts count as killed)", ""]
    families = [f for f, _ in FAMILIES] + ["other"]
    header = f"{'group':<10}" + "".join(f"{f:>11}" for f in families) + f"{'all':>13}  time"
    lines.append(header)
    total: Counter[str] = Counter()
    for result in results:
        row = f"{result.group:<10}"
        for family in families:
            killed, ran = _killed(result.counts(family))
            row += f"{f'{killed}/{ran}':>11}" if ran else f"{'-':>11}"
        counts = result.counts()
        total += counts
        killed, ran = _killed(counts)
        score = f"{100 * killed / ran:.1f}%" if ran else "-"
        row += f"{score:>13}  {result.seconds / 60:.1f} min"
        lines.append(row)
    killed, ran = _killed(total)
    if ran:
        lines += ["", f"overall: {killed}/{ran} killed = {100 * killed / ran:.1f}%"]
    other = {k: v for k, v in total.items() if k not in ("killed", "timeout", "survived")}
    if other:
        lines.append("not judged: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items())))
    for result in results:
        for name, diff in sorted(result.diffs.items()):
            lines += ["", f"--- survived [{result.group}/{family_of(name)}] {name}", diff.rstrip()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m property_tests.mutation")
    names = [g.name for g in GROUPS]
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"any of {', '.join(names)}")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args(argv)
    unknown = sorted(set(options.groups) - set(names))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    chosen = [g for g in GROUPS if not options.groups or g.name in options.groups]
    results = []
    for group in chosen:
        print(f"mutating {group.name}: {', '.join(group.sources)}", flush=True)
        results.append(run_group(group, options.children))
    report = render(results)
    WORK.mkdir(exist_ok=True)
    (WORK / "report.txt").write_text(report + "\n")
    print(report)
    print(f"\n(report kept in {WORK / 'report.txt'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
