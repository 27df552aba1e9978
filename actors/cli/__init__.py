"""The ``actorq`` command line."""

from ._errors import AppLoadError, CliFailure
from ._load import load_app
from ._main import main

__all__ = ["AppLoadError", "CliFailure", "load_app", "main"]
