"""``create_dashboard``: the operator's web pages as an ASGI app (Starlette, Jinja2, htmx).

Every page is rendered on the server from a bounded number of storage calls (see
:data:`QUERY_BOUNDS`), so a page costs the same with a thousand jobs or a million: nothing
counts or lists without a limit. Stored text (payloads, kinds, errors) is only ever put in a
page through Jinja's autoescaping, and the Content-Security-Policy allows scripts from the
dashboard's own static files only.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import transports
from transports import (
    MINUTE,
    Histogram,
    InvalidRequest,
    Job,
    JobFilter,
    JobNotFound,
    JobState,
    JsonValue,
    QueueConfig,
    QueueStats,
    Transport,
    TransportError,
    minute_of,
)
from transports.lowlevel import MAX_PARTITION_COUNT, Edge, TimeSource

from ..core import RealClock
from ..jobs import CronSchedule
from ._security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Authorize,
    Guard,
    csrf_ok,
    csrf_value,
)

__all__ = ["BULK_LIMIT", "QUERY_BOUNDS", "Redact", "create_dashboard"]

_WORKFLOWS_SHOWN = 100  # workflows a page of the list shows
_PARTITIONS_SHOWN = 100  # fair-share partitions a page shows
_WORKFLOW_JOBS_SHOWN = 1000  # jobs of one workflow its page shows

#: Turns a job into the payload a page may show (e.g. masks secrets); the default shows it all.
Redact = Callable[[Job], JsonValue]

#: The most storage calls each page makes, whatever the store holds (tested on 1,000,000 jobs).
QUERY_BOUNDS: Mapping[str, int] = {
    "overview": 3,  # counts, list_queue_configs, list_stats of the last hour
    "overview_partial": 3,  # the same, for the live refresh
    "counts_json": 1,  # counts
    "queues": 3,  # counts, list_queue_configs, list_limits (by key: an index per count)
    "queue_update": 2,  # get_queue_config, set_queue_config
    "partitions": 1,  # list_partitions (at most 100, a seek each)
    "jobs": 1,  # one list_jobs page (keyset on id, at most PAGE_SIZE + 1)
    "jobs_bulk": 1,  # one retry_jobs / discard_jobs / cancel_jobs / delete_jobs of BULK_LIMIT
    "job": 2,  # get, list_steps (that one job's steps)
    "job_action": 1,  # cancel, or one retry_jobs / discard_jobs / delete_jobs of that job
    "schedules": 1,  # list_leaders, plus one get_cursor per cron schedule (the App's)
    "nodes": 2,  # list_nodes, list_leaders
    "correctness": 1,  # list_stats of the window shown (its rows: minutes x queues, not jobs)
    "workflows": 1,  # list_workflows (at most 100 of them)
    "workflow": 3,  # list_workflows of it, one list_jobs (at most 1,000), its list_edges
}

PAGE_SIZE = 50  # jobs per page of the job list
#: Most jobs one action on a filter ("retry all", ...) changes; run it again for the rest.
BULK_LIMIT = 1000
_RETRYABLE = frozenset({JobState.DEAD, JobState.CANCELLED, JobState.SCHEDULED, JobState.SUSPENDED})
_WAITING = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.SUSPENDED})
_WALL_CLOCK = RealClock()  # "now" for next cron ticks when neither a clock nor the store has one
_HERE = Path(__file__).parent
# Read once, at import: rendering a page then touches no file on the event loop.
_TEMPLATES = {p.name: p.read_text(encoding="utf-8") for p in (_HERE / "templates").glob("*.html")}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'; "
    "form-action 'self'"
)


class _Store:
    """The dashboard's transport: opened by the app's lifespan when the dashboard owns it."""

    def __init__(self, transport: Transport | None, url: str | None) -> None:
        self._transport = transport
        self.url = url  # set when the dashboard owns the transport (it opens and closes it)
        self.shown = transports.redact_url(url) if url is not None else type(transport).__name__

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise _NotOpen
        return self._transport

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if self.url is None:  # the caller's transport: the caller opens and closes it
            yield
            return
        async with transports.connect(self.url, create=False) as transport:
            self._transport = transport
            try:
                yield
            finally:
                self._transport = None


class _NotOpen(Exception):
    """A request arrived before the dashboard's lifespan opened its store."""


class _Refused(Exception):
    """A request the access rules refuse: status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def create_dashboard(
    transport: Transport | str,
    *,
    read_only: bool = False,
    token: str | None = None,
    authorize: Authorize | None = None,
    redact: Redact | None = None,
    schedules: Sequence[CronSchedule] = (),
    clock: TimeSource | None = None,
    title: str = "actorq",
    refresh_seconds: float = 2.0,
) -> Starlette:
    """The dashboard as an ASGI app, to serve alone or mount in a Starlette / FastAPI app.

    Given a URL, the dashboard owns its store: the app's lifespan opens it (never creating
    one: ``create=False``) and closes it. When mounted, run that lifespan from the host's
    (``dashboard.router.lifespan_context(dashboard)``), or pass an open transport instead,
    which the caller keeps opening and closing.

    Args:
        transport: an open :class:`~transports.Transport`, or a store URL.
        read_only: show everything, change nothing: no action is offered, every POST but the
            login is refused.
        token: a secret every page and action needs (``Authorization: Bearer`` header, or a
            login form that sets a session cookie).
        authorize: the host application's check ``(request) -> bool`` (sync or async), called
            for every request; a False answer is a 403.
        redact: what of a job's payload the job page shows (default: all of it).
        schedules: the cron schedules to show with their last and next tick (an App's
            ``app.schedules``; the store does not know them).
        clock: where "now" comes from for next ticks (default: the transport's, else the
            wall clock).
        title: the name in the page header.
        refresh_seconds: how often the overview refreshes itself.

    Raises:
        ValueError: actions are allowed (not ``read_only``) but nothing guards them: give
            ``token`` or ``authorize``; or a bad ``refresh_seconds`` or ``token``.
        TypeError: ``transport`` is neither a Transport nor a string.
        UnsupportedURL: a bad store URL (from :func:`transports.connect`, checked now).
    """
    if isinstance(transport, str):
        transports.connect(transport, create=False)  # check the URL now; connects nothing
        store = _Store(None, transport)
    elif isinstance(transport, Transport):
        store = _Store(transport, None)
    else:
        raise TypeError(f"transport is a Transport or a store URL, got {type(transport).__name__}")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ValueError("token is a non-empty string")
    if not read_only and token is None and authorize is None:
        raise ValueError(
            "a dashboard that can act needs a guard: give token=... or authorize=..., "
            "or read_only=True"
        )
    if not (isinstance(refresh_seconds, int | float) and math.isfinite(refresh_seconds)):
        raise ValueError("refresh_seconds is a finite number of seconds")
    if refresh_seconds <= 0:
        raise ValueError("refresh_seconds is > 0")
    schedules = tuple(schedules)
    if not all(isinstance(s, CronSchedule) for s in schedules):
        raise TypeError("schedules are CronSchedule records (an App's app.schedules)")
    guard = Guard(read_only=read_only, token=token, authorize=authorize)
    pages = _Pages(
        store,
        guard,
        redact,
        schedules=schedules,
        clock=clock,
        title=title,
        refresh_seconds=float(refresh_seconds),
    )
    app = Starlette(
        routes=pages.routes(),
        lifespan=store.lifespan,
        exception_handlers={
            _Refused: pages.refused,
            _NotOpen: pages.not_open,
            TransportError: pages.store_error,
        },
    )
    return app


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(_TEMPLATES),
        autoescape=True,  # every stored text is escaped; nothing is marked safe
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    return env


def _when(value: float | None) -> str:
    if value is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(value))


def _seconds(value: float | None) -> str:
    if value is None:
        return "node default"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


class _Pages:
    """The routes and their handlers; one instance per dashboard."""

    def __init__(
        self,
        store: _Store,
        guard: Guard,
        redact: Redact | None,
        *,
        schedules: tuple[CronSchedule, ...],
        clock: TimeSource | None,
        title: str,
        refresh_seconds: float,
    ) -> None:
        self.schedules = schedules
        self.clock = clock
        self.store = store
        self.guard = guard
        self.redact = redact
        self.title = title
        self.refresh_seconds = refresh_seconds
        self.templates = Jinja2Templates(env=_environment())

    def routes(self) -> list[Route | Mount]:
        get, post = ["GET"], ["POST"]
        return [
            Route("/", self._view(self.overview), methods=get, name="overview"),
            Route(
                "/partials/overview",
                self._view(self.overview_partial),
                methods=get,
                name="overview_partial",
            ),
            Route("/api/counts", self._view(self.counts_json), methods=get, name="counts_json"),
            Route("/queues", self._view(self.queues), methods=get, name="queues"),
            Route(
                "/queues/{name}", self._action(self.queue_update), methods=post, name="queue_update"
            ),
            Route(
                "/queues/{name}/partitions",
                self._view(self.partitions_page),
                methods=get,
                name="partitions",
            ),
            Route("/jobs", self._view(self.jobs), methods=get, name="jobs"),
            Route("/jobs/{job_id:int}", self._view(self.job), methods=get, name="job"),
            Route("/jobs/bulk", self._action(self.jobs_bulk), methods=post, name="jobs_bulk"),
            Route(
                "/jobs/{job_id:int}/{action}",
                self._action(self.job_action),
                methods=post,
                name="job_action",
            ),
            Route("/workflows", self._view(self.workflows_page), methods=get, name="workflows"),
            Route(
                "/workflows/{name:str}",
                self._view(self.workflow_page),
                methods=get,
                name="workflow",
            ),
            Route("/schedules", self._view(self.schedules_page), methods=get, name="schedules"),
            Route("/nodes", self._view(self.nodes_page), methods=get, name="nodes"),
            Route("/correctness", self._view(self.correctness), methods=get, name="correctness"),
            Route("/login", self.login_form, methods=get, name="login"),
            Route("/login", self.login, methods=post, name="login_post"),
            Route("/logout", self._action(self.logout, any_mode=True), methods=post, name="logout"),
            Mount(
                "/static", StaticFiles(directory=_HERE / "static", check_dir=False), name="static"
            ),
        ]

    # --- access ---------------------------------------------------------------------------

    def _view(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not await self.guard.host_allows(request):
                raise _Refused(403, "the application refused this request")
            if not self.guard.has_token(request):
                if request.headers.get("hx-request") or request.url.path.endswith("/api/counts"):
                    raise _Refused(401, "log in with the dashboard token first")
                login = request.url_for("login").include_query_params(next=request.url.path)
                return RedirectResponse(str(login), status_code=303)
            return await handler(request)

        return endpoint

    def _action(
        self, handler: Callable[[Request, FormData], Awaitable[Response]], *, any_mode: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if self.guard.read_only and not any_mode:
                raise _Refused(403, "this dashboard is read-only")
            if not await self.guard.host_allows(request):
                raise _Refused(403, "the application refused this request")
            if not self.guard.has_token(request):
                raise _Refused(401, "log in with the dashboard token first")
            form = await request.form()
            submitted = form.get(CSRF_FIELD)
            if not csrf_ok(request, submitted if isinstance(submitted, str) else None):
                raise _Refused(403, "missing or wrong CSRF token: reload the page and try again")
            return await handler(request, form)

        return endpoint

    async def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return self._render(
            request, "error.html", {"status": exc.status, "reason": exc.reason}, exc.status
        )

    async def not_open(self, request: Request, exc: Exception) -> Response:
        reason = (
            "the dashboard's store is not open: run its lifespan from the host app "
            "(dashboard.router.lifespan_context) or pass an open transport"
        )
        return self._render(request, "error.html", {"status": 503, "reason": reason}, 503)

    async def store_error(self, request: Request, exc: Exception) -> Response:
        reason = f"the store failed: {type(exc).__name__}: {exc}"
        return self._render(request, "error.html", {"status": 503, "reason": reason}, 503)

    # --- rendering ------------------------------------------------------------------------

    def _render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        csrf, new = csrf_value(request)
        context = {
            "title": self.title,
            "store": self.store.shown,
            "read_only": self.guard.read_only,
            "logged_in": self.guard.needs_login and self.guard.has_token(request),
            "csrf": csrf,
            "csrf_field": CSRF_FIELD,
            "states": list(JobState),
            "refresh_seconds": self.refresh_seconds,
            **context,
        }
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        if new:
            response.set_cookie(
                CSRF_COOKIE,
                csrf,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path=_cookie_path(request),
            )
        return response

    def _back(self, request: Request, route: str, **params: Any) -> Response:
        return RedirectResponse(str(request.url_for(route, **params)), status_code=303)

    # --- pages ----------------------------------------------------------------------------

    async def _overview_context(self) -> dict[str, Any]:
        transport = self.store.transport
        counts = await transport.counts()
        configs = {c.name: c for c in await transport.list_queue_configs()}
        totals = {state: sum(c[state] for c in counts) for state in JobState}
        last = minute_of(self._now())
        since = last - (HISTORY_MINUTES - 1) * MINUTE
        rows = await transport.list_stats(since=since)
        waits: dict[str, Histogram] = {}
        for row in rows:
            waits[row.queue] = waits.get(row.queue, Histogram.empty()) + row.wait
        every = Histogram.empty()
        for histogram in waits.values():
            every = every + histogram
        return {
            "counts": counts,
            "configs": configs,
            "totals": totals,
            "by_name": {state.value: n for state, n in totals.items()},
            "total": sum(totals.values()),
            "waits": {queue: _percentiles(h) for queue, h in waits.items()},
            "wait_all": _percentiles(every),
            "history": _chart(rows, since, last),
            "history_minutes": HISTORY_MINUTES,
        }

    async def overview(self, request: Request) -> Response:
        return self._render(request, "overview.html", await self._overview_context())

    async def overview_partial(self, request: Request) -> Response:
        return self._render(request, "_overview_table.html", await self._overview_context())

    async def counts_json(self, request: Request) -> Response:
        counts = await self.store.transport.counts()
        body = {c.queue: {s.value: c[s] for s in JobState} for c in counts}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def _queues_context(self, errors: Mapping[str, str]) -> dict[str, Any]:
        transport = self.store.transport
        counts = {c.queue: c for c in await transport.counts()}
        configs = {c.name: c for c in await transport.list_queue_configs()}
        rows = []
        for name in sorted({*counts, *configs}):
            c = counts.get(name)
            rows.append(
                {
                    "name": name,
                    "waiting": c[JobState.SCHEDULED] + c[JobState.AVAILABLE] if c else 0,
                    "running": c[JobState.RUNNING] if c else 0,
                    "config": configs.get(name) or QueueConfig(name=name),
                }
            )
        limits = await transport.list_limits()
        return {"rows": rows, "errors": errors, "limits": limits}

    async def queues(self, request: Request) -> Response:
        return self._render(request, "queues.html", await self._queues_context({}))

    async def queue_update(self, request: Request, form: FormData) -> Response:
        name = request.path_params["name"]
        try:
            changes = _queue_changes(form)
            QueueConfig(name=name, **changes)  # refuse what no node could honour, first
            current = await self.store.transport.get_queue_config(name)
            config = QueueConfig(
                name=current.name,
                paused=changes.get("paused", current.paused),
                concurrency=changes.get("concurrency", current.concurrency),
                retention=changes.get("retention", current.retention),
            )
            await self.store.transport.set_queue_config(config)
        except InvalidRequest as exc:
            context = await self._queues_context({name: str(exc)})
            return self._render(request, "queues.html", context, 400)
        return self._back(request, "queues")

    async def jobs(self, request: Request) -> Response:
        query = request.query_params
        filters = {name: query.get(name, "").strip() for name in _FILTER_FIELDS}
        filters["order"] = "oldest" if query.get("order") == "oldest" else "newest"
        error = None
        jobs: list[Job] = []
        more = False
        try:
            where = _job_filter(filters)
            newest = filters["order"] == "newest"
            cursor = _optional_id(query.get("before" if newest else "after", ""))
            found = await self.store.transport.list_jobs(
                where,
                after_id=None if newest else cursor,
                before_id=cursor if newest else None,
                newest_first=newest,
                limit=PAGE_SIZE + 1,
            )
            jobs, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
        except InvalidRequest as exc:
            error = str(exc)
            cursor = None
        next_page = None
        if more:
            key = "before" if filters["order"] == "newest" else "after"
            next_page = {key: jobs[-1].id, **filters}
        context = {
            "jobs": jobs,
            "filters": filters,
            "paged": cursor is not None,
            "next_page": next_page,
            "error": error,
            "page_size": PAGE_SIZE,
            "bulk_limit": BULK_LIMIT,
            "flash": query.get("done", ""),
        }
        return self._render(request, "jobs.html", context, 400 if error else 200)

    async def jobs_bulk(self, request: Request, form: FormData) -> Response:
        """One batch of an action on every job the list's filter matches."""
        filters = {name: str(form.get(name, "")).strip() for name in _FILTER_FIELDS}
        action = str(form.get("action", ""))
        try:
            where = _job_filter(filters)
            if where == JobFilter():
                raise InvalidRequest(
                    "an action on every job is refused: filter by state, queue, kind or error"
                )
            changed = await self._act(action, where, form, BULK_LIMIT)
        except InvalidRequest as exc:
            return self._render(request, "error.html", {"status": 400, "reason": str(exc)}, 400)
        done = f"{action}: {len(changed)} job{'' if len(changed) == 1 else 's'}"
        if len(changed) == BULK_LIMIT:
            done += " (the most one action takes: run it again for the rest)"
        url = request.url_for("jobs").include_query_params(
            **{k: v for k, v in filters.items() if v}, done=done
        )
        return RedirectResponse(str(url), status_code=303)

    async def job_action(self, request: Request, form: FormData) -> Response:
        """Retry, discard, delete or cancel one job."""
        job_id = request.path_params["job_id"]
        action = request.path_params["action"]
        try:
            if action == "cancel":
                done = f"cancel: {(await self.store.transport.cancel(job_id)).value}"
            else:
                changed = await self._act(action, JobFilter.one(job_id), form, 1)
                done = f"{action}: {'done' if changed else 'nothing changed (see its state)'}"
        except JobNotFound:
            return self._render(
                request, "error.html", {"status": 404, "reason": f"no job {job_id}"}, 404
            )
        except InvalidRequest as exc:
            return self._render(request, "error.html", {"status": 400, "reason": str(exc)}, 400)
        if action == "delete" and done.endswith("done"):
            url = request.url_for("jobs").include_query_params(done=f"job {job_id} deleted")
        else:
            url = request.url_for("job", job_id=job_id).include_query_params(done=done)
        return RedirectResponse(str(url), status_code=303)

    async def _act(self, action: str, where: JobFilter, form: FormData, limit: int) -> list[int]:
        transport = self.store.transport
        if action == "retry":
            return await transport.retry_jobs(where, limit=limit)
        if action == "cancel":
            return await transport.cancel_jobs(where, limit=limit)
        if action == "delete":
            return await transport.delete_jobs(where, limit=limit)
        if action == "discard":
            reason = str(form.get("reason", "")).strip() or "discarded from the dashboard"
            return await transport.discard_jobs(where, reason=reason, limit=limit)
        raise InvalidRequest(f"unknown action {action!r} (retry, discard, cancel or delete)")

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await self.store.transport.get(job_id)
        except (JobNotFound, InvalidRequest):
            return self._render(
                request, "error.html", {"status": 404, "reason": f"no job {job_id}"}, 404
            )
        payload = job.payload if self.redact is None else self.redact(job)
        # A step's result may hold what the payload does: hidden whenever payloads are.
        steps = [
            {
                "name": step.name,
                "attempt": step.attempt,
                "at": step.recorded_at,
                "value": None
                if self.redact is not None
                else json.dumps(step.value, ensure_ascii=False, sort_keys=True),
            }
            for step in await self.store.transport.list_steps(job.id)
        ]
        context = {
            "job": job,
            "payload": json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True),
            # A result may hold what the payload's redaction hides: shown only without a hook.
            "result": None
            if job.result is None or self.redact is not None
            else json.dumps(job.result, indent=2, ensure_ascii=False, sort_keys=True),
            "result_hidden": job.result is not None and self.redact is not None,
            "errors": list(reversed(job.errors)),
            "steps": steps,
            "can": {
                "retry": job.state in _RETRYABLE,
                "discard": job.state in _WAITING,
                "cancel": job.state.is_active and not job.cancel_requested,
                "delete": job.state is not JobState.RUNNING,
            },
            "flash": request.query_params.get("done", ""),
        }
        return self._render(request, "job.html", context)

    def _now(self) -> float:
        clock = self.clock or self.store.transport.clock or _WALL_CLOCK
        return clock.now()

    async def schedules_page(self, request: Request) -> Response:
        now = self._now()
        leaders = {lease.name: lease for lease in await self.store.transport.list_leaders()}
        rows = []
        for schedule in self.schedules:
            cursor = await self.store.transport.get_cursor(schedule.cursor)
            rows.append(
                {
                    "schedule": schedule,
                    "last": cursor if cursor is not None and math.isfinite(cursor) else None,
                    "cursor": cursor,
                    "next": schedule.next_after(now),
                }
            )
        context = {"rows": rows, "now": now, "leader": leaders.get("cron")}
        return self._render(request, "schedules.html", context)

    async def partitions_page(self, request: Request) -> Response:
        queue = request.path_params["name"]
        after = request.query_params.get("after") or None
        try:
            found = await self.store.transport.list_partitions(
                queue, after=after, limit=_PARTITIONS_SHOWN
            )
        except InvalidRequest as exc:  # InvalidQueueName too
            return self._render(request, "error.html", {"status": 400, "reason": str(exc)}, 400)
        context = {
            "queue": queue,
            "rows": found,
            "cap": MAX_PARTITION_COUNT,
            "more": found[-1].key if len(found) == _PARTITIONS_SHOWN else None,
        }
        return self._render(request, "partitions.html", context)

    async def workflows_page(self, request: Request) -> Response:
        after = request.query_params.get("after") or None
        try:
            found = await self.store.transport.list_workflows(after=after, limit=_WORKFLOWS_SHOWN)
        except InvalidRequest as exc:
            return self._render(request, "error.html", {"status": 400, "reason": str(exc)}, 400)
        context = {
            "rows": found,
            "states": list(JobState),
            "more": found[-1].workflow if len(found) == _WORKFLOWS_SHOWN else None,
        }
        return self._render(request, "workflows.html", context)

    async def workflow_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        transport = self.store.transport
        try:
            found = await transport.list_workflows(workflow=name)
        except InvalidRequest:
            found = []
        if not found:
            return self._render(
                request, "error.html", {"status": 404, "reason": f"no workflow {name}"}, 404
            )
        jobs = await transport.list_jobs(JobFilter(workflow=name), limit=_WORKFLOW_JOBS_SHOWN)
        edges = await transport.list_edges(workflow=name)
        parents: dict[int, list[Edge]] = {}
        for edge in edges:
            parents.setdefault(edge.child, []).append(edge)
        # The graph as levels: a job's level is one more than its deepest parent's.
        level: dict[int, int] = {}
        for job in jobs:  # ids grow along every edge: parents come first
            level[job.id] = 1 + max(
                (level.get(e.parent, 0) for e in parents.get(job.id, [])), default=-1
            )
        counts = ", ".join(f"{n} {state.value}" for state, n in sorted(found[0].by_state.items()))
        context = {
            "summary": found[0],
            "counts": counts,
            "jobs": jobs,
            "parents": parents,
            "levels": [
                [job for job in jobs if level[job.id] == depth]
                for depth in range(max(level.values(), default=-1) + 1)
            ],
            "more": found[0].total - len(jobs),
        }
        return self._render(request, "workflow.html", context)

    async def nodes_page(self, request: Request) -> Response:
        now = self._now()
        nodes = await self.store.transport.list_nodes()
        leaders = await self.store.transport.list_leaders()
        ids = {node.id for node in nodes}
        rows = [
            {
                "node": node,
                "alive": node.is_alive(now),
                "ago": _ago(now - node.last_seen),
                "leads": [lease.name for lease in leaders if lease.holder == node.id],
            }
            for node in nodes
        ]
        context = {
            "rows": rows,
            "alive": sum(1 for row in rows if row["alive"]),
            "orphans": [lease for lease in leaders if lease.holder not in ids],
            "now": now,
        }
        return self._render(request, "nodes.html", context)

    async def correctness(self, request: Request) -> Response:
        window = request.query_params.get("window", "1h")
        minutes = _WINDOWS.get(window)
        if minutes is None:
            minutes, window = _WINDOWS["1h"], "1h"
        last = minute_of(self._now())
        since = last - (minutes - 1) * MINUTE
        rows = await self.store.transport.list_stats(since=since)
        queues: dict[str, dict[str, int]] = {}
        recoveries: dict[str, Histogram] = {}
        for row in rows:
            sums = queues.setdefault(row.queue, dict.fromkeys(_CORRECTNESS, 0))
            for name in _CORRECTNESS:
                sums[name] += getattr(row, name)
            recoveries[row.queue] = recoveries.get(row.queue, Histogram.empty()) + row.recovery
        totals = {name: sum(q[name] for q in queues.values()) for name in _CORRECTNESS}
        every = Histogram.empty()
        for histogram in recoveries.values():
            every = every + histogram
        context = {
            "queues": dict(sorted(queues.items())),
            "totals": totals,
            "recovery": {queue: _percentiles(h) for queue, h in recoveries.items()},
            "recovery_all": _percentiles(every),
            "recovery_chart": _recovery_chart(rows, since, last),
            "window": window,
            "windows": list(_WINDOWS),
        }
        return self._render(request, "correctness.html", context)

    # --- login ----------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if not self.guard.needs_login:
            return self._back(request, "overview")
        context = {"next": _safe_next(request.query_params.get("next", "")), "error": None}
        return self._render(request, "login.html", context)

    async def login(self, request: Request) -> Response:
        if not self.guard.needs_login:
            return self._back(request, "overview")
        form = await request.form()
        submitted = form.get(CSRF_FIELD)
        if not csrf_ok(request, submitted if isinstance(submitted, str) else None):
            raise _Refused(403, "missing or wrong CSRF token: reload the page and try again")
        given = form.get("token")
        target = _safe_next(str(form.get("next", "")))
        if not isinstance(given, str) or not self.guard.token_matches(given):
            context = {"next": target, "error": "that is not the dashboard's token"}
            return self._render(request, "login.html", context, 401)
        root = str(request.url_for("overview"))
        response = RedirectResponse(_join(root, target), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.guard.session_value(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=_cookie_path(request),
        )
        return response

    async def logout(self, request: Request, _form: FormData) -> Response:
        response = self._back(request, "login" if self.guard.needs_login else "overview")
        response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
        return response


HISTORY_MINUTES = 60  # minutes of history the overview charts
_WINDOWS = {"1h": 60, "6h": 360, "24h": 1440}  # the correctness panel's windows, in minutes
# The fencing and recovery counters of QueueStats, as the correctness panel shows them.
_CORRECTNESS = ("finalize_refused", "leases_lost", "reclaimed", "deduplicated")


def _percentiles(histogram: Histogram) -> dict[str, str]:
    return {
        "count": str(histogram.count),
        "p50": _duration(histogram.quantile(0.5)),
        "p99": _duration(histogram.quantile(0.99)),
    }


def _duration(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"≤{value * 1000:.0f} ms"
    return f"≤{value:.3g} s"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _chart(rows: Sequence[QueueStats], since: float, last: float) -> str:
    """The overview chart's series as JSON: minutes, then succeeded, failed and dead per minute."""
    steps = round((last - since) / MINUTE) + 1
    minutes = [since + i * MINUTE for i in range(steps)]
    series: dict[str, list[int]] = {name: [0] * steps for name in ("succeeded", "failed", "dead")}
    for row in rows:
        index = round((row.minute - since) / MINUTE)
        if 0 <= index < steps:
            for name, values in series.items():
                values[index] += getattr(row, name)
    return json.dumps([minutes, series["succeeded"], series["failed"], series["dead"]])


def _recovery_chart(rows: Sequence[QueueStats], since: float, last: float) -> str:
    """The correctness chart's series as JSON: minutes, then the recovery time's p50 and p99
    of each minute over every queue (None in a minute that recovered nothing)."""
    steps = round((last - since) / MINUTE) + 1
    merged = [Histogram.empty() for _ in range(steps)]
    for row in rows:
        index = round((row.minute - since) / MINUTE)
        if 0 <= index < steps and row.recovery.count:
            merged[index] = merged[index] + row.recovery
    return json.dumps(
        [
            [since + i * MINUTE for i in range(steps)],
            [h.quantile(0.5) for h in merged],
            [h.quantile(0.99) for h in merged],
        ]
    )


def _cookie_path(request: Request) -> str:
    return request.scope.get("root_path", "") or "/"


def _safe_next(target: str) -> str:
    # Only a path inside this dashboard: never another site (an open redirect).
    root_free = target.lstrip("/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return ""
    return root_free


def _join(root: str, tail: str) -> str:
    return root.rstrip("/") + "/" + tail if tail else root


_FILTER_FIELDS = ("state", "queue", "kind", "error")


def _job_filter(filters: Mapping[str, str]) -> JobFilter:
    state = _state_param(filters["state"])
    return JobFilter(
        states=() if state is None else (state,),
        queue=filters["queue"] or None,
        kind=filters["kind"] or None,
        error=filters["error"] or None,
    )


def _optional_id(text: str) -> int | None:
    return None if not text else _int_param(text, "the page cursor")


def _int_param(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequest(f"{name} is a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise InvalidRequest(f"{name} is between 0 and 2**63 - 1, got {text!r}")
    return value


def _state_param(text: str) -> JobState | None:
    if not text:
        return None
    try:
        return JobState(text)
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise InvalidRequest(f"unknown state {text!r} (one of {known})") from None


def _queue_changes(form: FormData) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    action = form.get("action")
    if action == "pause":
        changes["paused"] = True
    elif action == "resume":
        changes["paused"] = False
    elif action == "save":
        concurrency = str(form.get("concurrency", "")).strip()
        retention = str(form.get("retention", "")).strip()
        changes["concurrency"] = None if not concurrency else _number(concurrency, int)
        changes["retention"] = None if not retention else _number(retention, float)
    else:
        raise InvalidRequest(f"unknown queue action {action!r}")
    return changes


def _number(text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number of seconds"
        raise InvalidRequest(f"{text!r} is not {noun}") from None
