"""The seed hierarchy: every random choice of a run comes from an RNG derived from its seed.

Each consumer (the fault planner, the producer, one node incarnation's runtime, one handler
run) gets its own stream, named by a path. Streams are independent of each other, so adding a
draw in one place never shifts the choices made in another, and a shrunk fault schedule leaves
the workload untouched.
"""

from __future__ import annotations

# The simulator is where seeded RNGs are made: each one is seeded from the run's seed, and
# nothing here touches the global RNG.
from random import Random

__all__ = ["derive_rng"]


def derive_rng(seed: int, *path: object) -> Random:
    """A ``Random`` seeded from ``seed`` and ``path``: the same arguments, the same stream.

    String seeds are hashed with SHA-512 by ``random``, never with ``hash()``, so the stream
    does not depend on ``PYTHONHASHSEED``.
    """
    return Random("actorq.sim/" + "/".join(map(str, (seed, *path))))
