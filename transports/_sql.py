"""Loading the SQL that lives in ``transports/sql/<dialect>/``.

Each dialect folder holds ``schema.sql`` (the schema as it stands), numbered migrations
``migrations/0001_name.sql`` ... and ``queries.sql`` with named queries, each introduced by a
line ``-- name: query_name``. A test proves that applying every migration yields ``schema.sql``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class Migration:
    """One numbered migration script."""

    __slots__ = ("name", "sql", "version")

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version = version
        self.name = name
        self.sql = sql

    def __repr__(self) -> str:
        return f"Migration({self.version}, {self.name!r})"


def _folder(dialect: str) -> resources.abc.Traversable:
    return resources.files("transports").joinpath("sql", dialect)


@functools.cache
def load_queries(dialect: str) -> dict[str, str]:
    """Named queries of a dialect: ``{name: sql}``."""
    text = _folder(dialect).joinpath("queries.sql").read_text()
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@functools.cache
def load_schema(dialect: str) -> str:
    """The dialect's ``schema.sql``: what all migrations together produce."""
    return _folder(dialect).joinpath("schema.sql").read_text()


@functools.cache
def load_migrations(dialect: str) -> tuple[Migration, ...]:
    """The dialect's migrations, by version."""
    folder = _folder(dialect).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1..n: {versions}")
    return tuple(found)
