"""actorq: background jobs as a supervised actor system.

``actors.core`` is the actor toolkit, ``actors.jobs`` the job runtime built on it, and
``actors.sim`` the deterministic simulator; storage lives in the sibling package ``transports``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
