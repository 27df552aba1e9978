"""Structured logs: one JSON object a line, naming the job, its node and its trace.

The runtime's job lines (a failed attempt, a dead job, a crashed Worker) and a handler's own
``ctx.log`` lines carry the job's fields as ``extra=`` attributes; :class:`JsonFormatter`
writes them under stable keys, with the node (from the record, else the node running the
current task, else the formatter's ``node``) and the trace id (from the current OpenTelemetry
span, else the job's stored trace context) when there is one.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from typing import Any

from ..jobs.lowlevel import current_node_id

__all__ = ["LOG_FORMATS", "JsonFormatter", "logging_config"]

#: The values of ``actorq worker --log-format``.
LOG_FORMATS = ("text", "json")

#: Record attribute -> JSON key, for the fields of a job's lines.
_FIELDS = (
    ("job_id", "job_id"),
    ("job_kind", "kind"),
    ("queue", "queue"),
    ("attempt", "attempt"),
    ("max_attempts", "max_attempts"),
    ("worker", "worker"),
)


def _current_trace() -> tuple[str, str] | None:
    """The current OpenTelemetry span's trace and span ids (hex), if the API is installed and
    a span is being recorded."""
    try:
        from opentelemetry import trace
    except ImportError:  # the tracing extra is not installed
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, then, when the record is about a job, ``job_id``, ``kind``,
    ``queue``, ``attempt``, ``max_attempts``, ``worker``, and ``node``, ``trace_id`` and
    ``span_id`` when known, any ``static`` fields, and ``exception`` with the traceback.

    Args:
        node: the node to name when a record comes from outside any node's task.
        static: fields added to every line (a service name, a deployment).
    """

    def __init__(self, *, node: str | None = None, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.node = node
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for attribute, key in _FIELDS:
            if attribute in fields:
                line[key] = fields[attribute]
        node = fields.get("node") or current_node_id() or self.node
        if node is not None:
            line["node"] = node
        trace = _current_trace()
        if trace is not None:
            line["trace_id"], line["span_id"] = trace
        elif fields.get("trace_id"):
            line["trace_id"] = fields["trace_id"]
        line.update(self.static)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def logging_config(
    *, format: str = "json", level: str = "INFO", node: str | None = None
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: the root logger at ``level``, to stderr,
    as JSON lines (``format="json"``) or plain text (``"text"``).

    Raises:
        ValueError: ``format`` is neither ``"json"`` nor ``"text"``.
    """
    if format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {format!r}")
    formatter: dict[str, Any] = (
        {"()": f"{__name__.rpartition('.')[0]}.JsonFormatter", "node": node}
        if format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"actorq": formatter},
        "handlers": {
            "actorq": {
                "class": "logging.StreamHandler",
                "formatter": "actorq",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["actorq"]},
    }
