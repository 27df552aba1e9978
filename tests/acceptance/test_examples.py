"""Every example in ``examples/`` runs end to end and exits 0, and so does ``actorq demo``.

The list comes from the folder, so a new example cannot be left out: each ``examples/*.py`` runs
here as a script, and a module in a subfolder must be listed in :data:`RUN_ELSEWHERE` with the
test module that runs it (the test checks that module really uses it). ``examples/shop/`` is an
application with its own test suite, run by its own tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "examples"
EXCLUDED = {"shop"}  # folders holding their own tests

#: Modules of multi-file examples, by path under examples/: the test module that runs them.
RUN_ELSEWHERE = {
    "fastapi_app/__init__.py": "tests/acceptance/test_recipes.py",
    "fastapi_app/app.py": "tests/acceptance/test_recipes.py",
    "fastapi_app/jobs.py": "tests/acceptance/test_recipes.py",
}

EXAMPLES = sorted(
    path.relative_to(FOLDER).as_posix()
    for path in FOLDER.rglob("*.py")
    if not EXCLUDED & set(path.relative_to(FOLDER).parts) and "__pycache__" not in path.parts
)
SCRIPTS = [name for name in EXAMPLES if name not in RUN_ELSEWHERE]

#: A log line about a job whose handler raised: the traceback after it is the handler's.
JOB_FAILURE = re.compile(r"^job \d+ \(\S+\) .*failed")


def unexpected_tracebacks(stderr: str) -> list[str]:
    """Tracebacks on stderr other than those logged for a handler that raised on purpose."""
    lines = stderr.splitlines()
    return [
        "\n".join(lines[max(0, i - 1) : i + 8])
        for i, line in enumerate(lines)
        if line.startswith("Traceback") and not (i and JOB_FAILURE.match(lines[i - 1]))
    ]


def test_unexpected_tracebacks_are_found() -> None:
    """The traceback check ignores a failed job's log, and nothing else."""
    logged = "job 3 (cache.warm) on queue 'cache' failed, attempt 1/1: KeyError\nTraceback (most"
    crashed = "Task exception was never retrieved\nTraceback (most recent call last):"
    assert unexpected_tracebacks(logged) == []
    assert unexpected_tracebacks(crashed)
    assert unexpected_tracebacks("Traceback (most recent call last):")


def test_there_are_examples() -> None:
    """At least the documented examples exist (a glob that finds nothing tests nothing)."""
    assert {"quickstart.py", "custom_topology.py", "maintenance_node.py"} <= set(SCRIPTS)
    assert set(RUN_ELSEWHERE) <= set(EXAMPLES), "RUN_ELSEWHERE names a file that is gone"


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(name: str, tmp_path: Path) -> None:
    """Run as a script, the example exits 0 within 90 s, with no traceback but a failed job's.

    It runs in a folder of its own, so a store file it makes (``sqlite:///x.db``) is fresh
    each time and never left in the checkout."""
    assert "/" not in name, f"examples/{name} is in a subfolder: list it in RUN_ELSEWHERE"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(FOLDER / name)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not unexpected_tracebacks(result.stderr), result.stderr


@pytest.mark.parametrize("name", sorted(RUN_ELSEWHERE))
def test_example_module_is_run_by_its_test(name: str) -> None:
    """A module of a multi-file example is imported or started by the test listed for it."""
    module = "examples." + name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    runner = (ROOT / RUN_ELSEWHERE[name]).read_text()
    assert module in runner, f"{RUN_ELSEWHERE[name]} never uses {module}"


def test_demo_runs() -> None:
    """``actorq demo`` processes its whole mix on SQLite and prints the summary."""
    result = subprocess.run(
        [sys.executable, "-m", "actors.cli", "demo", "--jobs", "300"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jobs succeeded" in result.stdout
    assert "poison payload" in result.stdout


def test_the_order_pipeline_resumes_without_charging_twice(tmp_path: Path) -> None:
    """The order pipeline's first attempt dies after the charge; the job resumes from its
    recorded steps, fans its e-mails out and back in, and the card was charged once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(FOLDER / "order_pipeline.py")],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the node running the order went away" in result.stderr  # the crash happened
    assert "charged 1 time(s), stock reserved 1 time(s)" in result.stdout
    assert "'emails': ['ada@example.com', 'ops@example.com']" in result.stdout
    assert "steps recorded: charge, reserve, emails" in result.stdout


def test_the_fan_out_fan_in_example_zips_what_its_members_returned(tmp_path: Path) -> None:
    """The album export fans out and back in: every thumbnail reaches the zip (one after a
    retry), a corrupt photo's zip runs anyway with it missing or is cancelled by it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(FOLDER / "fan_out_fan_in.py")],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the image service timed out" in result.stderr  # the retried member
    assert "'thumbs/summer/beach.jpg', 'thumbs/summer/dunes.jpg'" in result.stdout
    assert "'missing': 1" in result.stdout
    assert "strict: cancelled (parent " in result.stdout
    assert "album-strict: 1 cancelled, 1 dead, 1 succeeded" in result.stdout
