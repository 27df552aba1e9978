"""The pytest plugin, as a user's project uses it: in its own pytest run, under anyio's plugin
and pytest-trio, with ``filterwarnings = error``; and the example shop's own tests."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PYTEST_INI = """\
[pytest]
addopts = --strict-markers --strict-config -p no:cacheprovider -p no:randomly
filterwarnings = error
"""

CONFTEST = """\
import pytest

from actors.jobs import App, JobContext, RetryLater

pytest_plugins = ["actors.testing.pytest_plugin"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
def actorq_app():
    app = App()

    @app.task("greet", max_attempts=3)
    async def greet(ctx: JobContext, payload: dict) -> RetryLater | None:
        if payload.get("fail") and ctx.attempt < 2:
            return RetryLater(delay=5.0, reason="not yet")
        await app.enqueue("log", {"greeted": payload["name"]})
        return None

    @app.task("log")
    async def log(ctx: JobContext, payload: dict) -> None:
        await ctx.clock.sleep(1.0)

    return app
"""

TESTS = """\
import pytest

from actors.testing import RunOutcome


async def _greet_and_drain(actorq_app, job_tester):
    await actorq_app.enqueue("greet", {"name": "ada", "fail": True})
    await job_tester.assert_enqueued("greet", payload={"name": "ada"})
    first = await job_tester.drain()
    assert [run.outcome for run in first] == [RunOutcome.RETRIED]
    later = await job_tester.run_for(10)
    assert later.counts() == {"succeeded": 2}
    await job_tester.assert_enqueued("log", payload={"greeted": "ada"}, state="succeeded")


@pytest.mark.anyio
async def test_under_anyio(actorq_app, job_tester, anyio_backend):
    await _greet_and_drain(actorq_app, job_tester)


@pytest.mark.trio
async def test_under_pytest_trio(actorq_app, job_tester):
    await _greet_and_drain(actorq_app, job_tester)


def test_simulated(actorq_app, actorq_sim):
    def make_job(rng, n):
        return actorq_app.request("greet", {"name": f"u{n}", "fail": rng.random() < 0.3})

    report = actorq_sim(make_job, seed=5, nodes=2, jobs=40, duration="5m")
    assert report.passed
    assert actorq_sim.reports == [report]
"""

BROKEN = '''\
from actors.core import VirtualClock
from transports import MemoryStore, MemoryTransport


class _Ahead:
    def __init__(self, clock):
        self._clock = clock

    def now(self):
        return self._clock.now() + 1e9


class EagerReaper(MemoryTransport):
    """Reap ignores expiry: it takes back live leases too (a bug the simulator must catch)."""

    def __init__(self, store: MemoryStore, clock: VirtualClock) -> None:
        super().__init__(store=store, clock=clock)
        self._ahead = MemoryTransport(store=store, clock=_Ahead(clock))

    async def reap(self, *, limit=1000):
        return await self._ahead.reap(limit=limit)


def test_sweep(actorq_app, actorq_sim):
    def make_job(rng, n):
        return actorq_app.request("greet", {"name": f"u{n}"})

    actorq_sim.sweep(
        make_job,
        range(1, 201),
        transport_factory=EagerReaper,
        nodes=3,
        jobs=150,
        duration="10m",
        rates="crash=5,pause=20,storage=10,partition=10,skew=10",
    )
'''


def _project(tmp_path: Path, **files: str) -> Path:
    for name, text in {"pytest.ini": PYTEST_INI, "conftest.py": CONFTEST, **files}.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=cwd,
    )


def _outcomes(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line ("3 passed, 1 failed in 0.5s")."""
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error|skipped)", last)}


def test_the_fixtures_work_under_anyio_and_pytest_trio(tmp_path: Path) -> None:
    """job_tester under anyio (asyncio and trio) and under pytest-trio, and actorq_sim, in a
    project with filterwarnings = error: 4 tests pass."""
    project = _project(tmp_path, **{"test_user.py": TESTS})
    result = _pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _outcomes(result.stdout) == {"passed": 4}


def test_a_broken_invariant_fails_with_a_replay_command(tmp_path: Path) -> None:
    """A simulation that breaks an invariant fails the test with the simulator's report and
    a pytest command; that command replays the same failure with the same seed."""
    project = _project(tmp_path, **{"test_broken.py": BROKEN})
    result = _pytest(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "VIOLATION of reap_only_expired" in result.stdout
    found = re.search(r"replay this test with: (pytest \S+ --actorq-seed=(\d+))", result.stdout)
    assert found, result.stdout
    command, seed = found.group(1), found.group(2)
    assert command == f"pytest test_broken.py::test_sweep --actorq-seed={seed}"
    replay = _pytest(project, *command.split()[1:])
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert _outcomes(replay.stdout) == {"failed": 1}
    assert f"(seed {seed})" in replay.stdout
    assert found.group(0) in replay.stdout


def test_a_project_without_its_app_is_told_what_to_define(tmp_path: Path) -> None:
    """Without an ``actorq_app`` fixture, a test using the kit's fixtures errors with what to
    define, and the other tests still run."""
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["actors.testing.pytest_plugin"]\n')
    (tmp_path / "test_no_app.py").write_text(
        "import pytest\n\n\n"
        "@pytest.mark.trio\n"
        "async def test_kit(job_tester):\n    pass\n\n\n"
        "def test_other():\n    pass\n"
    )
    result = _pytest(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "define an `actorq_app` fixture returning it" in result.stdout
    assert _outcomes(result.stdout) == {"passed": 1, "error": 1}


def test_the_shop_examples_own_tests_pass() -> None:
    """``pytest examples/shop`` (its own pytest.ini and conftest) runs its 12 tests green."""
    result = _pytest(ROOT, "-p", "no:randomly", "examples/shop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _outcomes(result.stdout) == {"passed": 12}


def test_the_shop_runs_as_a_program() -> None:
    """``python examples/shop/shop.py`` processes its orders on a real node and exits 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "shop" / "shop.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mailed c1@example.com: Receipt for order 1" in result.stdout
