"""The memory transport: the conformance suite, plus what only the memory backend promises."""

from __future__ import annotations

import pytest

from transports import MemoryTransport
from transports._memory import MemoryStore
from transports.testing import ManualClock, TransportConformance, TransportFactory

pytestmark = pytest.mark.anyio


class TestMemoryConformance(TransportConformance):
    supports_second_instance = True

    @pytest.fixture
    def transport_factory(self) -> TransportFactory:
        store = MemoryStore()

        def make(clock: ManualClock) -> MemoryTransport:
            return MemoryTransport(clock=clock, store=store)

        return make
