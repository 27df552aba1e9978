"""The ``actorq`` command line."""

from ._main import load_app, main

__all__ = ["load_app", "main"]
