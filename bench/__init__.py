"""actorq benchmarks: ``make bench`` (``python -m bench``) prints figures; nothing asserts."""
