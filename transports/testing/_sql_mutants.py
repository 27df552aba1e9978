"""SQL mutants: one named query of a dialect's ``queries.sql`` rewritten, for as long as a test
needs, to prove the tests notice when a fencing clause goes missing.

The SQL backends read their named queries once, at import, from ``transports/sql/<dialect>/``;
a mutant rewrites one of them in that table. A backend opened while the mutant is active runs
the rewritten query (PostgreSQL renders its queries when it opens, so open it inside).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from .._sql import load_queries

__all__ = ["SQLMutant", "rewrite_query"]


@contextmanager
def rewrite_query(dialect: str, name: str, old: str, new: str = "") -> Iterator[str]:
    """Replace ``old`` by ``new`` in the named query of ``dialect`` while the block runs.

    Args:
        dialect: ``"sqlite"`` or ``"postgres"``.
        name: the query's name in ``queries.sql`` (``-- name: ...``).
        old: text that occurs exactly once in that query.
        new: what it becomes (nothing: the clause is dropped).

    Yields:
        The rewritten query.

    Raises:
        LookupError: the query does not exist, or ``old`` is not in it exactly once (the SQL
            changed under the mutant, which must then be rewritten, not silently do nothing).
    """
    queries = load_queries(dialect)
    if name not in queries:
        raise LookupError(f"{dialect} has no query named {name!r}")
    original = queries[name]
    found = original.count(old)
    if found != 1:
        raise LookupError(f"{dialect} query {name!r} holds {old!r} {found} times, not once")
    queries[name] = original.replace(old, new)
    try:
        yield queries[name]
    finally:
        queries[name] = original


@attrs.frozen(kw_only=True)
class SQLMutant:
    """A named rewrite of one query: a bug the conformance suite must catch."""

    #: The dialect whose query is rewritten.
    dialect: str
    #: The query's name in ``queries.sql``.
    query: str
    #: The text removed (it must occur exactly once in the query).
    old: str
    #: What it is replaced with.
    new: str = ""

    @contextmanager
    def active(self) -> Iterator[str]:
        """Apply the rewrite while the block runs (see :func:`rewrite_query`)."""
        with rewrite_query(self.dialect, self.query, self.old, self.new) as sql:
            yield sql
