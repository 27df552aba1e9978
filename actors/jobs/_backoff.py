"""How long to wait before a failed job runs again.

Every strategy draws randomness from the ``random.Random`` it is given (the node's seeded RNG),
never from the global one, so simulation replays exactly.
"""

from __future__ import annotations

from random import Random  # allowed: type of the injected, seeded RNG only
from typing import Protocol

import attrs

from ._config import number

__all__ = ["Backoff", "Constant", "Exponential", "Linear"]


class Backoff(Protocol):
    """A retry delay policy."""

    def delay(self, attempt: int, rng: Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first run)."""
        ...


def _non_negative(inst: object, attr: attrs.Attribute[float], value: float) -> None:
    number(f"{type(inst).__name__}.{attr.name}", value, strict=False)  # raises ConfigInvalid


@attrs.frozen(kw_only=True)
class Constant:
    """The same delay every time."""

    seconds: float = attrs.field(default=5.0, validator=_non_negative)

    def delay(self, attempt: int, rng: Random) -> float:
        return self.seconds


@attrs.frozen(kw_only=True)
class Linear:
    """``base + step * (attempt - 1)``, capped."""

    base: float = attrs.field(default=1.0, validator=_non_negative)
    step: float = attrs.field(default=5.0, validator=_non_negative)
    cap: float = attrs.field(default=3600.0, validator=_non_negative)

    def delay(self, attempt: int, rng: Random) -> float:
        return min(self.cap, self.base + self.step * max(0, attempt - 1))


@attrs.frozen(kw_only=True)
class Exponential:
    """Exponential growth with full jitter: uniform in ``[0, min(cap, base * factor**(n-1))]``.

    Full jitter spreads a burst of failures (a database blink) so the retries do not return
    in lock step.
    """

    base: float = attrs.field(default=1.0, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=_non_negative)
    cap: float = attrs.field(default=3600.0, validator=_non_negative)
    jitter: bool = True

    def delay(self, attempt: int, rng: Random) -> float:
        exponent = min(max(0, attempt - 1), 64)  # past 2**64 the cap has long won
        ceiling = min(self.cap, self.base * self.factor**exponent)
        return rng.uniform(0.0, ceiling) if self.jitter else ceiling
