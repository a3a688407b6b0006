"""CPU-bound work off the event loop, at most N at a time (shared by the password hashers)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class BoundedThreads:
    """A thread pool of its own plus a semaphore: at most ``max_concurrent`` calls run at once,
    the rest wait their turn without blocking the loop. ``in_flight``/``peak_in_flight`` count
    calls running in the threads now and at most so far."""

    def __init__(self, max_concurrent: int | None, name: str) -> None:
        limit = max_concurrent if max_concurrent is not None else (os.cpu_count() or 1)
        if limit < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = limit
        self._name = name
        self._semaphore = asyncio.Semaphore(limit)
        self._executor: ThreadPoolExecutor | None = None
        self._counter_lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_concurrent, thread_name_prefix=self._name
            )
        await self._semaphore.acquire()
        try:
            future = asyncio.get_running_loop().run_in_executor(
                self._executor, self._counted, fn, *args
            )
        except BaseException:
            self._semaphore.release()
            raise
        # The slot is released when the thread finishes, not when the caller stops waiting,
        # so a cancelled caller cannot let more than ``max_concurrent`` calls run.
        future.add_done_callback(self._finished)
        return await asyncio.shield(future)

    def close(self) -> None:
        """Stop the worker threads (they are started again on the next call)."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._semaphore.release()
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned failure is not reported as lost

    def _counted(self, fn: Callable[..., T], *args: object) -> T:
        with self._counter_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return fn(*args)
        finally:
            with self._counter_lock:
                self.in_flight -= 1
