"""Retake the README's dashboard screenshot: ``python -m tests.browser.take_screenshot``.

A store with a few queues is served while jobs finish in the background, so the overview's
live chart has something to show; the same headless Chromium as the browser tests takes the
picture into ``docs/images/dashboard.png``.
"""

from __future__ import annotations

import math
import random
import tempfile
import threading
import time
from pathlib import Path

import anyio
import uvicorn
from playwright.sync_api import sync_playwright

import transports
from actors.dashboard import create_dashboard
from transports import EnqueueRequest
from transports.lowlevel import Complete, Discard, FinalizeRequest

from .test_dashboard_browser import CHROMIUM, ROOT

QUEUES = {"emails": "email.send", "reports": "report.build", "billing": "invoice.charge"}


async def _history(store: transports.Transport, rng: random.Random) -> None:
    """An hour of the per-minute history running nodes record, and one registered node."""
    now = time.time()
    minute = transports.minute_of(now)
    rows = []
    for back in range(60, 0, -1):
        for queue in QUEUES:
            load = 1.0 + 0.5 * math.sin(back / 9) + rng.random() * 0.3
            rows.append(
                transports.QueueStats(
                    queue=queue,
                    minute=minute - back * transports.MINUTE,
                    succeeded=int(180 * load),
                    failed=rng.randrange(0, 12),
                    dead=rng.randrange(0, 4),
                    reclaimed=1 if rng.random() < 0.05 else 0,
                    finalize_refused=1 if rng.random() < 0.02 else 0,
                    wait=transports.Histogram.of(rng.expovariate(40) for _ in range(50)),
                )
            )
    await store.add_stats(rows)
    await store.register_node(
        transports.NodeInfo(
            id="web-1:4242:a1",
            host="web-1",
            pid=4242,
            queues=tuple(QUEUES),
            slots=24,
            version="0.1.0",
            started_at=now - 7200,
            heartbeat=5.0,
        )
    )


async def _work(url: str, stop: threading.Event, rng: random.Random) -> None:
    async with transports.connect(url) as store:
        await _history(store, rng)
        while not stop.is_set():
            for queue, kind in QUEUES.items():
                await store.enqueue_many(
                    [EnqueueRequest(kind=kind, queue=queue, payload={"n": rng.randrange(10**6)})]
                    * rng.randrange(20, 60)
                )
                leases = await store.claim(
                    queue, owner="node-a:1", limit=rng.randrange(10, 50), ttl=30
                )
                outcomes = [
                    Discard(error="ValueError: no such customer")
                    if rng.random() < 0.05
                    else Complete()
                    for _ in leases
                ]
                await store.finalize(
                    [
                        FinalizeRequest(job_id=lease.job.id, token=lease.token, outcome=outcome)
                        for lease, outcome in zip(leases, outcomes, strict=True)
                    ]
                )
            await anyio.sleep(0.4)


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite:///{folder / 'shop.db'}"
    stop = threading.Event()
    worker = threading.Thread(target=anyio.run, args=(_work, url, stop, random.Random(7)))
    worker.start()
    time.sleep(1)
    server = uvicorn.Server(
        uvicorn.Config(
            create_dashboard(url, read_only=True, refresh_seconds=1), port=8791, log_level="warning"
        )
    )
    serving = threading.Thread(target=server.run)
    serving.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 640})
            page.goto("http://127.0.0.1:8791/")
            time.sleep(3)
            page.screenshot(path=str(ROOT / "docs" / "images" / "dashboard.png"))
            browser.close()
    finally:
        stop.set()
        server.should_exit = True
        worker.join()
        serving.join()


if __name__ == "__main__":
    main()
