"""The errors every transport raises, whatever its backend.

Driver exceptions (``sqlite3``, ``asyncpg``, ``OSError``) never escape ``transports``: each
backend translates them at its boundary with :func:`map_exceptions`, keeping the original on
``__cause__``. The memory backend raises the same classes, so code written against one backend
handles errors of all of them.

Hierarchy::

    TransportError
    ├── InvalidRequest (also ValueError)      the caller asked for something malformed;
    │   ├── InvalidQueueName                   nothing was written (a bug to fix, never
    │   ├── PayloadNotSerializable             worth retrying)
    │   ├── PayloadTooLarge
    │   │   └── StepTooLarge                   a step's (or signal's) value is over MAX_STEP_BYTES
    │   ├── InvalidStepName                    a step name or event key that is not valid
    │   ├── ResultNotSerializable              a Complete's result is not JSON
    │   ├── ResultTooLarge                     ... or longer than max_result_bytes
    │   └── DependencyInvalid                  an enqueue's ``after`` names no job it may wait
    │       ├── UnknownDependency              for: a job that does not exist, or
    │       └── DependencyCycle                the request itself or a later one of its batch
    │   └── UnsupportedURL                     transports.connect() got a URL it cannot serve
    ├── JobNotFound (also LookupError)
    ├── TransportClosed                         used after aclose()
    ├── ConnectionLost                          the store went away mid-call; a write is either
    │                                           whole or absent, never half-done (transient)
    ├── SchemaVersionMismatch                   the database schema is newer or older than this
    │                                           code and migrations are not allowed to fix it
    ├── StoreNotFound                           opened with create=False, and there is no store
    │                                           (no SQLite file, no PostgreSQL schema) to open
    └── StoreReadOnly                           the store refuses every write (a read-only file,
                                                a read-only database or standby): not transient
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = [
    "ConnectionLost",
    "DependencyCycle",
    "DependencyInvalid",
    "InvalidQueueName",
    "InvalidRequest",
    "InvalidStepName",
    "JobNotFound",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "ResultNotSerializable",
    "ResultTooLarge",
    "SchemaVersionMismatch",
    "StepTooLarge",
    "StoreNotFound",
    "StoreReadOnly",
    "TransportClosed",
    "TransportError",
    "UnknownDependency",
    "UnsupportedURL",
    "map_exceptions",
]


class TransportError(Exception):
    """Root of every error a transport raises."""


class InvalidRequest(TransportError, ValueError):
    """The request is malformed; the transport wrote nothing."""


class InvalidQueueName(InvalidRequest):
    """A queue (or kind, leader, cursor) name is not 1-128 characters of ``[A-Za-z0-9_.:-]``."""


class PayloadNotSerializable(InvalidRequest):
    """A job payload cannot be encoded as JSON."""


class PayloadTooLarge(InvalidRequest):
    """A job payload's JSON encoding is longer than the transport's ``max_payload_bytes``."""


class StepTooLarge(PayloadTooLarge):
    """A step's result (or a signal's value) encodes to more than ``MAX_STEP_BYTES`` bytes."""


class InvalidStepName(InvalidRequest):
    """A step name is not a label, or an event key is not 1-128 characters of
    ``[A-Za-z0-9_.:-]``."""


class ResultNotSerializable(InvalidRequest):
    """A job's result (``Complete.result``) cannot be encoded as JSON."""


class ResultTooLarge(InvalidRequest):
    """A job's result's JSON encoding is longer than the transport's ``max_result_bytes``."""


class DependencyInvalid(InvalidRequest):
    """An enqueue's ``after`` names a parent no job may wait for; the batch wrote nothing."""


class UnknownDependency(DependencyInvalid):
    """An ``after`` names a job id that does not exist (never enqueued, or deleted)."""


class DependencyCycle(DependencyInvalid):
    """An ``after`` names its own request or a later one of its batch: the edge would close a
    cycle (a job can only wait for jobs that exist before it)."""


class JobNotFound(TransportError, LookupError):
    """No job has the given id (it never existed or was cleaned up)."""


class TransportClosed(TransportError):
    """The transport was used after ``aclose()``."""


class ConnectionLost(TransportError):
    """The connection to the store broke during the call.

    The call's effect is all-or-nothing: a write that raises this either committed entirely
    (and may be observed on retry) or not at all.
    """


class SchemaVersionMismatch(TransportError):
    """The store's schema version differs from the one this code needs."""


class UnsupportedURL(InvalidRequest):
    """``transports.connect`` got a URL whose scheme, options or parts it cannot use.

    The message names the bad piece; a password in the URL is never shown.
    """


class StoreNotFound(TransportError):
    """``create=False`` was asked for and the store does not exist: nothing was created."""


class StoreReadOnly(TransportError):
    """The store refuses writes: a read-only SQLite file or a read-only PostgreSQL server.

    Unlike :class:`ConnectionLost` this does not pass by itself: retrying will not help until
    an operator makes the store writable (or points the node at the primary).
    """


@contextlib.contextmanager
def map_exceptions(
    mapping: dict[type[BaseException], Callable[[BaseException], TransportError]],
) -> Iterator[None]:
    """Translate driver exceptions into transport errors, keeping the original as the cause.

    Args:
        mapping: driver exception class → factory building the transport error. The first class
            (in insertion order) that matches the raised exception wins.
    """
    try:
        yield
    except TransportError:
        raise
    except Exception as exc:
        for exc_type, factory in mapping.items():
            if isinstance(exc, exc_type):
                raise factory(exc) from exc
        raise
