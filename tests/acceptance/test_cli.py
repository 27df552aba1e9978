"""The ``actorq`` command against a real SQLite file: enqueue, status, queue, jobs, migrate.

Bad input of every kind, on every backend, is in ``tests/edges``; these are the happy paths
and the contract of an error (one line, exit status, no traceback unless -v).
"""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

import transports
from actors.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def run(*args: str, stdin: str | None = None) -> str:
    result = invoke(*args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def app_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable App module: kind ``email.welcome`` on queue ``emails``."""
    name = f"cliapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import attrs
            from actors.jobs import App, JobContext

            app = App()

            @attrs.frozen
            class Welcome:
                user_id: int
                address: str

            @app.task("email.welcome", queue="emails", max_attempts=5, priority=3)
            async def welcome(ctx: JobContext, payload: Welcome) -> None:
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:app"
    sys.modules.pop(name, None)


def counts(url: str) -> dict[str, list[str]]:
    """The status table's rows by queue: the state columns as text."""
    rows: dict[str, list[str]] = {}
    for line in run("status", "-t", url).splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) >= 7 and cells[1].isdigit():
            rows[cells[0]] = cells[1:7]
    return rows


def test_enqueue_status_cancel(url: str) -> None:
    """Enqueued jobs show in status by state; cancel ends a waiting one."""
    out = run("enqueue", "email.send", '{"to": "a@b.c"}', "-t", url, "--count", "3")
    assert out.split() == ["job", "1", "job", "2", "job", "3"]
    assert "cancelled 1 job: 2" in run("jobs", "cancel", "2", "-t", url)
    # scheduled, available, running, succeeded, cancelled, dead
    assert counts(url)["default"] == ["0", "2", "0", "0", "1", "0"]


def test_enqueue_without_app_names_its_queue(url: str) -> None:
    """Without --app, enqueue says on stderr which queue it writes to, and --queue is used."""
    result = invoke("enqueue", "k", "-t", url, "-q", "mail")
    assert result.exit_code == 0, result.output
    assert "queue 'mail'" in result.stderr
    assert result.stdout.split() == ["job", "1"]
    assert "mail" in counts(url)


def test_enqueue_with_app_uses_the_tasks_queue(url: str, app_path: str) -> None:
    """--app puts the job on the task's queue (the README example lands where it runs)."""
    out = run(
        "enqueue", "--app", app_path, "email.welcome", '{"user_id": 7, "address": "a@b"}',
        "-t", url,
    )  # fmt: skip
    assert out.split() == ["job", "1"]
    rows = counts(url)
    assert rows["emails"][1] == "1"
    assert "default" not in rows

    async def stored() -> transports.Job:
        async with transports.connect(url, create=False) as transport:
            return await transport.get(1)

    job = anyio.run(stored)
    assert (job.queue, job.priority, job.max_attempts) == ("emails", 3, 5)
    assert job.payload == {"user_id": 7, "address": "a@b"}


def test_enqueue_with_app_refuses_unknown_kind_and_bad_payload(url: str, app_path: str) -> None:
    """An unknown kind lists the known ones; a payload of the wrong type is refused, exit 2."""
    unknown = invoke("enqueue", "--app", app_path, "email.welcom", "{}", "-t", url)
    assert unknown.exit_code == 2
    assert "known kinds: email.welcome" in unknown.stderr
    wrong = invoke("enqueue", "--app", app_path, "email.welcome", '{"user_id": "x"}', "-t", url)
    assert wrong.exit_code == 2
    assert "does not fit Welcome" in wrong.stderr
    assert not Path(url.removeprefix("sqlite:///")).exists()


def test_payload_from_file_and_stdin(url: str, tmp_path: Path) -> None:
    """A payload comes from @file, --payload-file or - (stdin); 2 MB fits with a raised limit."""
    big = tmp_path / "big.json"
    big.write_text('{"blob": "' + "x" * 2_000_000 + '"}')
    assert run("enqueue", "k", f"@{big}", "-t", url, "--max-payload-bytes", "3000000") == "job 1\n"
    assert run("enqueue", "k", "--payload-file", str(big), "-t", url, "--max-payload-bytes",
               "3000000") == "job 2\n"  # fmt: skip
    assert run("enqueue", "k", "-", "-t", url, stdin='{"from": "stdin"}') == "job 3\n"
    too_big = invoke("enqueue", "k", f"@{big}", "-t", url)
    assert too_big.exit_code == 2
    assert "--max-payload-bytes" in too_big.stderr


def test_dedupe_is_reported(url: str) -> None:
    """A second enqueue with the same dedupe key says it was folded."""
    run("enqueue", "k", "-t", url, "--dedupe-key", "x")
    assert "deduplicated" in run("enqueue", "k", "-t", url, "--dedupe-key", "x")


def test_queue_settings(url: str) -> None:
    """`actorq queue` pauses, resumes and sets concurrency."""
    assert "paused=True concurrency=3" in run(
        "queue", "mail", "-t", url, "--pause", "--concurrency", "3"
    )
    assert "paused=False" in run("queue", "mail", "-t", url, "--resume")
    assert "global_concurrency=4" in run("queue", "mail", "-t", url, "--global-concurrency", "4")
    assert "concurrency=3" in run("queue", "mail", "-t", url)  # a cap change keeps the rest
    shown = run("queue", "mail", "-t", url, "--no-global-concurrency")
    assert "global_concurrency=None" in shown


def test_migrate(url: str) -> None:
    """`actorq migrate` brings a new file to the current schema version."""
    assert "schema is at version" in run("migrate", "-t", url)


def test_read_only_commands_create_nothing(url: str) -> None:
    """status, queue (show) and cancel on a missing store say so and create no file."""
    path = Path(url.removeprefix("sqlite:///"))
    for args in (["status"], ["queue", "default"], ["jobs", "cancel", "1"], ["jobs", "list"]):
        result = invoke(*args, "-t", url)
        assert result.exit_code == 1
        assert (
            result.stderr
            == f'actorq: error: no store at {url} (run "actorq migrate -t {url}" first)\n'
        )
        assert not path.exists()


def test_an_error_is_one_line_and_v_shows_the_traceback(url: str) -> None:
    """An error is one line on stderr; -v after the subcommand adds the traceback."""
    assert "schema is at version" in run("migrate", "-t", url)
    plain = invoke("jobs", "show", "999", "-t", url)
    assert plain.exit_code == 1
    assert plain.stderr.splitlines() == [
        "actorq: error: no job has id 999 (check the job id; finished jobs are cleaned up)"
    ]
    verbose = invoke("jobs", "show", "999", "-t", url, "-v")
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.stderr
    assert verbose.stderr.splitlines()[-1] == plain.stderr.splitlines()[0]


def test_help_and_version() -> None:
    """-h works on the group and every command; --version prints the installed version."""
    assert "Usage: actorq" in run("-h")
    for command in main.commands:
        assert f"Usage: actorq {command}" in run(command, "-h")
    assert run("--version") == f"actorq {importlib.metadata.version('actorq')}\n"


def test_sim_runs_a_small_cluster() -> None:
    """`actorq sim` runs a faulty cluster from a seed and reports it passed, with its hash."""
    out = run("sim", "--seed", "1", "--nodes", "2", "--workers", "2", "--jobs", "50",
              "--duration", "2m")  # fmt: skip
    assert "result: PASSED" in out
    assert "sha256" in out


def test_usage_errors_name_the_command_to_ask_for_help() -> None:
    """A usage error points at the help of the command it is about, even from the parser."""
    for args, path in (
        (["status", "--loop"], "actorq status"),
        (["sim", "--seed"], "actorq sim"),
        (["frobnicate"], "actorq"),
        ([], "actorq"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, args
        if args:
            assert result.stderr.endswith(f'(see "{path} -h")\n'), result.stderr
        else:
            assert "Usage: actorq" in result.output


def test_worker_defaults_are_worker_configs() -> None:
    """Each worker option's default is the WorkerConfig field of the same name."""
    import attrs

    from actors.jobs import WorkerConfig

    fields = attrs.fields_dict(WorkerConfig)
    options = {p.name: p.default for p in main.commands["worker"].params if p.name in fields}
    assert set(options) >= {"lease_ttl", "batch_size", "poll_interval", "concurrency",
                            "reaper_interval", "leader_ttl", "drain_timeout",
                            "node_heartbeat", "stats_interval"}  # fmt: skip
    for name, default in options.items():
        assert default == fields[name].default, name


def test_the_readme_flow_against_a_running_worker(tmp_path: Path) -> None:
    """migrate, a worker, enqueue --app: the job lands on the task's queue and runs."""
    import os
    import signal
    import subprocess
    import time

    actorq = str(Path(sys.executable).with_name("actorq"))
    (tmp_path / "myjobs.py").write_text(
        textwrap.dedent(
            """
            import attrs
            from actors.jobs import App, JobContext

            app = App()

            @attrs.frozen
            class Welcome:
                user_id: int
                address: str

            @app.task("email.welcome", queue="emails", max_attempts=5)
            async def welcome(ctx: JobContext, payload: Welcome) -> None:
                pass
            """
        )
    )
    env = {**os.environ, "ACTORQ_TRANSPORT": "sqlite:///jobs.db"}

    def cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [actorq, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    assert cmd("migrate").returncode == 0
    worker = subprocess.Popen(
        [actorq, "worker", "myjobs:app", "--queue", "emails", "--poll-interval", "100ms"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        done = cmd("enqueue", "--app", "myjobs:app", "email.welcome",
                   '{"user_id": 7, "address": "ada@example.org"}')  # fmt: skip
        assert (done.returncode, done.stdout, done.stderr) == (0, "job 1\n", "")
        for _ in range(600):  # wait for the worker; the test's timeout bounds the wait
            status = cmd("status").stdout
            row = next((line for line in status.splitlines() if "emails" in line), "")
            cells = [c.strip() for c in row.strip("│ ").split("│")]
            if len(cells) > 4 and cells[4] == "1":
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the job did not run:\n{status}")
        env["COLUMNS"] = "250"
        nodes = cmd("nodes").stdout
        (row,) = [line for line in nodes.splitlines() if f":{worker.pid}:" in line]
        assert "emails" in row
        assert "alive" in row
    finally:
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "shutting down gracefully" in err
    assert f":{worker.pid}:" not in cmd("nodes").stdout  # it left the registry


def test_limits(url: str) -> None:
    """`actorq limits set` sets and removes a key's limit; `limits` and `status` show it."""
    assert run("limits", "set", "x", "--remove", "-t", url) == "x: no limit\n"
    assert run("limits", "set", "stripe", "--concurrency", "3", "-t", url) == (
        "stripe: concurrency=3\n"
    )
    assert run("limits", "set", "tenant:42", "--concurrency", "0", "-t", url) == (
        "tenant:42: concurrency=0\n"
    )
    shown = run("limits", "-t", url)
    assert "stripe" in shown
    assert "tenant:42" in shown
    assert "concurrency limits" in run("status", "-t", url)
    # A rate joins the concurrency limit; what is not named is kept, and removed one by one.
    assert run("limits", "set", "stripe", "--rate", "100", "--per", "1m", "-t", url) == (
        "stripe: concurrency=3 rate=100/60s\n"
    )
    assert "100/60s" in run("limits", "-t", url)
    assert run("limits", "set", "stripe", "--no-concurrency", "-t", url) == (
        "stripe: rate=100/60s\n"
    )
    assert run("limits", "set", "stripe", "--no-rate", "-t", url) == "stripe: no limit\n"
    assert run("limits", "set", "stripe", "--remove", "-t", url) == "stripe: no limit\n"
    assert run("limits", "set", "tenant:42", "--remove", "-t", url) == "tenant:42: no limit\n"
    assert run("limits", "-t", url) == "no concurrency limits are set\n"


def test_partitions(url: str) -> None:
    """`actorq partitions QUEUE` lists the queue's partitions with waiting jobs and pages
    through them; a queue without any says so."""

    async def seed() -> None:
        async with transports.connect(url) as transport:
            await transport.enqueue_many(
                [
                    transports.EnqueueRequest(kind="report", partition_key=f"tenant:{i % 3}")
                    for i in range(7)
                ]
            )
            await transport.claim("default", owner="w", limit=1, ttl=30.0)

    anyio.run(seed)
    shown = run("partitions", "default", "-t", url)
    for key in ("tenant:0", "tenant:1", "tenant:2"):
        assert key in shown
    assert "never" in shown  # tenant:1 and tenant:2 had no turn yet
    paged = run("partitions", "default", "--limit", "2", "-t", url)
    assert "tenant:2" not in paged
    assert "more may follow: --after tenant:1" in paged
    assert "tenant:2" in run("partitions", "default", "--after", "tenant:1", "-t", url)
    assert run("partitions", "other", "-t", url) == "no partition of 'other' has waiting jobs\n"


def test_signal_and_steps_in_jobs_show(url: str, tmp_path: Path) -> None:
    """`jobs show` lists a suspended job's steps and what it waits for; `actorq signal`
    wakes it, and says so when the key was signalled already."""
    from transports.lowlevel import FinalizeRequest, Suspend

    async def suspend() -> int:
        async with transports.connect(url) as transport:
            (result,) = await transport.enqueue_many([transports.EnqueueRequest(kind="order")])
            (lease,) = await transport.claim("default", owner="w", limit=1, ttl=30.0)
            await transport.record_step(
                lease.job_id, token=lease.token, name="charge", value={"id": "ch_1"}
            )
            outcome = Suspend(event_key="order:1:paid", run_at=lease.expires_at + 3600)
            await transport.finalize(
                [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
            )
            return result.job_id

    job_id = anyio.run(suspend)
    shown = run("jobs", "show", str(job_id), "-t", url)
    assert "suspended" in shown
    assert "order:1:paid" in shown
    assert "charge" in shown
    assert '{"id": "ch_1"}' in shown
    assert run("signal", "order:1:paid", '{"by": "ada"}', "-t", url) == (
        "order:1:paid: signalled; 1 waiting job woken\n"
    )
    assert "available" in run("jobs", "show", str(job_id), "-t", url)
    assert run("signal", "order:1:paid", "-t", url) == (
        "order:1:paid: already signalled (the first value stays); nothing changed\n"
    )
