"""The telemetry's own errors.

::

    actors.jobs.JobError
    └── TelemetryError              telemetry could not be set up
        ├── TelemetryUnavailable    its optional dependency (an extra) is not installed
        └── MetricsServerFailed     the /metrics HTTP server could not listen
"""

from __future__ import annotations

from ..jobs import JobError

__all__ = ["MetricsServerFailed", "TelemetryError", "TelemetryUnavailable"]


class TelemetryError(JobError):
    """Telemetry could not be set up."""


class TelemetryUnavailable(TelemetryError, ImportError):
    """An optional dependency is missing: ``pip install 'actorq[metrics]'`` (or
    ``[tracing]``)."""


class MetricsServerFailed(TelemetryError):
    """The /metrics HTTP server could not listen on its address (in use, not permitted)."""
