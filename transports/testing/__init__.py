"""Testing helpers for transports: the conformance suite and a hand-driven clock.

Third-party backends reuse them: subclass :class:`TransportConformance` in a test module and
provide its ``transport_factory`` fixture. It includes :class:`TransportEdges`, the table of bad
values every operation must refuse with its exact error, writing nothing, and
:class:`TransportOperators`, the error history, filters and operator actions,
:class:`TransportResults`, results stored under the fence and ``wait_for_jobs``, and
:class:`TransportSteps`, durable steps, suspension and signals. :class:`SQLMutant`
rewrites one named query while a test runs, to prove a suite notices a missing fencing clause.
"""

from ._clock import ManualClock
from ._conformance import TransportConformance, TransportFactory
from ._dependencies import TransportDependencies
from ._edges import TransportEdges
from ._fair import TransportFairShare
from ._fine_print import TransportFinePrint
from ._flow import TransportFlowControl, TransportRateLimits
from ._observing import TransportObserving
from ._operators import TransportOperators
from ._results import TransportResults
from ._sql_mutants import SQLMutant, rewrite_query
from ._steps import TransportSteps

__all__ = [
    "ManualClock",
    "SQLMutant",
    "TransportConformance",
    "TransportDependencies",
    "TransportEdges",
    "TransportFactory",
    "TransportFairShare",
    "TransportFinePrint",
    "TransportFlowControl",
    "TransportObserving",
    "TransportOperators",
    "TransportRateLimits",
    "TransportResults",
    "TransportSteps",
    "rewrite_query",
]
