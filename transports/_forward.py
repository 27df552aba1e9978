"""The base of every wrapper transport: each contract operation forwarded to an inner one.

A wrapper (the asyncio bridge, a fault injector, a recorder, a metrics proxy) subclasses
:class:`ForwardingTransport` and overrides :meth:`ForwardingTransport._forward`, through which
every operation passes, plus the few operations it treats specially. A new operation of the
contract is added here once and reaches every wrapper; ``tests/transports/test_forward.py``
fails when one is missing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ._base import Transport
from ._errors import TransportClosed
from ._observed import NodeInfo, QueueStats
from ._records import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    CancelResult,
    Counts,
    Edge,
    EnqueueRequest,
    EnqueueResult,
    FinalizeRequest,
    FinalizeResult,
    Job,
    JobFilter,
    JsonValue,
    KeyLimit,
    LeaderLease,
    Lease,
    PartitionInfo,
    QueueConfig,
    Reclaimed,
    RenewRequest,
    RenewResult,
    Signal,
    SignalResult,
    Step,
    StepResult,
    TimeSource,
    WorkflowSummary,
)

__all__ = ["ForwardingTransport"]

T = TypeVar("T")
_INNERS = object()  # no clock of the wrapper's own: the inner transport's


class ForwardingTransport(Transport):
    """A :class:`~transports.Transport` that hands every operation to ``inner``.

    ``open`` and ``aclose`` go straight to the inner transport; every other operation calls
    ``self._forward(name, call)``, where ``name`` is the operation's method name and
    ``call(inner)`` performs it on the inner transport. The default ``_forward`` just awaits
    it.

    Args:
        inner: the transport to forward to; None when a subclass provides it later (the
            bridge builds its inner transport when opened), by overriding :attr:`inner`.
    """

    def __init__(self, inner: Transport | None = None) -> None:
        self._inner = inner
        self._own_clock: TimeSource | object | None = _INNERS
        self._own_max_payload_bytes: int | None = None
        self._own_max_result_bytes: int | None = None

    @property
    def clock(self) -> TimeSource | None:
        """The inner transport's clock, unless one was set on this wrapper."""
        if self._own_clock is not _INNERS:
            return self._own_clock  # type: ignore[return-value]
        return None if self._inner is None else self._inner.clock

    @clock.setter
    def clock(self, clock: TimeSource | None) -> None:
        self._own_clock = clock

    @property
    def max_payload_bytes(self) -> int:
        """The inner transport's payload limit, unless one was set on this wrapper."""
        if self._own_max_payload_bytes is not None:
            return self._own_max_payload_bytes
        if self._inner is None:
            return DEFAULT_MAX_PAYLOAD_BYTES
        return self._inner.max_payload_bytes

    @max_payload_bytes.setter
    def max_payload_bytes(self, limit: int) -> None:
        self._own_max_payload_bytes = limit

    @property
    def max_result_bytes(self) -> int:
        """The inner transport's result limit, unless one was set on this wrapper."""
        if self._own_max_result_bytes is not None:
            return self._own_max_result_bytes
        if self._inner is None:
            return DEFAULT_MAX_RESULT_BYTES
        return self._inner.max_result_bytes

    @max_result_bytes.setter
    def max_result_bytes(self, limit: int) -> None:
        self._own_max_result_bytes = limit

    @property
    def inner(self) -> Transport:
        """The transport every call goes to."""
        if self._inner is None:
            raise TransportClosed("this wrapper transport has no inner transport yet")
        return self._inner

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        """Perform operation ``name`` as ``call(self.inner)``; override to act on every call."""
        return await call(self.inner)

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()

    # --- the contract, operation by operation ---------------------------------------------

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        return await self._forward("enqueue_many", lambda t: t.enqueue_many(requests))

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        return await self._forward(
            "claim", lambda t: t.claim(queue, owner=owner, limit=limit, ttl=ttl)
        )

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        return await self._forward("renew", lambda t: t.renew(requests, ttl=ttl))

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        return await self._forward("finalize", lambda t: t.finalize(requests))

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        return await self._forward("reap", lambda t: t.reap(limit=limit))

    async def cancel(self, job_id: int) -> CancelResult:
        return await self._forward("cancel", lambda t: t.cancel(job_id))

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        return await self._forward(
            "acquire_leader", lambda t: t.acquire_leader(name, holder=holder, ttl=ttl)
        )

    async def release_leader(self, name: str, *, holder: str) -> bool:
        return await self._forward(
            "release_leader", lambda t: t.release_leader(name, holder=holder)
        )

    async def get_cursor(self, name: str) -> float | None:
        return await self._forward("get_cursor", lambda t: t.get_cursor(name))

    async def advance_cursor(self, name: str, *, expected: float | None, new: float) -> bool:
        return await self._forward(
            "advance_cursor", lambda t: t.advance_cursor(name, expected=expected, new=new)
        )

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        await self._forward("wait_for_work", lambda t: t.wait_for_work(queues))

    async def wait_for_jobs(self, job_ids: Sequence[int]) -> None:
        await self._forward("wait_for_jobs", lambda t: t.wait_for_jobs(job_ids))

    async def list_edges(
        self, job_ids: Sequence[int] | None = None, *, workflow: str | None = None
    ) -> list[Edge]:
        return await self._forward("list_edges", lambda t: t.list_edges(job_ids, workflow=workflow))

    async def list_workflows(
        self, *, workflow: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[WorkflowSummary]:
        return await self._forward(
            "list_workflows",
            lambda t: t.list_workflows(workflow=workflow, after=after, limit=limit),
        )

    async def get_queue_config(self, queue: str) -> QueueConfig:
        return await self._forward("get_queue_config", lambda t: t.get_queue_config(queue))

    async def set_queue_config(self, config: QueueConfig) -> None:
        await self._forward("set_queue_config", lambda t: t.set_queue_config(config))

    async def list_queue_configs(self) -> list[QueueConfig]:
        return await self._forward("list_queue_configs", lambda t: t.list_queue_configs())

    async def set_limit(
        self,
        key: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
    ) -> None:
        await self._forward(
            "set_limit", lambda t: t.set_limit(key, concurrency=concurrency, rate=rate, per=per)
        )

    async def list_limits(self) -> list[KeyLimit]:
        return await self._forward("list_limits", lambda t: t.list_limits())

    async def list_partitions(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> list[PartitionInfo]:
        return await self._forward(
            "list_partitions", lambda t: t.list_partitions(queue, after=after, limit=limit)
        )

    async def reopens_in(self, queue: str) -> float | None:
        return await self._forward("reopens_in", lambda t: t.reopens_in(queue))

    async def record_step(
        self, job_id: int, *, token: int, name: str, value: JsonValue
    ) -> StepResult:
        return await self._forward(
            "record_step", lambda t: t.record_step(job_id, token=token, name=name, value=value)
        )

    async def list_steps(self, job_id: int) -> list[Step]:
        return await self._forward("list_steps", lambda t: t.list_steps(job_id))

    async def signal(self, key: str, value: JsonValue = None) -> SignalResult:
        return await self._forward("signal", lambda t: t.signal(key, value))

    async def get_signal(self, key: str) -> Signal | None:
        return await self._forward("get_signal", lambda t: t.get_signal(key))

    async def cleanup(
        self, *, finished_before: float, queue: str | None = None, limit: int = 10_000
    ) -> int:
        return await self._forward(
            "cleanup",
            lambda t: t.cleanup(finished_before=finished_before, queue=queue, limit=limit),
        )

    async def counts(self, queue: str | None = None) -> list[Counts]:
        return await self._forward("counts", lambda t: t.counts(queue))

    async def get(self, job_id: int) -> Job:
        return await self._forward("get", lambda t: t.get(job_id))

    async def list_jobs(
        self,
        where: JobFilter | None = None,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        return await self._forward(
            "list_jobs",
            lambda t: t.list_jobs(
                where,
                after_id=after_id,
                before_id=before_id,
                newest_first=newest_first,
                limit=limit,
            ),
        )

    async def retry_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        return await self._forward("retry_jobs", lambda t: t.retry_jobs(where, limit=limit))

    async def discard_jobs(self, where: JobFilter, *, reason: str, limit: int = 1000) -> list[int]:
        return await self._forward(
            "discard_jobs", lambda t: t.discard_jobs(where, reason=reason, limit=limit)
        )

    async def delete_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        return await self._forward("delete_jobs", lambda t: t.delete_jobs(where, limit=limit))

    async def cancel_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        return await self._forward("cancel_jobs", lambda t: t.cancel_jobs(where, limit=limit))

    async def register_node(self, info: NodeInfo) -> NodeInfo:
        return await self._forward("register_node", lambda t: t.register_node(info))

    async def node_heartbeat(self, node_id: str) -> bool:
        return await self._forward("node_heartbeat", lambda t: t.node_heartbeat(node_id))

    async def forget_node(self, node_id: str) -> bool:
        return await self._forward("forget_node", lambda t: t.forget_node(node_id))

    async def list_nodes(self) -> list[NodeInfo]:
        return await self._forward("list_nodes", lambda t: t.list_nodes())

    async def prune_nodes(self, *, seen_before: float) -> int:
        return await self._forward("prune_nodes", lambda t: t.prune_nodes(seen_before=seen_before))

    async def list_leaders(self) -> list[LeaderLease]:
        return await self._forward("list_leaders", lambda t: t.list_leaders())

    async def add_stats(self, rows: Sequence[QueueStats]) -> None:
        await self._forward("add_stats", lambda t: t.add_stats(rows))

    async def list_stats(
        self,
        *,
        queue: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[QueueStats]:
        return await self._forward(
            "list_stats", lambda t: t.list_stats(queue=queue, since=since, until=until)
        )

    async def prune_results(self, *, finished_before: float, limit: int = 10_000) -> int:
        return await self._forward(
            "prune_results",
            lambda t: t.prune_results(finished_before=finished_before, limit=limit),
        )

    async def prune_signals(self, *, before: float, limit: int = 10_000) -> int:
        return await self._forward(
            "prune_signals", lambda t: t.prune_signals(before=before, limit=limit)
        )

    async def prune_stats(self, *, before: float) -> int:
        return await self._forward("prune_stats", lambda t: t.prune_stats(before=before))
