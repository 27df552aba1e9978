"""A pytest plugin that puts one bug back for a whole run: ``ACTORQ_MUTANT=<bug name>``.

Loaded only by ``test_teeth.py`` (``-p tests.regressions._plugin``), never by the main suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ._bugs import BY_NAME


@pytest.fixture(autouse=True)
def _mutant(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    name = os.environ.get("ACTORQ_MUTANT", "")
    if not name:
        yield
        return
    with BY_NAME[name].active(monkeypatch):
        yield
