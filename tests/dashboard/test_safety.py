"""Who may look and act: read-only mode, the token, the host's hook, CSRF, and escaping."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request

import transports
from actors.dashboard import create_dashboard
from transports import EnqueueRequest, JobState, MemoryTransport, QueueConfig

from ._support import client, csrf_of, seed_dead

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-token"


async def test_read_only_shows_no_action_and_refuses_every_post() -> None:
    """No form changes anything, and a POST with a good CSRF value is still a 403."""
    async with MemoryTransport() as store:
        (job,) = await store.enqueue_many([EnqueueRequest(kind="a", queue="q")])
        await store.set_queue_config(QueueConfig(name="q"))
        app = create_dashboard(store, read_only=True)
        async with client(app) as http:
            for path in ["/", "/queues", "/jobs", f"/jobs/{job.job_id}"]:
                page = await http.get(path)
                assert page.status_code == 200
                assert '<form method="post"' not in page.text, path
                assert 'id="read-only"' in page.text
            csrf = await csrf_of_cookie(http)
            for path, data in [
                (f"/jobs/{job.job_id}/cancel", {}),
                ("/queues/q", {"action": "pause"}),
            ]:
                answer = await http.post(path, data={"csrf": csrf, **data})
                assert answer.status_code == 403
                assert "read-only" in answer.text
        assert (await store.get(job.job_id)).state is JobState.AVAILABLE
        assert not (await store.get_queue_config("q")).paused


async def csrf_of_cookie(http: httpx.AsyncClient) -> str:
    await http.get("/")
    value = http.cookies.get("actorq_csrf")
    assert value
    return value


async def test_a_post_without_the_csrf_value_is_refused() -> None:
    """Missing, empty, wrong, or without its cookie: 403, and the store is unchanged."""
    async with MemoryTransport() as store:
        (job,) = await store.enqueue_many([EnqueueRequest(kind="a", queue="q")])
        app = create_dashboard(store, token=TOKEN)
        auth = {"authorization": f"Bearer {TOKEN}"}
        async with client(app, headers=auth) as http:
            csrf = await csrf_of(http)
            for data, headers in [
                ({}, {}),
                ({"csrf": ""}, {}),
                ({"csrf": "x" * 43}, {}),
                ({"csrf": csrf[:-1]}, {}),
                ({}, {"x-csrf-token": "y" * 43}),
            ]:
                answer = await http.post(f"/jobs/{job.job_id}/cancel", data=data, headers=headers)
                assert answer.status_code == 403, (data, headers)
                assert "CSRF" in answer.text
            # The right value, but a request that lost its cookie (another site's form).
            http.cookies.clear()
            answer = await http.post(f"/jobs/{job.job_id}/cancel", data={"csrf": csrf})
            assert answer.status_code == 403
            assert (await store.get(job.job_id)).state is JobState.AVAILABLE
            # With both, through the header as htmx sends it: accepted.
            csrf = await csrf_of(http)
            answer = await http.post(f"/jobs/{job.job_id}/cancel", headers={"x-csrf-token": csrf})
            assert answer.status_code == 303
            assert (await store.get(job.job_id)).state is JobState.CANCELLED


async def test_the_token_guards_pages_and_actions_and_the_login_sets_a_session() -> None:
    """Without the token: redirect to the login; a wrong token is refused; a good one works."""
    async with MemoryTransport() as store:
        (job,) = await store.enqueue_many([EnqueueRequest(kind="a", queue="q")])
        app = create_dashboard(store, token=TOKEN)
        async with client(app) as http:
            page = await http.get("/jobs")
            assert page.status_code == 303
            assert page.headers["location"] == "http://dash.test/login?next=%2Fjobs"
            assert (await http.get("/api/counts")).status_code == 401
            assert (
                await http.get("/partials/overview", headers={"hx-request": "true"})
            ).status_code == 401
            wrong = await http.get("/jobs", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 303
            csrf = await csrf_of(http, "/login")
            refused = await http.post(f"/jobs/{job.job_id}/cancel", data={"csrf": csrf})
            assert refused.status_code == 401
            bad = await http.post("/login", data={"csrf": csrf, "token": "guess", "next": "/jobs"})
            assert bad.status_code == 401
            assert "not the dashboard&#39;s token" in bad.text
            no_csrf = await http.post("/login", data={"token": TOKEN})
            assert no_csrf.status_code == 403
            assert "actorq_session" not in http.cookies
            good = await http.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/jobs"})
            assert good.status_code == 303
            assert good.headers["location"] == "http://dash.test/jobs"
            session = http.cookies["actorq_session"]
            assert TOKEN not in session
            assert (await http.get("/jobs")).status_code == 200
            done = await http.post(f"/jobs/{job.job_id}/cancel", data={"csrf": csrf})
            assert done.status_code == 303
            out = await http.post("/logout", data={"csrf": csrf})
            assert out.status_code == 303
            assert (await http.get("/jobs")).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil", "jobs"])
async def test_the_login_never_redirects_off_the_dashboard(target: str) -> None:
    """``next`` is a path of this dashboard, or the overview."""
    async with MemoryTransport() as store:
        app = create_dashboard(store, token=TOKEN)
        async with client(app) as http:
            csrf = await csrf_of(http, "/login")
            good = await http.post("/login", data={"csrf": csrf, "token": TOKEN, "next": target})
            assert good.headers["location"] == "http://dash.test/"


async def test_the_host_hook_decides_with_the_request() -> None:
    """``authorize`` (sync or async) sees every request; a False answer is a 403."""
    async with MemoryTransport() as store:
        (job,) = await store.enqueue_many([EnqueueRequest(kind="a", queue="q")])

        async def admins_only(request: Request) -> bool:
            return request.headers.get("x-user") == "admin"

        for hook in (admins_only, lambda r: r.headers.get("x-user") == "admin"):
            app = create_dashboard(store, authorize=hook)
            async with client(app) as http:
                assert (await http.get("/")).status_code == 403
                page = await http.get("/", headers={"x-user": "admin"})
                assert page.status_code == 200
                assert "log out" not in page.text
                csrf = http.cookies["actorq_csrf"]
                refused = await http.post(f"/jobs/{job.job_id}/cancel", data={"csrf": csrf})
                assert refused.status_code == 403
        assert (await store.get(job.job_id)).state is JobState.AVAILABLE


def test_a_dashboard_that_can_act_needs_a_guard() -> None:
    """No token, no hook and not read-only is refused when built, as are bad arguments."""
    store = MemoryTransport()
    with pytest.raises(ValueError, match="needs a guard"):
        create_dashboard(store)
    with pytest.raises(ValueError, match="token"):
        create_dashboard(store, token=" ")
    with pytest.raises(ValueError, match="refresh_seconds"):
        create_dashboard(store, read_only=True, refresh_seconds=0)
    with pytest.raises(ValueError, match="refresh_seconds"):
        create_dashboard(store, read_only=True, refresh_seconds=float("nan"))
    with pytest.raises(TypeError, match="Transport or a store URL"):
        create_dashboard(42, read_only=True)  # type: ignore[arg-type]
    with pytest.raises(transports.UnsupportedURL):
        create_dashboard("redis://localhost", read_only=True)


HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "</pre><script>alert(4)</script>",
    "{{ 7 * 7 }}",
]


async def test_stored_text_is_escaped_everywhere_it_is_shown() -> None:
    """Hostile payload, dedupe key and error texts reach the HTML only as escaped text."""
    async with MemoryTransport() as store:
        ids = []
        for n, text in enumerate(HOSTILE):
            ids.append(
                await seed_dead(
                    store,
                    kind=f"k.{n}",
                    queue="hostile",
                    payload={"x": text, text: [text]},
                    error=text,
                    traceback=f"Traceback (most recent call last):\n{text}",
                )
            )
        (kept,) = await store.enqueue_many(
            [EnqueueRequest(kind="k", queue="hostile", payload=HOSTILE, dedupe_key=HOSTILE[1])]
        )
        ids.append(kept.job_id)
        app = create_dashboard(store, read_only=True)
        async with client(app) as http:
            pages = [await http.get("/jobs", params={"queue": "hostile", "state": "dead"})]
            pages += [await http.get(f"/jobs/{i}") for i in ids]
            pages.append(await http.get("/jobs", params={"kind": HOSTILE[0]}))
            for page in pages:
                html = page.text
                assert "<script>alert" not in html
                assert "<img" not in html
                assert "<svg" not in html
                assert "script-src 'self'" in page.headers["content-security-policy"]
            detail = pages[1].text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
            assert "Traceback (most recent call last):\n&lt;script&gt;" in detail  # its history
            assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in pages[2].text
            assert "{{ 7 * 7 }}" in pages[5].text  # shown as text, never evaluated


async def test_over_https_the_cookies_are_secure() -> None:
    """Served over https, the CSRF and session cookies carry Secure (and never over http)."""
    async with MemoryTransport() as store:
        app = create_dashboard(store, token=TOKEN)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            for scheme, secure in [("https", True), ("http", False)]:
                async with httpx.AsyncClient(
                    transport=transport, base_url=f"{scheme}://dash.test"
                ) as http:
                    form = await http.get("/login")
                    assert ("Secure" in form.headers["set-cookie"]) is secure
                    csrf = http.cookies["actorq_csrf"]
                    done = await http.post("/login", data={"csrf": csrf, "token": TOKEN})
                    assert "HttpOnly" in done.headers["set-cookie"]
                    assert "SameSite=strict" in done.headers["set-cookie"]
                    assert ("Secure" in done.headers["set-cookie"]) is secure
