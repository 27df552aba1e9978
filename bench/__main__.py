"""Run every benchmark in one process and print the figures (``make bench``).

Each section prints its own baselines, measured in the same run, and the ratios to them.
PostgreSQL sections are skipped (with a note) when no server answers.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time

import anyio

SECTIONS = [
    "_core",
    "_runtime",
    "_telemetry",
    "_sqlite",
    "_postgres",
    "_flow",
    "_steps",
    "_workflows",
    "_sim",
]


def main(argv: list[str]) -> None:
    wanted = [s for s in SECTIONS if not argv or s.strip("_") in argv]
    for name in wanted:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ImportError as exc:
            print(f"\n== {name.strip('_')}: not available ({exc}) ==")
            continue
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(module.run):
                anyio.run(module.run, print)
            else:
                module.run(print)
        except OSError as exc:
            print(f"   skipped: {exc}")
        print(f"   ({name.strip('_')} took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
