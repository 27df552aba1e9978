"""actors.sim re-exports its public names with a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil

import actors.sim


def test_all_is_sorted_and_complete() -> None:
    """``__all__`` is sorted, each listed name exists, and every private module's public
    names are re-exported."""
    exported = list(actors.sim.__all__)
    assert exported == sorted(exported)
    for name in exported:
        assert getattr(actors.sim, name) is not None
    for info in pkgutil.iter_modules(actors.sim.__path__):
        module = importlib.import_module(f"actors.sim.{info.name}")
        for name in getattr(module, "__all__", []):
            assert name in exported, f"actors.sim.{info.name}.{name} is not re-exported"
