"""Telemetry for actorq nodes: Prometheus metrics, OpenTelemetry traces, JSON logs.

Each part needs its own optional dependency, imported only when its names are first used:
the metrics ``prometheus-client`` (``pip install 'actorq[metrics]'``), the tracing
``opentelemetry-api`` (``'actorq[tracing]'``); the logs need nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import MetricsServerFailed, TelemetryError, TelemetryUnavailable
from ._logs import LOG_FORMATS, JsonFormatter, logging_config

if TYPE_CHECKING:
    from ._http import ASGIApp, metrics_asgi_app, serve_metrics
    from ._metrics import (
        DEFAULT_SAMPLE_INTERVAL,
        METRICS_LEADER,
        MeteredTransport,
        MetricsActor,
        MetricsMessage,
        NodeMetrics,
        Pending,
        Sample,
    )
    from ._tracing import (
        MESSAGING_SYSTEM,
        OpenTelemetryTracer,
        TracedTransport,
        context_headers,
        instrument_tracing,
        trace_headers,
    )

__all__ = [
    "DEFAULT_SAMPLE_INTERVAL",
    "LOG_FORMATS",
    "MESSAGING_SYSTEM",
    "METRICS_LEADER",
    "ASGIApp",
    "JsonFormatter",
    "MeteredTransport",
    "MetricsActor",
    "MetricsMessage",
    "MetricsServerFailed",
    "NodeMetrics",
    "OpenTelemetryTracer",
    "Pending",
    "Sample",
    "TelemetryError",
    "TelemetryUnavailable",
    "TracedTransport",
    "context_headers",
    "instrument_tracing",
    "logging_config",
    "metrics_asgi_app",
    "serve_metrics",
    "trace_headers",
]

#: Name -> (private module, the extra its dependency comes with).
_LAZY = {
    "ASGIApp": ("_http", "metrics"),
    "metrics_asgi_app": ("_http", "metrics"),
    "serve_metrics": ("_http", "metrics"),
    "DEFAULT_SAMPLE_INTERVAL": ("_metrics", "metrics"),
    "METRICS_LEADER": ("_metrics", "metrics"),
    "MeteredTransport": ("_metrics", "metrics"),
    "MetricsActor": ("_metrics", "metrics"),
    "MetricsMessage": ("_metrics", "metrics"),
    "NodeMetrics": ("_metrics", "metrics"),
    "Pending": ("_metrics", "metrics"),
    "Sample": ("_metrics", "metrics"),
    "MESSAGING_SYSTEM": ("_tracing", "tracing"),
    "OpenTelemetryTracer": ("_tracing", "tracing"),
    "TracedTransport": ("_tracing", "tracing"),
    "context_headers": ("_tracing", "tracing"),
    "instrument_tracing": ("_tracing", "tracing"),
    "trace_headers": ("_tracing", "tracing"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as exc:
        raise TelemetryUnavailable(
            f"{name} needs {exc.name or 'an optional dependency'}: pip install 'actorq[{extra}]'"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value
