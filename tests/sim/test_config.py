"""SimConfig, its option parsers, and the replay command that rebuilds it."""

from __future__ import annotations

import ast
import shlex

import pytest

from actors.sim import ALL_FAULTS, FaultKind, FaultRates, SimConfig
from actors.sim.lowlevel import (
    config_from_argv,
    config_from_options,
    format_duration,
    parse_duration,
    parse_faults,
    parse_rates,
    parse_seeds,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("2.5s", 2.5),
        ("500ms", 0.5),
        (" 1h 30m ", 5400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations read as seconds, with units ms, s, m, h, d and combinations."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "6x", "-1s", "1h-", "abc"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    """Text that is not a duration raises ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.5, 1.0, 7.0, 60.0, 90.0, 3600.0, 5400.0, 86400.0, 2.25])
def test_format_duration_round_trips(seconds: float) -> None:
    """format_duration's text parses back to exactly the same number of seconds."""
    assert parse_duration(format_duration(seconds)) == seconds


def test_parse_seeds() -> None:
    """Seeds read as single numbers, inclusive ranges and comma-separated mixtures."""
    assert parse_seeds("7") == [7]
    assert parse_seeds("1..1000") == list(range(1, 1001))
    assert parse_seeds("1,5,9..12") == [1, 5, 9, 10, 11, 12]
    for bad in ("", "x", "5..1", "1..x"):
        with pytest.raises(ValueError, match="seed"):
            parse_seeds(bad)


def test_parse_faults() -> None:
    """Fault lists read as kinds, 'all' or 'none'; unknown kinds are refused."""
    assert parse_faults("crash,pause") == {FaultKind.CRASH, FaultKind.PAUSE}
    assert parse_faults("all") == ALL_FAULTS
    assert parse_faults("none") == frozenset()
    assert parse_faults("crash,pause,storage,partition,skew") == ALL_FAULTS - {FaultKind.HANG}
    with pytest.raises(ValueError, match="unknown fault"):
        parse_faults("crash,meteor")


def test_parse_rates() -> None:
    """Rates override the named kinds and keep the others."""
    rates = parse_rates("crash=5,hang=0.5")
    assert rates == FaultRates(crash=5.0, hang=0.5)
    with pytest.raises(ValueError, match="rate"):
        parse_rates("meteor=1")
    with pytest.raises(ValueError, match="rate"):
        parse_rates("crash")


def test_config_validates() -> None:
    """Impossible configs are refused at construction."""
    for bad in ({"nodes": 0}, {"workers": 0}, {"duration": 0.0}, {"backend": "curio"}):
        with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
            SimConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [
        SimConfig(),
        SimConfig(seed=7, nodes=5, workers=20, jobs=10_000, duration=21600.0),
        SimConfig(
            seed=3,
            faults=parse_faults("crash,pause"),
            rates=FaultRates(crash=9.0),
            lease_ttl=10.0,
            reaper_interval=0.5,
            poll_interval=2.0,
            tail=600.0,
            cron=None,
            backend="trio",
            keep_faults=(4, 1, 9),
        ),
        SimConfig(faults=frozenset(), keep_faults=()),
    ],
)
def test_replay_command_rebuilds_the_config(config: SimConfig) -> None:
    """The printed `actorq sim` command parses back into exactly the same config."""
    argv = shlex.split(config.command())
    assert argv[:2] == ["actorq", "sim"]
    assert config_from_argv(argv[2:]) == config


def test_python_call_names_every_option() -> None:
    """The replay call for a user's App carries the same options as keyword arguments."""
    config = SimConfig(seed=7, lease_ttl=10.0, faults=parse_faults("crash,pause"))
    assert config.call() == (
        "simulate_app(app, make_job, seed=7, nodes=3, workers=4, jobs=200, duration='10m', "
        "faults='crash,pause', lease_ttl='10s')"
    )


@pytest.mark.parametrize(
    "config",
    [
        SimConfig(seed=3, operators=True),
        SimConfig(seed=4, steps=True, key_limit=2),
        SimConfig(seed=5, operators=True, steps=True, key_rate=(5, 60.0), lease_ttl=2.0),
        SimConfig(seed=6, workflows=True, operators=True),
        SimConfig(seed=6, partitions=True, steps=True),
    ],
)
def test_python_call_rebuilds_the_config_flags_included(config: SimConfig) -> None:
    """The replay call's keyword arguments, flags such as ``--operators`` among them, build
    exactly the same config again."""
    call = ast.parse(config.call()).body[0].value  # type: ignore[attr-defined]
    options = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    assert config_from_options(**options) == config
