"""Every public package re-exports its public names with a sorted ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil

import pytest


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


PACKAGES = ["actors", "actors.core", "actors.jobs", "transports", "transports.testing"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    """``__all__`` is sorted, and each listed name exists."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert getattr(module, attr) is not None


@pytest.mark.parametrize("name", PACKAGES)
def test_private_modules_names_are_reexported(name: str) -> None:
    """Each name a private module lists in its own ``__all__`` is public in the package."""
    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{name}.{info.name}")
        for attr in getattr(module, "__all__", []):
            assert attr in package.__all__, f"{name}.{info.name}.{attr} is not re-exported"
