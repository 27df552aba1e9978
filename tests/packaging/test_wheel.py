"""The package as a user gets it: an sdist and a wheel built from it, installed into a fresh venv
outside the repository, and run from there.

An editable install hides packaging mistakes (a file missing from the wheel, a file added twice,
tests shipped as a package): this test builds exactly what an upload would carry and uses nothing
of the checkout but the example it copies out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist, and a wheel built from that sdist (so the sdist is proven complete too)."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv, outside the repository, with only the built wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", venv, cwd=venv)
    wheel = next(dist.glob("actorq-*.whl"))
    _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=venv)
    return venv


def _clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("ACTORQ_TRANSPORT", None)
    return env


def test_the_sdist_carries_the_sources_and_no_build_leftovers(dist: Path) -> None:
    """The sdist holds both packages, the SQL files and the README, and nothing from a venv."""
    sdist = next(dist.glob("actorq-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    assert "pyproject.toml" in names
    assert "README.md" in names
    assert "transports/sql/postgres/schema.sql" in names
    assert "actors/jobs/_app.py" in names
    assert not [n for n in names if n.startswith((".venv", "tests/", "property_tests/"))]


def test_the_wheel_holds_sql_and_types_and_no_tests(dist: Path) -> None:
    """Every SQL file once, both ``py.typed`` markers, the entry point; no test package."""
    wheel = next(dist.glob("actorq-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert len(names) == len(set(names)), "a file is in the wheel twice"
    for dialect in ("sqlite", "postgres"):
        folder = ROOT / "transports" / "sql" / dialect
        for sql in folder.rglob("*.sql"):
            assert sql.relative_to(ROOT).as_posix() in names
    assert "actors/py.typed" in names
    assert "transports/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "property_tests/", "examples/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "actorq = actors.cli:main" in archive.read(entry_points).decode()


def test_the_wheel_ships_the_dashboard_templates_and_static_files(dist: Path) -> None:
    """Every template and vendored script (with its licence) of the dashboard, and its extra."""
    wheel = next(dist.glob("actorq-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    folder = ROOT / "actors" / "dashboard"
    shipped = [
        p for sub in ("templates", "static") for p in (folder / sub).rglob("*") if p.is_file()
    ]
    assert len(shipped) >= 12
    for path in shipped:
        assert path.relative_to(ROOT).as_posix() in names
    assert "actors/dashboard/static/htmx.min.js" in names
    assert "actors/dashboard/static/licenses/uPlot-LICENSE.txt" in names
    assert "Provides-Extra: dashboard" in metadata.decode()


def test_the_dashboard_without_its_extra_says_what_to_install(
    installed: Path, tmp_path: Path
) -> None:
    """The bare wheel has no Starlette: ``actorq dashboard`` is one line naming the extra."""
    done = subprocess.run(
        [installed / "bin" / "actorq", "dashboard", "--read-only"],
        cwd=tmp_path,
        env=_clean_env(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("actorq: error: the dashboard needs "), line
    assert line.endswith(" (pip install 'actorq[dashboard]')"), line


def test_the_installed_command_answers_and_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    """``actorq --version`` and ``actorq demo`` work from the installed wheel alone."""
    env = _clean_env(installed)
    version = _run(installed / "bin" / "actorq", "--version", cwd=tmp_path, env=env)
    assert "0.1.0" in version
    out = _run(installed / "bin" / "actorq", "demo", cwd=tmp_path, env=env)
    assert "jobs succeeded" in out


def _run_quickstart(installed: Path, tmp_path: Path, *args: str) -> str:
    # The example is copied out, so nothing of the checkout is importable from its folder.
    example = tmp_path / "quickstart.py"
    shutil.copy(ROOT / "examples" / "quickstart.py", example)
    return _run(
        installed / "bin" / "python", example, *args, cwd=tmp_path, env=_clean_env(installed)
    )


def test_an_example_runs_on_sqlite_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """The quickstart example runs against embedded SQLite using only the installed package."""
    out = _run_quickstart(installed, tmp_path)
    assert "job 1: succeeded" in out
    assert "job 3: dead" in out


@pytest.mark.postgres
def test_an_example_runs_on_postgres_from_the_wheel(
    installed: Path, tmp_path: Path, postgres_dsn: str
) -> None:
    """The quickstart example runs against the real PostgreSQL server, in a schema of its own."""
    schema = f"wheel_{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in postgres_dsn else "?"
    try:
        out = _run_quickstart(installed, tmp_path, f"{postgres_dsn}{separator}schema={schema}")
        assert "job 1: succeeded" in out
        assert "job 3: dead" in out
    finally:
        _run(
            installed / "bin" / "python",
            "-c",
            "import asyncio, asyncpg, sys\n"
            "async def main():\n"
            "    conn = await asyncpg.connect(sys.argv[1])\n"
            "    await conn.execute(f'DROP SCHEMA IF EXISTS \"{sys.argv[2]}\" CASCADE')\n"
            "    await conn.close()\n"
            "asyncio.run(main())\n",
            postgres_dsn,
            schema,
            cwd=tmp_path,
        )
