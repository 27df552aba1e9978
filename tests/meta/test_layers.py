"""The layering rules of ARCHITECTURE.md, enforced on every import in the tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package prefix -> prefixes it must never import
FORBIDDEN = {
    "actors.core": ("actors.jobs", "actors.sim", "actors.cli", "transports"),
    "transports": ("actors",),
    "actors.jobs": ("actors.sim", "actors.cli", "actors.telemetry"),
    "actors.telemetry": ("actors.sim", "actors.cli", "actors.testing"),
    "actors.dashboard": ("actors.sim", "actors.cli"),
}
# the SQL drivers may be imported only inside their own backend module
DRIVER_HOMES = {
    "asyncpg": {"transports/_postgres.py"},
    "aiosqlite": {"transports/_sqlite.py"},
    "sqlite3": {"transports/_sqlite.py"},
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("actors", "transports"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                names.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.append(node.module)
    return names


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v))
def test_module_respects_layers(module: str, path: Path) -> None:
    """No module imports a layer above it, and drivers stay inside their backend."""
    imported = _imports(path, module)
    for layer, forbidden in FORBIDDEN.items():
        if _matches(module, layer):
            bad = [n for n in imported if any(_matches(n, f) for f in forbidden)]
            assert not bad, f"{module} ({layer}) must not import {bad}"
    rel = path.relative_to(ROOT).as_posix()
    for driver, homes in DRIVER_HOMES.items():
        if rel not in homes and rel.startswith("transports/testing") is False:
            assert not [n for n in imported if _matches(n, driver)], f"{rel} imports {driver}"


def test_jobs_reach_storage_only_through_the_contract() -> None:
    """actors.jobs and the dashboard import `transports` (the contract), never a backend module."""
    for module, path in _modules():
        if _matches(module, "actors.jobs") or _matches(module, "actors.dashboard"):
            for name in _imports(path, module):
                assert not name.startswith("transports._"), f"{module} imports {name}"
