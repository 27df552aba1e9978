"""The FastAPI recipe (``examples/fastapi_app``) on a real PostgreSQL server.

The app is driven in-process through ``httpx.ASGITransport``, its lifespan entered with
``app.router.lifespan_context``: signups enqueue in the app's own transaction, the node in the
lifespan runs the welcome job, and a refused signup leaves neither user nor job. Then the same
App is worked by a separate ``actorq worker`` process, stopped with SIGTERM.

These tests run on asyncio only: the recipe shares one asyncpg connection between its own
insert and the enqueue, and asyncpg, FastAPI's lifespan and uvicorn all live on asyncio (under
trio, actorq would bridge its store onto a private loop, which cannot use the caller's
connection).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import attrs
import httpx
import pytest
from fastapi import FastAPI

import transports
from examples.fastapi_app.app import Settings, create_app

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.postgres,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]


def _with_query(dsn: str, query: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


@pytest.fixture
def settings(postgres_dsn: str, postgres_schema: str) -> Settings:
    """The app's table and actorq's in one fresh schema (dropped after the test)."""
    return Settings(
        database_url=_with_query(postgres_dsn, f"search_path={postgres_schema}"),
        transport_url=_with_query(postgres_dsn.split("?")[0], f"schema={postgres_schema}"),
        max_users_per_domain=1,
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[transports.Transport]:
    """The recipe's job store, opened by the test to look at jobs from outside."""
    async with transports.connect(settings.transport_url) as transport:
        yield transport


def _client(api: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://recipe")


async def _wait_finished(store: transports.Transport, job_id: int) -> transports.Job:
    # The state is in the store, written by a node or another process: polling is the way.
    with anyio.fail_after(30):  # a safety net: the job finishes in well under a second
        while (job := await store.get(job_id)).state.is_active:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return job


async def _users(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return [row["email"] for row in await conn.fetch("SELECT email FROM users ORDER BY id")]
    finally:
        await conn.close()


async def test_signup_enqueues_and_the_lifespan_node_sends_the_welcome(
    settings: Settings, store: transports.Transport
) -> None:
    """A signup commits the user and its job; the node in the app's lifespan runs the job."""
    api = create_app(settings)
    async with api.router.lifespan_context(api), _client(api) as client:
        response = await client.post("/signup", json={"email": "ada@example.org", "name": "Ada"})
        assert response.status_code == 201, response.text
        signed_up = response.json()
        job = await _wait_finished(store, signed_up["welcome_job"])
    assert job.state is transports.JobState.SUCCEEDED
    assert job.kind == "email.welcome"
    assert job.payload == {"user_id": signed_up["user_id"], "address": "ada@example.org"}
    assert await _users(settings) == ["ada@example.org"]


async def test_a_refused_signup_rolls_back_the_user_and_its_job(
    settings: Settings, store: transports.Transport
) -> None:
    """Refused after its insert and its enqueue, a signup leaves no user and no job behind."""
    api = create_app(attrs.evolve(settings, in_process_queues=()))
    async with api.router.lifespan_context(api), _client(api) as client:
        first = await client.post("/signup", json={"email": "ada@example.org", "name": "Ada"})
        assert first.status_code == 201, first.text
        refused = await client.post("/signup", json={"email": "bob@Example.org", "name": "Bob"})
        assert refused.status_code == 409, refused.text
        assert "example.org" in refused.json()["detail"]
        invalid = await client.post("/signup", json={"email": "nobody", "name": "Nobody"})
        assert invalid.status_code == 422
    assert await _users(settings) == ["ada@example.org"]
    (only,) = await store.list_jobs()
    assert only.id == first.json()["welcome_job"]
    assert only.payload == {"user_id": first.json()["user_id"], "address": "ada@example.org"}


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``actorq worker examples.fastapi_app.jobs:app`` as its own process, with its log."""
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "actors.cli", "worker", "examples.fastapi_app.jobs:app"),
                *("-t", settings.transport_url, "--queue", "emails", "--node-id", "mailer"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_a_separate_worker_process_sends_the_welcome(
    settings: Settings,
    store: transports.Transport,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    """With no in-process queues, the ``actorq worker`` process runs the job; SIGTERM stops it."""
    api = create_app(attrs.evolve(settings, in_process_queues=()))
    async with api.router.lifespan_context(api), _client(api) as client:
        response = await client.post("/signup", json={"email": "ada@example.org", "name": "Ada"})
        assert response.status_code == 201, response.text
        job = await _wait_finished(store, response.json()["welcome_job"])
    log = tmp_path / "worker.log"
    assert job.state is transports.JobState.SUCCEEDED, log.read_text()
    assert job.lease_owner is not None
    assert job.lease_owner.startswith("mailer"), job.lease_owner
    worker.send_signal(signal.SIGTERM)
    code = await anyio.to_thread.run_sync(worker.wait, 30)
    assert code == 0, log.read_text()
    assert "shutting down gracefully" in log.read_text()
