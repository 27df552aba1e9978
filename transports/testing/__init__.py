"""Testing helpers for transports: the conformance suite and a hand-driven clock.

Third-party backends reuse them: subclass :class:`TransportConformance` in a test module and
provide its ``transport_factory`` fixture.
"""

from ._clock import ManualClock
from ._conformance import TransportConformance, TransportFactory

__all__ = ["ManualClock", "TransportConformance", "TransportFactory"]
