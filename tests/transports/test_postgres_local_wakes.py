"""PostgreSQL without NOTIFY (``notify=False``): this process's own writes still wake its
waiters, for every kind of write the conformance suite's wake-up tests name.

With NOTIFY on, the server's notification wakes a waiter whether or not the transport also
wakes it locally, so the conformance suite on the default transport cannot see a missing
local wake-up. Here the same tests run with the server silent.
"""

from __future__ import annotations

import pytest

from transports.testing import TransportConformance, TransportFactory

from .test_postgres import _factory

pytestmark = pytest.mark.anyio


class TestPostgresLocalWakeUps(TransportConformance):
    supports_second_instance = True

    @pytest.fixture
    def transport_factory(
        self, anyio_backend: str, postgres_dsn: str, postgres_schema: str
    ) -> TransportFactory:
        return _factory(anyio_backend, postgres_dsn, postgres_schema, notify=False)


def _local(name: str) -> bool:
    # Another node's wake-up needs NOTIFY: that is what the option turns off.
    return "wake" in name and "another_node" not in name and "instances" not in name


# Only the wake-up tests: the rest of the suite already runs on the default transport.
for _name in dir(TransportConformance):
    if _name.startswith("test_") and not _local(_name):
        setattr(TestPostgresLocalWakeUps, _name, None)
