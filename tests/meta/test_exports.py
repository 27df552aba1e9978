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


PACKAGES = [
    "actors",
    "actors.core",
    "actors.jobs",
    "actors.jobs.lowlevel",
    "actors.sim",
    "actors.sim.lowlevel",
    "actors.telemetry",
    "actors.testing",
    "transports",
    "transports.lowlevel",
    "transports.testing",
]
# A user-facing namespace and the low-level one beside it (as trio.lowlevel beside trio).
SPLIT = ["actors.jobs", "actors.sim", "transports"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    """``__all__`` is sorted, and each listed name exists."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert getattr(module, attr) is not None


def _exported(name: str) -> set[str]:
    package = importlib.import_module(name)
    names = set(package.__all__)
    if name in SPLIT:
        names |= set(importlib.import_module(f"{name}.lowlevel").__all__)
    return names


@pytest.mark.parametrize("name", [p for p in PACKAGES if not p.endswith(".lowlevel")])
def test_private_modules_names_are_reexported(name: str) -> None:
    """Each name a private module lists in its own ``__all__`` is exported by the package,
    in its user-facing namespace or in its ``lowlevel`` one."""
    package = importlib.import_module(name)
    exported = _exported(name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{name}.{info.name}")
        for attr in getattr(module, "__all__", []):
            assert attr in exported, f"{name}.{info.name}.{attr} is not re-exported"


@pytest.mark.parametrize("name", SPLIT)
def test_a_name_lives_in_one_namespace(name: str) -> None:
    """No name is both user-facing and low-level, and the user-facing face stays small."""
    public = set(importlib.import_module(name).__all__)
    low = set(importlib.import_module(f"{name}.lowlevel").__all__)
    assert not public & low
    # the errors of results, dependencies and durable steps are user-facing (JobFailed,
    # ResultTimeout and WaitTimedOut in actors.jobs; InvalidStepName, StepTooLarge,
    # UnknownDependency and DependencyCycle in transports, with After and OnFailure)
    assert len(public) <= 48, f"{name} exports {len(public)} names; move the rest to lowlevel"
