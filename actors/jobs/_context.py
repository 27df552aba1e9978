"""What a handler receives besides its payload."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from transports import Job, Lease, RenewResult

from ..core import Clock
from ._errors import LeaseLost

__all__ = ["JobContext"]

_log = logging.getLogger("actorq.job")


class _JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes records with the job and adds its fields to ``record.__dict__``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return (
            f"[{extra.get('job_kind')} #{extra.get('job_id')} try {extra.get('attempt')}] {msg}",
            kwargs,
        )


class JobContext:
    """The running job as its handler sees it.

    Attributes:
        job: the job as claimed (state running, ``attempt`` already counting this run).
        clock: the node's clock: use ``await ctx.clock.sleep(s)``, never the event loop's own
            sleep, so simulation and tests control time.
        log: a logger bound to this job.
    """

    __slots__ = ("_cancel_requested", "_renew", "clock", "job", "lease", "log")

    def __init__(
        self,
        lease: Lease,
        clock: Clock,
        renew: Callable[[], Awaitable[RenewResult]],
    ) -> None:
        self.lease = lease
        self.job: Job = lease.job
        self.clock = clock
        self._renew = renew
        self._cancel_requested = anyio.Event()
        self.log = _JobLogger(
            _log,
            {"job_id": lease.job.id, "job_kind": lease.job.kind, "attempt": lease.job.attempt},
        )

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def attempt(self) -> int:
        """This run's attempt number, 1 for the first."""
        return self.job.attempt

    async def extend_lease(self) -> None:
        """Renew this job's lease now (before a long step), beyond the heartbeat's rhythm.

        Raises:
            LeaseLost: the lease is gone; stop working, the job belongs to someone else.
        """
        result = await self._renew()
        if result is RenewResult.LOST:
            raise LeaseLost(f"lease on job {self.job.id} was lost")
        if result is RenewResult.CANCEL_REQUESTED:
            self._cancel_requested.set()

    @property
    def cancel_requested(self) -> bool:
        """True once an operator asked to cancel this job (the handler is cancelled soon)."""
        return self._cancel_requested.is_set()

    async def wait_cancel_requested(self) -> None:
        """Wait until a cancel of this job is requested."""
        await self._cancel_requested.wait()

    def _request_cancel(self) -> None:
        self._cancel_requested.set()
