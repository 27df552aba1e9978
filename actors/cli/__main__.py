"""``python -m actors.cli`` is the ``actorq`` command."""

from ._main import main

main()
