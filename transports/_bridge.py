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
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import sniffio

from ._base import Transport
from ._errors import TransportClosed
from ._forward import ForwardingTransport

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


class BridgedTransport(ForwardingTransport):
    """A transport that forwards every call to an asyncio-only transport on a private loop.

    Args:
        factory: builds the real transport; called on the private loop's thread.
    """

    def __init__(self, factory: Callable[[], Transport]) -> None:
        super().__init__()
        self._factory = factory
        self._thread: AsyncioLoopThread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"BridgedTransport({self._inner!r})"

    @property
    def inner(self) -> Transport:
        """The real transport (raises TransportClosed before open or after close)."""
        if self._inner is None or self._closed:
            raise TransportClosed("transport is not open")
        return self._inner

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        inner = self.inner
        assert self._thread is not None

        async def on_its_loop() -> T:
            return await call(inner)

        return await self._thread.run(on_its_loop())

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

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        await super().wait_for_work(queues)

    async def wait_for_jobs(self, job_ids: Sequence[int]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        await super().wait_for_jobs(job_ids)
