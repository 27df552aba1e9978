"""``actorq jobs``: list, show, retry, discard, delete and cancel jobs, one or by filter.

Every subcommand is a client of the transport contract (``list_jobs`` and the operator
actions); the rules of which job each action takes live there (``transports.Transport``). A
bulk action loops over the filter in batches of ``--batch-size`` (each batch one atomic call),
printing a progress line per batch on stderr and a summary on stdout, until nothing matching is
left (or ``--limit`` jobs were done). A bulk action with no filter at all is refused unless
``--all`` says so, and every bad value is refused before anything connects.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transports import (
    InvalidRequest,
    Job,
    JobFilter,
    JobNotFound,
    JobState,
    Transport,
)
from transports.lowlevel import INT64_MAX, Step, WallClock

from ._errors import USAGE, CliFailure
from ._main import DEFAULT_TRANSPORT, _run, _verbose_param, _with_transport
from ._types import KindName, Label, QueueName, StoreURL, parse_duration

__all__ = ["jobs"]

#: Jobs one call of a bulk action takes (each batch is one atomic call to the store).
DEFAULT_BATCH = 1000
#: Jobs ``actorq jobs list`` shows unless told otherwise.
DEFAULT_LIST = 50
#: An operator's discard reason unless one is given.
DEFAULT_REASON = "discarded by an operator"

_STATES = [state.value for state in JobState]


class When(click.ParamType[float]):
    """A point in time: a duration ago (``90s``, ``15m``, ``2h``, ``7d``) or an ISO 8601 date
    and time (``2026-12-01``, ``2026-12-01T14:30:00+00:00``; without a zone: UTC)."""

    name = "when"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            ago = parse_duration(text)
        except ValueError:
            pass
        else:
            if not math.isfinite(ago):
                self.fail(f"{value!r} is not a finite duration", param, ctx)
            return WallClock().now() - ago
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is neither a duration ago (15m, 2h, 7d) nor an ISO date and time "
                "(2026-12-01T14:30:00)",
                param,
                ctx,
            )
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()


def _filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The filter options every subcommand but ``show`` takes."""
    options = [
        click.option(
            "--state",
            "states",
            multiple=True,
            type=click.Choice(_STATES),
            help="Only jobs in this state (repeatable: any of them).",
        ),
        click.option("--queue", "-q", type=QueueName(), default=None, help="Only this queue."),
        click.option("--kind", "-k", type=KindName(), default=None, help="Only this kind."),
        click.option(
            "--error",
            "error",
            type=Label(),
            default=None,
            help="Only jobs whose last error holds this text (ASCII case ignored).",
        ),
        click.option(
            "--since",
            type=When(),
            default=None,
            help="Only jobs created at or after this time (2h = two hours ago, or ISO 8601).",
        ),
        click.option(
            "--until",
            type=When(),
            default=None,
            help="Only jobs created before this time (2h = two hours ago, or ISO 8601).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _transport_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--transport",
        "-t",
        "url",
        envvar="ACTORQ_TRANSPORT",
        default=DEFAULT_TRANSPORT,
        show_default=True,
        type=StoreURL(memory_refused="there are no jobs there to show or change"),
        help="Store URL: sqlite:///file.db, postgresql://user@host/db (env ACTORQ_TRANSPORT).",
    )(fn)


def _loop_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--loop",
        type=click.Choice(["asyncio", "trio"]),
        default="asyncio",
        show_default=True,
        help="Event loop to run on.",
    )(fn)


def _where(
    ids: tuple[int, ...],
    states: tuple[str, ...],
    queue: str | None,
    kind: str | None,
    error: str | None,
    since: float | None,
    until: float | None,
) -> JobFilter:
    if since is not None and until is not None and since >= until:
        raise CliFailure(
            "--since is not before --until", "give a --since earlier than --until", USAGE
        )
    try:
        return JobFilter(
            ids=ids or None,
            states=states,
            queue=queue,
            kind=kind,
            error=error,
            created_after=since,
            created_before=until,
        )
    except InvalidRequest as exc:
        raise CliFailure(str(exc), "fix the value; nothing was done", USAGE) from exc


def _connected(url: str, loop: str, fn: Callable[[Transport], Awaitable[None]]) -> None:
    _run(loop, lambda: _with_transport(url, fn, create=False))


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@click.group("jobs")
def jobs() -> None:
    """List, show, retry, discard, delete and cancel jobs (one, several, or by filter).

    Retry takes dead, cancelled and scheduled jobs (to available now, with a fresh attempt
    budget); discard takes waiting jobs (to dead, the reason recorded); delete takes every job
    that is not running; cancel ends waiting jobs and asks running ones to stop. A running job
    is never touched otherwise.
    """


@jobs.command("list")
@_filter_options
@click.option(
    "--id",
    "ids",
    multiple=True,
    type=click.IntRange(1, INT64_MAX),
    help="Only this job (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=DEFAULT_LIST,
    show_default=True,
    help="Most jobs shown.",
)
@click.option(
    "--before",
    type=click.IntRange(1, INT64_MAX),
    default=None,
    help="Only jobs with a smaller id (the next page: the last id shown).",
)
@_transport_option
@_loop_option
def list_command(
    states: tuple[str, ...],
    queue: str | None,
    kind: str | None,
    error: str | None,
    since: float | None,
    until: float | None,
    ids: tuple[int, ...],
    limit: int,
    before: int | None,
    url: str,
    loop: str,
) -> None:
    """Show the matching jobs, newest first, as a table (never creates a store)."""
    where = _where(ids, states, queue, kind, error, since, until)

    async def run(transport: Transport) -> None:
        found = await transport.list_jobs(where, before_id=before, newest_first=True, limit=limit)
        table = Table(title=f"{len(found)} jobs" + (" (newest first)" if found else ""))
        for column in ["id", "kind", "queue", "state", "attempt", "created", "last error"]:
            table.add_column(column, justify="right" if column in ("id", "attempt") else "left")
        for job in found:
            table.add_row(
                str(job.id),
                job.kind,
                job.queue,
                job.state.value + (" (cancel asked)" if job.cancel_requested else ""),
                f"{job.attempt}/{job.max_attempts}",
                _when(job.created_at),
                escape(_short(job.last_error)),
            )
        Console().print(table)
        if len(found) == limit:
            click.echo(f"more: add --before {found[-1].id}", err=True)

    _connected(url, loop, run)


@jobs.command("show")
@click.argument("job_id", type=click.IntRange(1, INT64_MAX))
@_transport_option
@_loop_option
def show(job_id: int, url: str, loop: str) -> None:
    """Show JOB_ID: its fields, payload, result, headers, recorded steps and error history
    (never creates a store)."""

    async def run(transport: Transport) -> None:
        job = await transport.get(job_id)
        edges = await transport.list_edges([job_id])
        parents = [e.parent for e in edges if e.child == job_id]
        _print_job(job, await transport.list_steps(job_id), parents)

    _connected(url, loop, run)


def _print_job(job: Job, steps: Sequence[Step] = (), parents: Sequence[int] = ()) -> None:
    console = Console()
    table = Table(title=f"job {job.id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    rows: list[tuple[str, str]] = [
        ("kind", job.kind),
        ("queue", job.queue),
        ("state", job.state.value),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("priority", str(job.priority)),
        ("run at", _when(job.run_at)),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("updated", _when(job.updated_at)),
        ("lease owner", job.lease_owner or ""),
        ("lease expires", _when(job.lease_expires_at)),
        ("cancel requested", "yes" if job.cancel_requested else "no"),
        ("dedupe key", job.dedupe_key or ""),
        ("waiting for", job.wait_key or ""),
        ("last error", job.last_error or ""),
        ("headers", json.dumps(dict(job.headers), ensure_ascii=False) if job.headers else ""),
        ("payload", json.dumps(job.payload, ensure_ascii=False)),
        ("result", _result_text(job)),
        ("workflow", job.workflow or ""),
        ("after", ", ".join(str(parent) for parent in parents or [])),
    ]
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table)
    if steps:
        recorded = Table(title=f"steps ({len(steps)}, as recorded)")
        for column in ["step", "attempt", "at", "result"]:
            recorded.add_column(column)
        for step in steps:
            text = json.dumps(step.value, ensure_ascii=False)
            recorded.add_row(
                escape(step.name), str(step.attempt), _when(step.recorded_at), escape(_short(text))
            )
        console.print(recorded)
    else:
        console.print("no steps recorded")
    if not job.errors:
        console.print("no errors recorded")
        return
    history = Table(title=f"error history ({len(job.errors)}, oldest first)")
    for column in ["attempt", "at", "owner", "type", "message"]:
        history.add_column(column)
    for entry in job.errors:
        history.add_row(
            str(entry.attempt),
            _when(entry.at),
            escape(entry.owner or "operator"),
            escape(entry.type),
            escape(entry.message),
        )
    console.print(history)
    newest = job.errors[-1]
    if newest.traceback:
        console.print(f"traceback of attempt {newest.attempt}:", markup=False)
        console.print(newest.traceback, markup=False, highlight=False)


_MAX_SHOWN_RESULT = 4_000  # characters of a result shown; the rest is cut


def _result_text(job: Job) -> str:
    """The job's result as compact JSON (cut when long); empty when it has none."""
    if job.result is None:
        return ""
    text = json.dumps(job.result, ensure_ascii=False)
    if len(text) > _MAX_SHOWN_RESULT:
        return f"{text[:_MAX_SHOWN_RESULT]}... ({len(text)} characters)"
    return text


def _bulk(verb: str, call: Callable[..., Awaitable[list[int]]]) -> Any:
    """A bulk subcommand: ``actorq jobs <verb> [IDS]... [filters]``."""

    def command(
        ids: tuple[int, ...],
        states: tuple[str, ...],
        queue: str | None,
        kind: str | None,
        error: str | None,
        since: float | None,
        until: float | None,
        every: bool,
        limit: int | None,
        batch_size: int,
        url: str,
        loop: str,
        **extra: Any,
    ) -> None:
        where = _where(ids, states, queue, kind, error, since, until)
        if where == JobFilter() and not every:
            raise CliFailure(
                f"no job ids and no filter: this would {verb} every job it may",
                "name ids, give a filter (--state, --queue, --kind ...), or add --all",
                USAGE,
            )

        async def run(transport: Transport) -> None:
            done: list[int] = []
            while limit is None or len(done) < limit:
                size = batch_size if limit is None else min(batch_size, limit - len(done))
                batch = await call(transport, where, size, **extra)
                if not batch:
                    break
                done.extend(batch)
                click.echo(
                    f"{verb}: {_jobs(len(batch))} in this batch, {len(done)} so far", err=True
                )
            missing = [
                job_id
                for job_id in ids
                if job_id not in done and not await _explain_skipped(transport, job_id, verb)
            ]
            if done or not missing:  # a command that only named unknown jobs just fails
                shown = ", ".join(str(i) for i in sorted(done)[:10])
                more = ", ..." if len(done) > 10 else ""
                suffix = f": {shown}{more}" if done else ""
                click.echo(f"{_PAST[verb]} {_jobs(len(done))}{suffix}")
            if missing:
                raise CliFailure(
                    f"no job has id {', '.join(map(str, missing))}",
                    "check the job id; finished jobs are cleaned up",
                )

        _connected(url, loop, run)

    return command


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


_PAST = {"retry": "retried", "discard": "discarded", "delete": "deleted", "cancel": "cancelled"}


async def _explain_skipped(transport: Transport, job_id: int, verb: str) -> bool:
    """Say why a named job was left alone; False when it does not exist."""
    try:
        job = await transport.get(job_id)
    except JobNotFound:
        return False
    state = job.state.value + (", cancel already asked" if job.cancel_requested else "")
    click.echo(f"job {job_id}: {state}, which {verb} does not take (skipped)", err=True)
    return True


def _bulk_options(verb: str) -> Callable[[Callable[..., Any]], click.Command]:
    def decorate(fn: Callable[..., Any]) -> click.Command:
        fn = click.argument("ids", nargs=-1, type=click.IntRange(1, INT64_MAX))(fn)
        fn = _filter_options(fn)
        fn = click.option(
            "--all",
            "every",
            is_flag=True,
            help=f"With no ids and no filter: {verb} every job it may.",
        )(fn)
        fn = click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=None,
            help=f"{verb.capitalize()} at most this many jobs in all (default: every match).",
        )(fn)
        fn = click.option(
            "--batch-size",
            type=click.IntRange(1, 100_000),
            default=DEFAULT_BATCH,
            show_default=True,
            help="Jobs per atomic call to the store.",
        )(fn)
        fn = _transport_option(fn)
        fn = _loop_option(fn)
        return jobs.command(verb)(fn)

    return decorate


async def _retry(transport: Transport, where: JobFilter, limit: int) -> list[int]:
    return await transport.retry_jobs(where, limit=limit)


async def _discard(transport: Transport, where: JobFilter, limit: int, *, reason: str) -> list[int]:
    return await transport.discard_jobs(where, reason=reason, limit=limit)


async def _delete(transport: Transport, where: JobFilter, limit: int) -> list[int]:
    return await transport.delete_jobs(where, limit=limit)


async def _cancel(transport: Transport, where: JobFilter, limit: int) -> list[int]:
    return await transport.cancel_jobs(where, limit=limit)


retry = _bulk_options("retry")(_bulk("retry", _retry))
retry.help = """Run again the matching dead, cancelled and scheduled jobs (IDS, or a filter).

Each becomes available now with a fresh attempt budget (attempt 0); its error history stays.
Other states are skipped. Example: actorq jobs retry --state dead --kind email.send
"""

discard = _bulk_options("discard")(_bulk("discard", _discard))
discard.params.insert(
    -2,
    click.Option(
        ["--reason"],
        type=Label(),
        default=DEFAULT_REASON,
        show_default=True,
        help="Why: stored as the job's last error and in its history.",
    ),
)
discard.help = """End the matching waiting jobs (scheduled or available) as dead, with a reason.

Running and finished jobs are skipped.
"""

delete = _bulk_options("delete")(_bulk("delete", _delete))
delete.help = """Delete the matching jobs that are not running (IDS, or a filter).

Example: actorq jobs delete --state succeeded --until 7d
"""

cancel = _bulk_options("cancel")(_bulk("cancel", _cancel))
cancel.help = """Cancel the matching jobs: a waiting one ends at once, a running one is asked
to stop (its worker sees the request on its next heartbeat). Finished jobs are skipped.
"""


for _command in jobs.commands.values():
    _command.params.append(_verbose_param())
