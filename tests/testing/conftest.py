"""The kit's own tests use the plugin's fixtures, imported (a plugin may not be registered
from a conftest below the rootdir); a user registers the plugin with ``pytest_plugins``."""

from __future__ import annotations

from typing import Any

import pytest

from actors.jobs import App, JobContext
from actors.testing.pytest_plugin import actorq_sim, job_tester

__all__ = ["actorq_app", "actorq_sim", "job_tester"]


@pytest.fixture
def actorq_app() -> App:
    """A two-step App: ``hello`` enqueues ``bye``."""
    app = App()

    @app.task("hello")
    async def hello(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(1.0)
        await app.enqueue("bye", payload)

    @app.task("bye", queue="second")
    async def bye(ctx: JobContext, payload: Any) -> None:
        pass

    return app
