"""How the ``actorq`` command reports a mistake: one line, a hint, the right exit status.

Every error reaches the user as ``actorq: error: <what is wrong> (<what to do>)`` on stderr,
with exit status 2 when the command line asked for something malformed (a bad option value,
an unknown kind, a payload of the wrong type: nothing was written) and 1 when the request was
fine but failed (no store, the store went away, a job that does not exist). ``-v`` prints
the traceback first. Passwords in store URLs never appear.
"""

from __future__ import annotations

import errno
from urllib.parse import urlsplit

import click

import transports

from ..core import ActorError
from ..jobs import ConfigInvalid, JobError, PayloadInvalid, UnknownJobKind
from ..telemetry import MetricsServerFailed

__all__ = ["AppLoadError", "CliFailure", "describe"]

#: Exit status of a malformed command line (as click and argparse use it).
USAGE = 2
#: Exit status of a well-formed request that failed.
FAILURE = 1


class CliFailure(click.ClickException):
    """A mistake reported as one line: ``<message> (<hint>)``, with its exit status."""

    def __init__(self, message: str, hint: str, exit_code: int = FAILURE) -> None:
        super().__init__(_one_line(message))
        self.hint = _one_line(hint)
        self.exit_code = exit_code  # type: ignore[misc]  # click's default is a class attribute

    def format_message(self) -> str:
        return f"{self.message} ({self.hint})"


class AppLoadError(CliFailure):
    """``module:attribute`` does not name an importable actorq App (see :func:`load_app`)."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def redact_url(url: str) -> str:
    """``url`` as shown to the user: any password replaced by ``***``, otherwise unchanged."""
    if "@" not in url:
        return url
    return transports.redact_url(url)


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (in any spelling of the URL) replaced."""
    if not url:
        return text
    text = text.replace(url, redact_url(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return text


def _leaf(exc: BaseException) -> BaseException:
    # A task group wraps what one task raised; the user wants the error, not the group.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException, *, url: str | None = None) -> CliFailure:
    """The one-line report of ``exc``, with what to do about it and the exit status.

    Args:
        exc: what the command raised.
        url: the store URL the command used (named in hints, its password redacted).
    """
    exc = _leaf(exc)
    if isinstance(exc, CliFailure):
        return exc
    shown = redact_url(url) if url else "URL"
    text = str(exc) or type(exc).__name__
    failure: CliFailure
    if isinstance(exc, transports.StoreNotFound):
        failure = CliFailure(
            f"no store at {shown}" if url else text,
            f'run "actorq migrate -t {shown}" first',
        )
    elif isinstance(exc, transports.SchemaVersionMismatch):
        failure = CliFailure(text, f'run "actorq migrate -t {shown}" with this version')
    elif isinstance(exc, transports.UnsupportedURL):
        failure = CliFailure(
            text,
            "give a store URL such as sqlite:///file.db or postgresql://user@host/db",
            USAGE,
        )
    elif isinstance(exc, transports.InvalidQueueName):
        failure = CliFailure(text, "fix the name; nothing was written", USAGE)
    elif isinstance(exc, transports.PayloadTooLarge):
        failure = CliFailure(
            text,
            "raise --max-payload-bytes, or store the data elsewhere and pass a reference",
            USAGE,
        )
    elif isinstance(exc, transports.InvalidRequest):
        failure = CliFailure(text, "fix the value; nothing was written", USAGE)
    elif isinstance(exc, transports.JobNotFound):
        failure = CliFailure(text, "check the job id; finished jobs are cleaned up")
    elif isinstance(exc, transports.ConnectionLost):
        failure = CliFailure(
            f"lost the store: {text}", f"check that {shown} is reachable, then retry"
        )
    elif isinstance(exc, transports.StoreReadOnly):
        failure = CliFailure(
            text, f"give this process write access to {shown}, or point it at a writable store"
        )
    elif isinstance(exc, transports.TransportError):
        failure = CliFailure(f"{type(exc).__name__}: {text}", "run with -v for the traceback")
    elif isinstance(exc, MetricsServerFailed):
        failure = CliFailure(text, "choose another --metrics-port or --metrics-host")
    elif isinstance(exc, UnknownJobKind | PayloadInvalid | ConfigInvalid):
        failure = CliFailure(text, "fix the value; nothing was written", USAGE)
    elif isinstance(exc, JobError):
        failure = CliFailure(f"{type(exc).__name__}: {text}", "run with -v for the traceback")
    elif isinstance(exc, ActorError):
        failure = CliFailure(
            f"the node failed: {type(exc).__name__}: {text}", "run with -v for the traceback"
        )
    elif isinstance(exc, OSError):
        failure = _os_error(exc)
    else:
        failure = CliFailure(
            f"unexpected {type(exc).__name__}: {text}", "run with -v for the traceback"
        )
    return CliFailure(scrub(failure.message, url), scrub(failure.hint, url), failure.exit_code)


def _os_error(exc: OSError) -> CliFailure:
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        what = f"{what}: {exc.filename}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CliFailure(what, "check the file's permissions")
    if exc.errno == errno.ENOENT:
        return CliFailure(what, "check the path")
    return CliFailure(what, "run with -v for the traceback")
