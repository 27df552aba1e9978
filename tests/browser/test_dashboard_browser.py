"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

An operator logs in, watches the overview refresh itself, filters the jobs to the dead ones,
opens one and reads its error, retries it, cancels a waiting job, and pauses a queue; each step is
checked in the store itself. Screenshots go to ``artifacts/browser/`` (or
``$ACTORQ_ARTIFACTS/browser``); ``python -m tests.browser.take_screenshot`` retakes the
README's. Without Chromium (``/usr/bin/chromium``, or
``$ACTORQ_CHROMIUM``) these tests skip, but with CI=true they fail: ``make test`` installs it
when it runs as root (``.ci/browser``).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import transports
from actors.dashboard import create_dashboard
from tests.conftest import IN_CI
from tests.dashboard._support import seed_dead
from transports import EnqueueRequest, JobState

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ACTORQ_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ACTORQ_ARTIFACTS", ROOT / "artifacts")) / "browser"
TOKEN = "browser-test-token"
ERROR = "ValueError: the report for 2026-11 has no rows"

pytestmark = pytest.mark.timeout(180)


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run; see .ci/browser)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Debian's package; nothing is downloaded)."""
    if shutil.which(CHROMIUM) is None:
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (it is in the dev extra)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store; the PostgreSQL schema is dropped from a thread (see ``_run``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'browser.db'}"
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"t_browser_{uuid.uuid4().hex[:8]}"
    yield f"{dsn}?schema={schema}"

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    _in_thread(drop)


def _run(url: str, fn: Any) -> Any:
    """``fn(transport)`` on a store of ``url``, in a thread of its own: Playwright's sync API
    keeps an event loop running in this one."""

    async def go() -> Any:
        async with transports.connect(url) as transport:
            return await fn(transport)

    return _in_thread(go)


def _in_thread(fn: Any) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn).result(timeout=60)


@pytest.fixture
def served(store_url: str) -> Iterator[tuple[str, str, dict[str, int]]]:
    """The seeded store served by uvicorn in a thread: (base URL, store URL, job ids)."""
    import uvicorn

    async def seed(transport: transports.Transport) -> dict[str, int]:
        emails = await transport.enqueue_many(
            [
                EnqueueRequest(kind="email.send", queue="emails", payload={"to": f"u{n}@x.io"})
                for n in range(3)
            ]
        )
        dead = await seed_dead(
            transport,
            kind="report.build",
            queue="reports",
            payload={"month": "2026-11"},
            error=ERROR,
        )
        return {"dead": dead, "waiting": emails[0].job_id}

    ids = _run(store_url, seed)
    app = create_dashboard(store_url, token=TOKEN, refresh_seconds=0.5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the dashboard server stopped while starting"
        assert time.monotonic() < deadline, "the dashboard server never started"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", store_url, ids
    finally:
        server.should_exit = True
        thread.join(30)


def _shot(page: Any, backend: str, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{backend}-{name}.png"), full_page=True)


def test_an_operator_finds_a_dead_job_and_acts(
    browser: Any, served: tuple[str, str, dict[str, int]], request: pytest.FixtureRequest
) -> None:
    base, store_url, ids = served
    backend = store_url.split(":", 1)[0]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        # Log in: the overview sends us to the form, the token brings us back.
        page.goto(f"{base}/")
        assert page.url.startswith(f"{base}/login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        table = page.locator("#overview-table")
        assert "reports" in table.inner_text()

        # Live: a job enqueued now shows up without a reload (htmx polls the table).
        _run(store_url, lambda t: t.enqueue_many([EnqueueRequest(kind="late", queue="late")]))
        page.locator("#overview-table >> text=late").first.wait_for(timeout=10_000)
        page.locator("#throughput-chart canvas").wait_for(timeout=10_000)  # uPlot drew
        _shot(page, backend, "1-overview")

        # Filter to the dead jobs, open the one there, read its error.
        page.click("nav >> text=Jobs")
        page.select_option("select[name=state]", "dead")
        page.click("#job-filters button[type=submit]")
        page.wait_for_url("**/jobs?state=dead*")
        rows = page.locator("#job-list tbody tr")
        assert rows.count() == 1
        _shot(page, backend, "2-dead-jobs")
        rows.first.locator("a").click()
        page.wait_for_url(f"{base}/jobs/{ids['dead']}")
        assert page.locator("#last-error").inner_text() == ERROR
        assert page.locator("#job-state").inner_text() == "dead"
        assert ERROR in page.locator("#error-history").inner_text()
        _shot(page, backend, "3-dead-job")

        # Retry it: it runs again, with a fresh budget of attempts.
        page.click("#job-actions >> text=Retry")
        page.wait_for_selector("text=retry: done")
        assert page.locator("#job-state").inner_text() == "available"
        job = _run(store_url, lambda t: t.get(ids["dead"]))
        assert (job.state, job.attempt) == (JobState.AVAILABLE, 0)
        _shot(page, backend, "4-retried")

        # Cancel a waiting job from its page.
        page.goto(f"{base}/jobs/{ids['waiting']}")
        page.click("#job-actions >> text=Cancel")
        page.wait_for_selector("text=cancel: cancelled")
        job = _run(store_url, lambda t: t.get(ids["waiting"]))
        assert job.state is JobState.CANCELLED

        # Pause a queue.
        page.click("nav >> text=Queues")
        page.locator("#queue-emails >> text=Pause").click()
        page.locator("#queue-emails >> text=Resume").wait_for()
        _shot(page, backend, "5-queue-paused")
        config = _run(store_url, lambda t: t.get_queue_config("emails"))
        assert config.paused

        # The correctness panel charts recovery time (uPlot draws even an empty hour).
        page.click("nav >> text=Correctness")
        page.locator("#recovery-chart canvas").wait_for(timeout=10_000)
        _shot(page, backend, "6-correctness")
        assert problems == []  # no script error, no Content-Security-Policy violation
    finally:
        context.close()
