"""Type-checked by tests/jobs/test_typecheck.py: lines marked ``# expect: <code>`` must error.

Task options are spelled-out keyword arguments, so a typo or a wrong type is a type error at
the call, not a TypeError from deep inside a backend.
"""

from __future__ import annotations

from typing import Any

import attrs

from actors.jobs import App, Constant, JobContext, Overlap


@attrs.frozen
class Welcome:
    user_id: int


app = App()


@app.task("email.welcome", queue="emails", max_attempts=5, backoff=Constant(seconds=1.0))
async def welcome(ctx: JobContext, payload: Welcome) -> None:
    return None


@app.task("email.typo", max_attemps=5)  # expect: call-arg
async def typo(ctx: JobContext, payload: Any) -> None:
    return None


@app.task("email.wrong", timeout="soon")  # expect: arg-type
async def wrong(ctx: JobContext, payload: Any) -> None:
    return None


app.register("email.plain", welcome, priority=1, lease_ttl=30.0)
app.register("email.plain2", welcome, retries=3)  # expect: call-arg

app.schedule("daily", "0 9 * * *", welcome, payload=Welcome(1), overlap=Overlap.SKIP)
app.schedule("hourly", "0 * * * *", welcome, jiter=5.0)  # expect: call-arg

app.request(welcome, Welcome(1), priority=-1, dedupe_key="w:1", delay=5.0)
app.request(welcome, Welcome(1), dedup_key="w:1")  # expect: call-arg


async def produce() -> None:
    await app.enqueue(welcome, Welcome(user_id=7), max_attempts=3, run_at=1.0)
    await app.enqueue(welcome, Welcome(user_id=7), max_attemps=3)  # expect: call-overload
    await app.enqueue(welcome, Welcome(user_id=7), priority="high")  # expect: call-overload
    await app.enqueue("email.welcome", {"user_id": 7}, queue="emails", delay=1.0)
    await app.enqueue("email.welcome", {"user_id": 7}, quue="emails")  # expect: call-overload
