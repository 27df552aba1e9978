"""``actorq workflows``: list workflows, show one (its jobs and the graph), cancel one.

A workflow is the jobs enqueued with one ``workflow=`` label; its edges are the ``after=``
dependencies between them. Every command opens an existing store only (never creates one).
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transports import JobFilter, JobState, Transport

from ._errors import CliFailure
from ._jobs import _connected, _loop_option, _short, _transport_option, _when
from ._types import Label

__all__ = ["workflows"]

_SHOWN = 1000  # most jobs of one workflow `show` lists


@click.group("workflows")
def workflows() -> None:
    """List workflows, show one with its jobs and dependency graph, cancel one whole."""


@workflows.command("list")
@click.option("--after", type=Label(), default=None, help="Only workflows named after this.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@_transport_option
@_loop_option
def list_workflows(after: str | None, limit: int, url: str, loop: str) -> None:
    """Each workflow with its jobs counted by state, by name."""

    async def run(transport: Transport) -> None:
        found = await transport.list_workflows(after=after, limit=limit)
        table = Table(title=f"{len(found)} workflows")
        for column in ["workflow", "jobs", *[state.value for state in JobState], "finished"]:
            table.add_column(column)
        for summary in found:
            table.add_row(
                escape(summary.workflow),
                str(summary.total),
                *[str(summary.by_state.get(state, 0) or "") for state in JobState],
                _when(summary.finished_at),
            )
        Console().print(table)
        if len(found) == limit:
            click.echo(f"more: add --after {found[-1].workflow}", err=True)

    _connected(url, loop, run)


@workflows.command("show")
@click.argument("workflow", type=Label())
@_transport_option
@_loop_option
def show(workflow: str, url: str, loop: str) -> None:
    """WORKFLOW's counts, its jobs and each job's parents (the graph, as a table)."""

    async def run(transport: Transport) -> None:
        summaries = await transport.list_workflows(workflow=workflow)
        if not summaries:
            raise CliFailure(f"no workflow is named {workflow!r}", "see actorq workflows list")
        (summary,) = summaries
        jobs = await transport.list_jobs(JobFilter(workflow=workflow), limit=_SHOWN)
        edges = await transport.list_edges(workflow=workflow)
        parents: dict[int, list[str]] = {}
        for edge in edges:
            mark = "" if edge.on_failure.value == "cancel" else " (runs anyway)"
            parents.setdefault(edge.child, []).append(f"{edge.parent}{mark}")
        console = Console()
        counts = ", ".join(f"{n} {state.value}" for state, n in sorted(summary.by_state.items()))
        console.print(f"workflow {escape(workflow)}: {summary.total} jobs ({counts})", markup=False)
        table = Table(title="jobs and their parents")
        for column in ["id", "kind", "state", "after", "last error"]:
            table.add_column(column)
        for job in jobs:
            table.add_row(
                str(job.id),
                escape(job.kind),
                job.state.value,
                escape(", ".join(parents.get(job.id, []))),
                escape(_short(job.last_error)),
            )
        console.print(table)
        if summary.total > len(jobs):
            click.echo(f"showing the first {len(jobs)} of {summary.total} jobs", err=True)

    _connected(url, loop, run)


@workflows.command("cancel")
@click.argument("workflow", type=Label())
@_transport_option
@_loop_option
def cancel(workflow: str, url: str, loop: str) -> None:
    """Cancel every active job of WORKFLOW (running ones are asked to stop)."""

    async def run(transport: Transport) -> None:
        if not await transport.list_workflows(workflow=workflow):
            raise CliFailure(f"no workflow is named {workflow!r}", "see actorq workflows list")
        total = 0
        while True:
            changed = await transport.cancel_jobs(JobFilter(workflow=workflow), limit=1000)
            if not changed:
                break
            total += len(changed)
        click.echo(f"cancelled {total} jobs of workflow {workflow}")

    _connected(url, loop, run)
