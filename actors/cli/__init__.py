"""The ``actorq`` command line."""

from ._errors import AppLoadError, CliFailure
from ._jobs import jobs
from ._load import load_app
from ._main import main

main.add_command(jobs)

__all__ = ["AppLoadError", "CliFailure", "load_app", "main"]
