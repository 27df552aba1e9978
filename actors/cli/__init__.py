"""The ``actorq`` command line."""

from ._errors import AppLoadError, CliFailure
from ._jobs import jobs
from ._load import load_app
from ._main import main
from ._workflows import workflows

main.add_command(jobs)
main.add_command(workflows)

__all__ = ["AppLoadError", "CliFailure", "load_app", "main"]
