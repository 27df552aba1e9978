"""The dashboard mounted under a prefix in a FastAPI app, owning its store through a lifespan."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import transports
from actors.dashboard import create_dashboard
from transports import EnqueueRequest, QueueConfig

from ._support import seed_dead

pytestmark = pytest.mark.anyio


async def test_mounted_under_a_prefix_every_link_and_action_stays_under_it(
    tmp_path: Path,
) -> None:
    """Links, static files, the login cookie and actions all live under /ops."""
    url = f"sqlite:///{tmp_path / 'mounted.db'}"
    async with transports.connect(url) as seeder:
        await seeder.enqueue_many([EnqueueRequest(kind="a", queue="emails")])
        dead = await seed_dead(seeder, error="boom")
    dashboard = create_dashboard(url, token="tok")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with dashboard.router.lifespan_context(dashboard):
            yield

    host = FastAPI(lifespan=lifespan)

    @host.get("/")
    async def home() -> dict[str, str]:
        return {"app": "host"}

    host.mount("/ops", dashboard)
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
            assert (await http.get("/")).json() == {"app": "host"}
            login = await http.get("/ops/jobs")
            assert login.headers["location"] == "http://app.test/ops/login?next=%2Fops%2Fjobs"
            form = await http.get(login.headers["location"])
            (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', form.text)
            assert 'href="http://app.test/ops/static/dashboard.css"' in form.text
            assert (await http.get("/ops/static/htmx.min.js")).status_code == 200
            done = await http.post(
                "/ops/login", data={"csrf": csrf, "token": "tok", "next": "/jobs"}
            )
            assert done.headers["location"] == "http://app.test/ops/jobs"
            assert {c.path for c in http.cookies.jar} == {"/ops"}
            page = await http.get("/ops/jobs", params={"state": "dead"})
            assert f'href="http://app.test/ops/jobs/{dead}"' in page.text
            paused = await http.post("/ops/queues/emails", data={"csrf": csrf, "action": "pause"})
            assert paused.headers["location"] == "http://app.test/ops/queues"
    async with transports.connect(url, create=False) as reader:
        assert await reader.get_queue_config("emails") == QueueConfig(name="emails", paused=True)


async def test_without_its_lifespan_a_url_dashboard_says_so(tmp_path: Path) -> None:
    """Mounted without running its lifespan, each page is a 503 naming the fix."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    host = FastAPI()
    host.mount("/ops", create_dashboard(url, read_only=True))
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        page = await http.get("/ops/")
        assert page.status_code == 503
        assert "lifespan_context" in page.text
    assert not (tmp_path / "x.db").exists()


async def test_a_url_dashboard_never_creates_a_store(tmp_path: Path) -> None:
    """The lifespan opens with create=False: a missing store fails it and creates nothing."""
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    dashboard = create_dashboard(url, read_only=True)
    with pytest.raises(transports.StoreNotFound):
        async with dashboard.router.lifespan_context(dashboard):
            pass
    assert not (tmp_path / "missing.db").exists()
