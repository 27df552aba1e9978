"""The telemetry tests use the job runtime's fixtures: a virtual clock, every backend."""

from __future__ import annotations

from tests.jobs.conftest import backend, clock, memory, transport

__all__ = ["backend", "clock", "memory", "transport"]
