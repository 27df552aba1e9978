"""Run an asyncio-only transport from trio (or any anyio backend) through a private loop.

asyncpg and aiosqlite speak asyncio alone. Under trio, :class:`BridgedTransport` starts one
asyncio event loop in a worker thread, builds the real transport there, and forwards each call
to it with ``asyncio.run_coroutine_threadsafe``. Cancelling the trio caller cancels the asyncio
task, so ``wait_for_work`` and slow queries stop promptly on both sides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import sniffio

from ._base import Transport
from ._errors import TransportClosed
from ._records import (
    CancelResult,
    Counts,
    EnqueueRequest,
    EnqueueResult,
    FinalizeRequest,
    FinalizeResult,
    Job,
    JobState,
    LeaderLease,
    Lease,
    QueueConfig,
    Reclaimed,
    RenewRequest,
    RenewResult,
)

__all__ = ["AsyncioLoopThread", "BridgedTransport"]

T = TypeVar("T")


class AsyncioLoopThread:
    """A private asyncio event loop running in a daemon thread."""

    def __init__(self, name: str = "actorq-asyncio-bridge") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop; cancelling the caller cancels it there too."""
        # Schedule from an empty context: the task would otherwise inherit the caller's
        # context variables, among them sniffio's "trio", and anyio calls made by the asyncio
        # transport would then try trio's primitives on the asyncio loop.
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self._loop)
        done = anyio.Event()
        call_soon = _thread_safe_scheduler()
        future.add_done_callback(lambda _f: _call_quietly(call_soon, done.set))
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            with anyio.CancelScope(shield=True):
                # Wait for the asyncio side to unwind so nothing runs on after we return.
                await anyio.to_thread.run_sync(_wait_quietly, future)
            raise
        return future.result()

    def stop(self) -> None:
        """Stop the loop and join the thread; idempotent."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join()


def _wait_quietly(future: concurrent.futures.Future[Any]) -> None:
    try:
        future.result()
    except BaseException:
        pass


def _thread_safe_scheduler() -> Callable[[Callable[[], object]], object]:
    """How another thread schedules a callback on the caller's event loop, without blocking."""
    if sniffio.current_async_library() == "trio":
        import trio.lowlevel

        return trio.lowlevel.current_trio_token().run_sync_soon
    return asyncio.get_running_loop().call_soon_threadsafe


def _call_quietly(
    call_soon: Callable[[Callable[[], object]], object], fn: Callable[[], object]
) -> None:
    try:
        call_soon(fn)
    except RuntimeError:
        # The caller's loop already finished (it was cancelled and unwound); nobody to wake.
        pass


class BridgedTransport(Transport):
    """A transport that forwards every call to an asyncio-only transport on a private loop.

    Args:
        factory: builds the real transport; called on the private loop's thread.
    """

    def __init__(self, factory: Callable[[], Transport]) -> None:
        self._factory = factory
        self._inner: Transport | None = None
        self._thread: AsyncioLoopThread | None = None
        self._closed = False
        self.clock = None

    @property
    def inner(self) -> Transport:
        """The real transport (raises TransportClosed before open or after close)."""
        if self._inner is None or self._closed:
            raise TransportClosed("transport is not open")
        return self._inner

    async def _call(self, coro_fn: Callable[[Transport], Coroutine[Any, Any, T]]) -> T:
        inner = self.inner
        assert self._thread is not None
        return await self._thread.run(coro_fn(inner))

    async def open(self) -> None:
        if self._inner is not None:
            return
        self._thread = AsyncioLoopThread()

        async def build() -> Transport:
            transport = self._factory()
            await transport.open()
            return transport

        try:
            self._inner = await self._thread.run(build())
        except BaseException:
            self._thread.stop()
            self._thread = None
            raise
        self.clock = self._inner.clock
        self.max_payload_bytes = self._inner.max_payload_bytes

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        thread, inner = self._thread, self._inner
        if thread is None:
            return
        with anyio.CancelScope(shield=True):
            if inner is not None:
                await thread.run(inner.aclose())
            await anyio.to_thread.run_sync(thread.stop)

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        return await self._call(lambda t: t.enqueue_many(requests))

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        return await self._call(lambda t: t.claim(queue, owner=owner, limit=limit, ttl=ttl))

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        return await self._call(lambda t: t.renew(requests, ttl=ttl))

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        return await self._call(lambda t: t.finalize(requests))

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        return await self._call(lambda t: t.reap(limit=limit))

    async def cancel(self, job_id: int) -> CancelResult:
        return await self._call(lambda t: t.cancel(job_id))

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        return await self._call(lambda t: t.acquire_leader(name, holder=holder, ttl=ttl))

    async def release_leader(self, name: str, *, holder: str) -> bool:
        return await self._call(lambda t: t.release_leader(name, holder=holder))

    async def get_cursor(self, name: str) -> float | None:
        return await self._call(lambda t: t.get_cursor(name))

    async def advance_cursor(self, name: str, *, expected: float | None, new: float) -> bool:
        return await self._call(lambda t: t.advance_cursor(name, expected=expected, new=new))

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        await self._call(lambda t: t.wait_for_work(queues))

    async def get_queue_config(self, queue: str) -> QueueConfig:
        return await self._call(lambda t: t.get_queue_config(queue))

    async def set_queue_config(self, config: QueueConfig) -> None:
        await self._call(lambda t: t.set_queue_config(config))

    async def list_queue_configs(self) -> list[QueueConfig]:
        return await self._call(lambda t: t.list_queue_configs())

    async def cleanup(
        self, *, finished_before: float, queue: str | None = None, limit: int = 10_000
    ) -> int:
        return await self._call(
            lambda t: t.cleanup(finished_before=finished_before, queue=queue, limit=limit)
        )

    async def counts(self, queue: str | None = None) -> list[Counts]:
        return await self._call(lambda t: t.counts(queue))

    async def get(self, job_id: int) -> Job:
        return await self._call(lambda t: t.get(job_id))

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        kind: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Job]:
        return await self._call(
            lambda t: t.list_jobs(
                queue=queue, state=state, kind=kind, after_id=after_id, limit=limit
            )
        )
