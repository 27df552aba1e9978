"""The click types of ``actorq``'s options: durations, store URLs, queue names.

Each checks its value when the command line is parsed, before anything connects, and a bad
value is a usage error (exit status 2) naming the option. The duration grammar here is the one
every command speaks, ``actorq sim`` and its printed replay commands included.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import click

from transports import InvalidRequest, redact_url
from transports.lowlevel import check_event_key, check_label, validate_name

__all__ = [
    "URL_META",
    "Duration",
    "KindName",
    "Label",
    "LimitKey",
    "QueueName",
    "StoreURL",
    "format_duration",
    "parse_duration",
]

#: ``ctx.meta`` key under which :class:`StoreURL` leaves the URL a command uses, so that an
#: error message can name it (password redacted).
URL_META = "actorq.url"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)?")


def parse_duration(text: str) -> float:
    """Seconds in ``"6h"``, ``"90"``, ``"15m"``, ``"1h30m"``, ``"2.5s"`` or ``"500ms"``.

    Raises:
        ValueError: the text is not a duration.
    """
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    while pos < len(compact):
        match = _PART.match(compact, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: use e.g. 90, 90s, 15m, 6h, 1h30m")
        total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    """The shortest text ``parse_duration`` reads back as exactly ``seconds``."""
    for unit in ("d", "h", "m"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds!r}s"


class Duration(click.ParamType[float]):
    """Seconds as ``90``, ``90s``, ``1.5``, ``500ms``, ``15m``, ``6h``, ``1d`` or ``1h30m``.

    Negative, non-finite and exponent forms do not parse. ``minimum`` bounds the value, and
    ``open`` excludes the bound itself (a TTL of 0 is refused, a delay of 0 is not).
    """

    name = "duration"

    def __init__(
        self, minimum: float = 0.0, *, open: bool = True, maximum: float | None = None
    ) -> None:
        self.minimum = minimum
        self.open = open
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite duration", param, ctx)
        if seconds < self.minimum or (self.open and seconds == self.minimum):
            bound = "more than" if self.open else "at least"
            self.fail(f"{value} is not a duration {bound} {self.minimum:g} seconds", param, ctx)
        if self.maximum is not None and seconds > self.maximum:
            self.fail(f"{value} is longer than {self.maximum:g} seconds", param, ctx)
        return seconds


class StoreURL(click.ParamType[str]):
    """A store URL; ``memory://`` only where a store inside this one process makes sense.

    The URL is left in ``ctx.meta[URL_META]`` for error messages. The rest of it (scheme,
    options, port) is checked by ``transports.connect``, the one place that knows.
    """

    name = "url"

    def __init__(self, *, memory_refused: str | None = None) -> None:
        self.memory_refused = memory_refused  # why memory:// is useless here; None: allowed

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        url = str(value)
        if ctx is not None:
            ctx.meta[URL_META] = url
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError as exc:
            self.fail(f"{redact_url(url)!r} is not a URL: {exc}", param, ctx)
        if scheme == "memory" and self.memory_refused is not None:
            self.fail(
                f"memory:// is a store inside this one process: {self.memory_refused}; "
                "use sqlite:///file.db or postgresql://user@host/db",
                param,
                ctx,
            )
        return url


class _Checked(click.ParamType[str]):
    """Text checked by one of the transports' own rules (which raise ``InvalidRequest``), so
    the command line refuses exactly what the store would."""

    def __init__(self, name: str, check: Callable[[str], str]) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self._check(str(value))
        except InvalidRequest as exc:
            self.fail(str(exc), param, ctx)


def QueueName() -> click.ParamType[str]:
    """A queue name, checked by the transports' one naming rule."""
    return _Checked("queue", validate_name)


def KindName() -> click.ParamType[str]:
    """A job kind, checked by the transports' one naming rule."""
    return _Checked("kind", lambda text: validate_name(text, "kind"))


def LimitKey() -> click.ParamType[str]:
    """A concurrency key, checked by the transports' one label rule."""
    return _Checked("key", lambda text: check_label(text, "key"))


def EventKey() -> click.ParamType[str]:
    """An event key (``actorq signal``), checked by the transports' own rule."""
    return _Checked("key", check_event_key)


def Label() -> click.ParamType[str]:
    """Text stored or matched as a label: 1-255 characters, no control characters."""
    return _Checked("text", lambda text: check_label(text, "the text"))
