"""actorq against the best Python PostgreSQL queues, one after another in one run.

``make bench-peers`` (``python -m bench.peers``) installs pgqueuer and procrastinate into
``.venv-peers/`` (created when missing), then runs the same workloads on the same server,
each in a fresh process and a schema of its own (dropped afterwards):

* drain 10,000 no-op jobs already enqueued, one worker process, concurrency 10 and 50
  (actorq: that many Workers; pgqueuer: that dequeue batch; procrastinate: ``concurrency``);
* enqueue 1,000 jobs one call at a time, and 10,000 in batches of 1,000;
* with the workers idle, 500 jobs enqueued 5 ms apart: enqueue-to-start latency;
* the raw asyncpg ceiling on actorq's own table: batched ``SKIP LOCKED`` claim + complete
  (batches of 100 on one and two connections; also one job per statement), and the latency
  of a ``LISTEN``-woken raw consumer;
* actorq alone: the SQLite drain and the memory transport end to end, in-process.

Every configuration runs ``--rounds`` times (default 3), the rounds interleaved so that a
noisy neighbour hurts every contestant alike; the tables show medians and ratios, then each
goal of the issue as met or not. Options: ``--rounds N``, ``--quick`` (one round, fewer jobs),
``--dsn`` (default ``$ACTORQ_TEST_POSTGRES_DSN`` or the local test server).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO / ".venv-peers"
PEERS_PACKAGES = ["pgqueuer", "procrastinate", "asyncpg"]
DSN = os.environ.get("ACTORQ_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")

DRAIN_JOBS = 10_000
SINGLE_ENQUEUES = 1_000
LATENCY_JOBS = 500
STEADY_JOBS = 6_000  # 10 s of the steady load: 6 jobs every 10 ms
RUNTIME_JOBS = 20_000
# actorq's claim batch in the comparison rows: the former default (``actorq worker
# --batch-size``; the default is 100, and a claim only ever takes the free slots).
TUNED_BATCH = "10"


def peers_python() -> Path:
    """The peers environment's interpreter, creating the environment when missing."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEERS_VENV.name}/ ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    # Keep the environment out of version control, whatever the repository ignores.
    (PEERS_VENV / ".gitignore").write_text("*\n")
    probe = subprocess.run(
        [str(python), "-c", "import pgqueuer, procrastinate, asyncpg"], capture_output=True
    )
    if probe.returncode != 0:
        print(f"installing {', '.join(PEERS_PACKAGES)} into {PEERS_VENV.name}/ ...", flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", *PEERS_PACKAGES],
            check=True,
        )
    return python


def versions(python: Path) -> str:
    script = (
        "import importlib.metadata as m; "
        "print(', '.join(f'{p} {m.version(p)}' for p in ('pgqueuer', 'procrastinate')))"
    )
    peers = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    return peers.stdout.strip()


class Runner:
    """Runs one contestant's script and keeps every result by configuration."""

    def __init__(self, dsn: str, peers: Path) -> None:
        self.dsn = dsn
        self.interpreters = {
            "raw": Path(sys.executable),
            "actorq": Path(sys.executable),
            "pgqueuer": peers,
            "procrastinate": peers,
        }
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, str] = {}

    def run(self, key: str, system: str, mode: str, *args: str) -> None:
        script = REPO / "bench" / f"_peers_{system}.py"
        command = [str(self.interpreters[system]), str(script), mode, "--dsn", self.dsn, *args]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            self.errors[key] = "timed out"
            print(f"  {key}: timed out", flush=True)
            return
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            self.errors[key] = " / ".join(tail)
            print(f"  {key}: FAILED {self.errors[key]}", flush=True)
            return
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.results.setdefault(key, []).append(result)
        print(f"  {key}: {_brief(result)} ({time.perf_counter() - started:.1f}s)", flush=True)

    def median(self, key: str, field: str) -> float | None:
        runs = self.results.get(key)
        if not runs:
            return None
        return statistics.median(r[field] for r in runs)

    def latency(self, key: str, q: float) -> float | None:
        """Median over the rounds of the ``q``-th percentile latency, in milliseconds."""
        runs = self.results.get(key)
        if not runs:
            return None
        return statistics.median(_percentile(r["latencies"], q) * 1000 for r in runs)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def _brief(result: dict[str, Any]) -> str:
    if "latencies" in result:
        lat = result["latencies"]
        return f"p50 {_percentile(lat, 50) * 1000:.2f} ms, p99 {_percentile(lat, 99) * 1000:.2f} ms"
    return ", ".join(f"{k} {v:,.0f}" for k, v in result.items())


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many jobs each workload runs (``--quick`` runs fewer); the tables name them."""

    drain: int
    slow_drain: int  # procrastinate's drains
    latency: int
    runtime: int
    single: int
    steady: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        return cls(
            drain=DRAIN_JOBS // (5 if quick else 1),
            slow_drain=DRAIN_JOBS // (20 if quick else 1),
            latency=LATENCY_JOBS // (5 if quick else 1),
            runtime=RUNTIME_JOBS // (4 if quick else 1),
            single=SINGLE_ENQUEUES // (5 if quick else 1),
            steady=STEADY_JOBS // (5 if quick else 1),
        )


def plan(quick: bool) -> list[tuple[str, str, str, list[str]]]:
    """(key, system, mode, arguments) of every configuration, in run order."""
    sizes = Sizes.of(quick)
    drain = str(sizes.drain)
    slow_drain = str(sizes.slow_drain)
    latency = str(sizes.latency)
    runtime = str(sizes.runtime)
    single = str(sizes.single)
    steps: list[tuple[str, str, str, list[str]]] = [
        ("raw drain batch 100 x1", "raw", "drain", ["--jobs", drain, "--concurrency", "1"]),
        ("raw drain batch 100 x2", "raw", "drain", ["--jobs", drain, "--concurrency", "2"]),
        ("raw drain batch 1", "raw", "drain", ["--jobs", "2000", "--batch", "1"]),
    ]
    for concurrency in ("10", "50"):
        steps += [
            (
                f"actorq drain c{concurrency}",
                "actorq",
                "drain",
                ["--jobs", drain, "--concurrency", concurrency],
            ),
            (
                f"actorq drain c{concurrency} batch {TUNED_BATCH}",
                "actorq",
                "drain",
                ["--jobs", drain, "--concurrency", concurrency, "--batch", TUNED_BATCH],
            ),
            (
                f"pgqueuer drain c{concurrency}",
                "pgqueuer",
                "drain",
                ["--jobs", drain, "--concurrency", concurrency],
            ),
            (
                f"procrastinate drain c{concurrency}",
                "procrastinate",
                "drain",
                ["--jobs", slow_drain, "--concurrency", concurrency],
            ),
        ]
    for system in ("actorq", "pgqueuer", "procrastinate"):
        steps.append((f"{system} enqueue", system, "enqueue", ["--jobs", single]))
    for system in ("raw", "actorq", "pgqueuer", "procrastinate"):
        steps.append((f"{system} latency", system, "latency", ["--jobs", latency]))
    steady = str(sizes.steady)
    for system in ("raw", "actorq"):
        steps.append(
            (f"{system} steady", system, "steady", ["--jobs", steady, "--concurrency", "32"])
        )
    for backend in ("sqlite", "memory"):
        for concurrency in ("10", "50"):
            steps += [
                (
                    f"actorq {backend} c{concurrency}",
                    "actorq",
                    backend,
                    ["--jobs", runtime, "--concurrency", concurrency],
                ),
                (
                    f"actorq {backend} c{concurrency} batch {TUNED_BATCH}",
                    "actorq",
                    backend,
                    ["--jobs", runtime, "--concurrency", concurrency, "--batch", TUNED_BATCH],
                ),
            ]
    return steps


def report(r: Runner, header: str, sizes: Sizes) -> str:
    def rate(key: str, field: str = "jobs_per_s") -> str:
        value = r.median(key, field)
        return "-" if value is None else f"{value:,.0f}"

    def best(*keys: str) -> float | None:
        values = [v for k in keys if (v := r.median(k, "jobs_per_s")) is not None]
        return max(values) if values else None

    def ratio(a: float | None, b: float | None) -> str:
        return "-" if a is None or not b else f"{a / b:.2f}x"

    lines = [header, ""]
    tuned = f"batch {TUNED_BATCH}"
    lines.append(
        f"| jobs/s (median) | raw asyncpg | actorq (defaults) | actorq ({tuned}) | "
        "pgqueuer | procrastinate | best actorq / pgqueuer | best actorq / raw ceiling |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    ceiling = best("raw drain batch 100 x1", "raw drain batch 100 x2")
    for c in ("10", "50"):
        ours = best(f"actorq drain c{c}", f"actorq drain c{c} {tuned}")
        pgq = r.median(f"pgqueuer drain c{c}", "jobs_per_s")
        lines.append(
            f"| drain {sizes.drain:,}, concurrency {c} | {_fmt(ceiling)} (batched ceiling) | "
            f"{rate(f'actorq drain c{c}')} | {rate(f'actorq drain c{c} {tuned}')} | "
            f"{rate(f'pgqueuer drain c{c}')} | {rate(f'procrastinate drain c{c}')} | "
            f"{ratio(ours, pgq)} | {ratio(ours, ceiling)} |"
        )
    default_best = best("actorq drain c10", "actorq drain c50")
    tuned_best = best(f"actorq drain c10 {tuned}", f"actorq drain c50 {tuned}")
    ours_best = best(
        "actorq drain c10",
        "actorq drain c50",
        f"actorq drain c10 {tuned}",
        f"actorq drain c50 {tuned}",
    )
    pgq_best = best("pgqueuer drain c10", "pgqueuer drain c50")
    lines.append(
        f"| drain, best configuration | {_fmt(ceiling)} | {_fmt(default_best)} | {_fmt(tuned_best)} | "
        f"{_fmt(pgq_best)} | {_fmt(best('procrastinate drain c10', 'procrastinate drain c50'))} | "
        f"{ratio(ours_best, pgq_best)} | {ratio(ours_best, ceiling)} |"
    )
    lines.append(f"| raw one job per statement | {rate('raw drain batch 1')} | | | | | | |")
    for label, field in (
        (f"enqueue {sizes.single:,}, one call each", "single_per_s"),
        (f"enqueue {sizes.single * 10:,} in batches of 1,000", "batch_per_s"),
    ):
        ours = r.median("actorq enqueue", field)
        lines.append(
            f"| {label} | | {rate('actorq enqueue', field)} | | {rate('pgqueuer enqueue', field)} | "
            f"{rate('procrastinate enqueue', field)} | {ratio(ours, r.median('pgqueuer enqueue', field))} | |"
        )
    lines += [
        "",
        f"| enqueue-to-start latency, ms ({sizes.latency:,} jobs 5 ms apart, idle workers) "
        "| p50 | p95 | p99 |",
        "|---|---:|---:|---:|",
    ]
    for system in ("raw", "actorq", "pgqueuer", "procrastinate"):
        key = f"{system} latency"
        name = "raw asyncpg (LISTEN + SKIP LOCKED)" if system == "raw" else system
        lines.append(
            f"| {name} | {_ms(r.latency(key, 50))} | {_ms(r.latency(key, 95))} | {_ms(r.latency(key, 99))} |"
        )
    lines += [
        "",
        "| enqueue-to-start latency, ms, under a steady 600 jobs/s (6 every 10 ms), 32 slots "
        "| p50 | p95 | p99 |",
        "|---|---:|---:|---:|",
    ]
    for system, name in (
        ("raw", "raw asyncpg (LISTEN + SKIP LOCKED, claims of 32)"),
        ("actorq", "actorq"),
    ):
        key = f"{system} steady"
        lines.append(
            f"| {name} | {_ms(r.latency(key, 50))} | {_ms(r.latency(key, 95))} | {_ms(r.latency(key, 99))} |"
        )
    lines += [
        "",
        f"| in-process, {sizes.runtime:,} no-op jobs | defaults | {tuned} |",
        "|---|---:|---:|",
    ]
    for backend, name in (("sqlite", "SQLite drain"), ("memory", "memory transport, end to end")):
        for c in ("10", "50"):
            lines.append(
                f"| {name}, concurrency {c} | {rate(f'actorq {backend} c{c}')} | "
                f"{rate(f'actorq {backend} c{c} {tuned}')} |"
            )
    c10 = r.median("actorq drain c10", "jobs_per_s")
    c50 = r.median("actorq drain c50", "jobs_per_s")
    pgq50 = r.median("pgqueuer drain c50", "jobs_per_s")
    sqlite = r.median("actorq sqlite c50", "jobs_per_s")
    p50, p99 = r.latency("actorq latency", 50), r.latency("actorq latency", 99)
    steady99 = r.latency("actorq steady", 99)
    # The goals of the slot runtime, with the defaults: (what, measured, met).
    goals = [
        ("PostgreSQL drain, c = 50 >= c = 10", ratio(c50, c10), _met(c50, c10)),
        (
            "PostgreSQL drain at c = 50 >= 50% of the raw batched ceiling",
            ratio(c50, ceiling),
            _met(c50, ceiling and 0.5 * ceiling),
        ),
        (
            "PostgreSQL drain at c = 50 >= 1.5x pgqueuer (dequeue batch = concurrency)",
            ratio(c50, pgq50),
            _met(c50, pgq50 and 1.5 * pgq50),
        ),
        ("enqueue-to-start latency p50 <= 2.5 ms", _ms(p50), _met(2.5, p50)),
        ("enqueue-to-start latency p99 <= 8 ms", _ms(p99), _met(8.0, p99)),
        (
            "enqueue-to-start latency p99 <= 10 ms under a steady 600 jobs/s",
            _ms(steady99),
            _met(10.0, steady99),
        ),
        ("SQLite drain at c = 50 >= 25,000 jobs/s", _fmt(sqlite), _met(sqlite, 25_000)),
    ]
    lines += ["", "| goal | measured | met |", "|---|---:|---|"]
    lines += [f"| {g} | {m} | {ok} |" for g, m, ok in goals]
    if r.errors:
        lines += ["", "Failed configurations:"] + [f"- {k}: {e}" for k, e in r.errors.items()]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _met(value: float | None, bound: float | None) -> str:
    if value is None or bound is None:
        return "not measured"
    return "yes" if value >= bound else "no"


def main(argv: Sequence[str] | None = None, out: Callable[[str], object] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, fewer jobs")
    parser.add_argument("--dsn", default=DSN)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    peers = peers_python()
    runner = Runner(args.dsn, peers)
    steps = plan(args.quick)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    for number in range(rounds):
        print(f"round {number + 1} of {rounds}", flush=True)
        # Rotate the order each round: whoever runs while the machine is busy changes.
        shift = number * len(steps) // max(1, rounds)
        for key, system, mode, extra in steps[shift:] + steps[:shift]:
            runner.run(key, system, mode, *extra)
    header = (
        f"## bench-peers: {rounds} round(s), medians; {versions(peers)}; "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after; {time.perf_counter() - started:.0f}s"
    )
    out("\n" + report(runner, header, Sizes.of(args.quick)))


if __name__ == "__main__":
    main()
