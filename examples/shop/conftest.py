"""The shop's fixtures: its App with fresh stand-ins, and actorq's test kit."""

from __future__ import annotations

import pytest
from shop import Gateway, Mailer, build_app

from actors.jobs import App

pytest_plugins = ["actors.testing.pytest_plugin"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run the ``anyio`` tests on both event loops."""
    return str(request.param)


@pytest.fixture
def gateway() -> Gateway:
    """A healthy payment gateway."""
    return Gateway()


@pytest.fixture
def mailer() -> Mailer:
    """A mail provider without a rate limit."""
    return Mailer()


@pytest.fixture
def actorq_app(gateway: Gateway, mailer: Mailer) -> App:
    """The App under test: what the ``job_tester`` and ``actorq_sim`` fixtures run."""
    return build_app(gateway, mailer)
