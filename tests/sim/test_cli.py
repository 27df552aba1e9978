"""``actorq sim`` as the command runs it: one seed, a sweep, a trace file, a shrink."""

from __future__ import annotations

from pathlib import Path

from actors.sim.lowlevel import run_cli

from ._broken import eager_reaper

SMALL = ["--nodes", "2", "--workers", "2", "--jobs", "30", "--duration", "3m"]


def test_one_seed_passes_and_writes_its_trace(tmp_path: Path) -> None:
    """A passing run prints its report, writes the canonical trace and exits 0."""
    out: list[str] = []
    trace = tmp_path / "trace.txt"
    assert run_cli(["--seed", "3", *SMALL, "--trace", str(trace)], print_fn=out.append) == 0
    text = "\n".join(out)
    assert "result: PASSED" in text
    lines = trace.read_text().splitlines()
    assert lines[0].split()[2] == "NodeStarted"
    assert f"{len(lines)} events" in text


def test_a_sweep_prints_a_summary() -> None:
    """--seeds runs every seed and prints the sweep summary."""
    out: list[str] = []
    assert run_cli(["--seeds", "1..3", *SMALL, "--backend", "trio"], print_fn=out.append) == 0
    assert out[-1].startswith("actorq sim sweep: 3/3 seeds passed")


def test_bad_options_exit_2() -> None:
    """Options that do not make a config exit with status 2, saying why."""
    out: list[str] = []
    assert run_cli(["--nodes", "0"], print_fn=out.append) == 2
    assert "nodes" in out[0]
    assert run_cli(["--duration", "soon"], print_fn=out.append) == 2


def test_a_violation_exits_1_and_shrinks() -> None:
    """A failing run exits 1; --shrink prints a smaller fault plan that still fails."""
    out: list[str] = []
    status = run_cli(
        ["--seed", "1", *SMALL, "--faults", "crash,pause", "--shrink"],
        print_fn=out.append,
        transport_factory=eager_reaper,
    )
    assert status == 1
    text = "\n".join(out)
    assert "VIOLATION of reap_only_expired" in text
    assert "shrunk to 0 fault(s): actorq sim --seed 1 " in text
    assert "--keep-faults none" in text


def test_bad_options_are_one_line_from_actorq() -> None:
    """Through `actorq sim`, a bad option is one usage line on stderr with status 2."""
    from click.testing import CliRunner

    from actors.cli import main

    for args, message in (
        (["--duration", "soon"], "invalid duration 'soon'"),
        (["--seeds", "9..1"], "runs backwards"),
        (["--faults", "crash,lava"], "unknown fault"),
        (["--rates", "crash"], "invalid rate"),
        (["--lease-ttl", "0"], "more than 0 seconds"),
    ):
        result = CliRunner().invoke(main, ["sim", *args])
        assert result.exit_code == 2, args
        assert result.stderr.startswith("actorq: error: invalid value for '--")
        assert message in result.stderr
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.output


def test_help_is_clicks() -> None:
    """`actorq sim -h` is click help listing the options with their defaults."""
    from click.testing import CliRunner

    from actors.cli import main

    result = CliRunner().invoke(main, ["sim", "-h"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: actorq sim [OPTIONS]")
    assert "--seeds" in result.stdout
    assert "[default: 10m]" in result.stdout
