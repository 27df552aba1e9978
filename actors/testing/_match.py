"""Matching stored jobs against what a test expects, and saying why they differ."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import cattrs

from actors.jobs import App, Task
from transports import Job, JobState, JsonValue

from ._errors import TestingError

__all__: list[str] = []

#: What assert_enqueued looks at unless told a state: jobs still waiting to run.
WAITING = (JobState.AVAILABLE, JobState.SCHEDULED)

_plain = cattrs.Converter()
_UNSET: Any = object()


def job_state(value: JobState | str) -> JobState:
    """A state from its name.

    Raises:
        TestingError: no state has that name.
    """
    try:
        return JobState(value)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise TestingError(f"no job state is named {value!r} (one of {names})") from None


def _states(state: JobState | str | Iterable[JobState | str] | None) -> tuple[JobState, ...]:
    if state is None:
        return WAITING
    if isinstance(state, str):
        return (job_state(state),)
    return tuple(job_state(s) for s in state)


@attrs.frozen(kw_only=True)
class Expectation:
    """What a test expects of a job; unset fields match anything."""

    kind: str | None
    payload: JsonValue = attrs.field(default=_UNSET)  # _UNSET: any payload
    partial: bool = False  # the payload is a mapping whose keys must match, others ignored
    queue: str | None = None
    states: tuple[JobState, ...] = WAITING
    priority: int | None = None

    @classmethod
    def build(
        cls,
        app: App,
        kind_or_task: str | Task[Any] | None,
        *,
        payload: Any = _UNSET,
        queue: str | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        priority: int | None = None,
    ) -> Expectation:
        """Turn ``assert_enqueued``'s arguments into an Expectation.

        An attrs instance (or any typed payload) is stored as its task stores it, and must
        match the whole stored payload; a mapping matches the keys it names, at any depth.
        """
        task: Task[Any] | None
        kind: str | None
        if isinstance(kind_or_task, Task):
            task, kind = kind_or_task, kind_or_task.kind
        else:
            kind = kind_or_task
            task = app.get(kind) if kind is not None else None
        partial = False
        expected: JsonValue = _UNSET
        if payload is not _UNSET:
            if isinstance(payload, Mapping):
                partial, expected = True, _plain.unstructure(dict(payload))
            elif task is not None and task.payload_type is not None:
                expected = task.unstructure(payload)
            else:
                expected = _plain.unstructure(payload)
        return cls(
            kind=kind,
            payload=expected,
            partial=partial,
            queue=queue,
            states=_states(state),
            priority=priority,
        )

    def differences(self, job: Job, *, with_state: bool = True) -> list[str]:
        """Why ``job`` does not match, one line per field; empty when it matches."""
        found: list[str] = []
        if self.kind is not None and job.kind != self.kind:
            found.append(f"kind is {job.kind!r}, expected {self.kind!r}")
        if self.queue is not None and job.queue != self.queue:
            found.append(f"queue is {job.queue!r}, expected {self.queue!r}")
        if with_state and job.state not in self.states:
            found.append(f"state is {job.state}, expected {_or(self.states)}")
        if self.priority is not None and job.priority != self.priority:
            found.append(f"priority is {job.priority}, expected {self.priority}")
        if self.payload is not _UNSET:
            found.extend(_payload_differences("payload", job.payload, self.payload, self.partial))
        return found

    def describe(self) -> str:
        """The expectation in one line."""
        parts = [f"kind={self.kind!r}"] if self.kind is not None else []
        if self.payload is not _UNSET:
            parts.append(f"payload {'contains' if self.partial else '='} {self.payload!r}")
        if self.queue is not None:
            parts.append(f"queue={self.queue!r}")
        if self.priority is not None:
            parts.append(f"priority={self.priority}")
        parts.append(f"state {_or(self.states)}")
        return ", ".join(parts)


def _or(states: Sequence[JobState]) -> str:
    return " or ".join(str(s) for s in states)


def _payload_differences(
    where: str, actual: JsonValue, expected: JsonValue, partial: bool
) -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        found: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{where}[{key!r}] is missing, expected {value!r}")
            else:
                found.extend(_payload_differences(f"{where}[{key!r}]", actual[key], value, partial))
        if not partial:
            found.extend(
                f"{where}[{key!r}] is {actual[key]!r}, not expected"
                for key in actual
                if key not in expected
            )
        return found
    if actual != expected or type(actual) is not type(expected):
        return [f"{where} is {actual!r}, expected {expected!r}"]
    return []


def describe_job(job: Job) -> str:
    """One stored job, as a failure message lists it."""
    text = (
        f"#{job.id} {job.kind} queue={job.queue} state={job.state} priority={job.priority} "
        f"attempt={job.attempt}/{job.max_attempts}"
    )
    if job.state is JobState.SCHEDULED:
        text += f" run_at={job.run_at:g}"
    text += f" payload={job.payload!r}"
    if job.last_error:
        text += f" last_error={job.last_error!r}"
    return text


def not_enqueued_message(expectation: Expectation, jobs: Sequence[Job]) -> str:
    """The message of a failed ``assert_enqueued``: what was expected, what is there, and
    why each candidate differs."""
    lines = [f"no job matches {expectation.describe()}"]
    waiting = [job for job in jobs if job.state in expectation.states]
    elsewhere = [
        job
        for job in jobs
        if job.state not in expectation.states
        and not expectation.differences(job, with_state=False)
    ]
    if waiting:
        lines.append(f"jobs in state {_or(expectation.states)} ({len(waiting)}):")
        for job in waiting:
            lines.append(f"  {describe_job(job)}")
            lines.extend(f"      {line}" for line in expectation.differences(job))
    else:
        lines.append(f"no job is in state {_or(expectation.states)}")
    if elsewhere:
        lines.append("matching jobs in other states:")
        lines.extend(f"  {describe_job(job)}" for job in elsewhere)
    return "\n".join(lines)


def unexpected_message(expectation: Expectation, matches: Sequence[Job]) -> str:
    """The message of a failed ``refute_enqueued``: the jobs that matched."""
    lines = [f"{len(matches)} job(s) match {expectation.describe()}:"]
    lines.extend(f"  {describe_job(job)}" for job in matches)
    return "\n".join(lines)
