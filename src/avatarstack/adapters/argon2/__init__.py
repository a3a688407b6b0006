"""Password hashing with Argon2id (argon2-cffi), OWASP parameters by default.

The hashing runs in a small thread pool of its own (argon2 releases the GIL), so the event loop
keeps serving requests, and at most ``max_concurrent`` hashes run at once: a burst of logins
queues instead of exhausting memory (each hash holds ``memory_cost`` KiB while it runs).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import argon2
from argon2.exceptions import Argon2Error, InvalidHashError

from avatarstack.ports.errors import InvalidInputError, UnavailableError

__all__ = ["MAX_PASSWORD_LENGTH", "Argon2PasswordHasher"]

#: longer passwords are refused by ``hash`` and never match in ``verify`` (a DoS guard)
MAX_PASSWORD_LENGTH = 1024

T = TypeVar("T")


class Argon2PasswordHasher:
    """Argon2id hashes in the PHC string format (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``).

    The defaults are the OWASP recommendation (19 MiB, 2 passes, 1 lane); tests pass cheaper
    ones. ``needs_rehash`` is true for hashes made with other parameters or another scheme.
    ``in_flight`` and ``peak_in_flight`` count hashes running in worker threads right now and at
    most so far.
    """

    name = "argon2id"

    def __init__(
        self,
        *,
        memory_cost: int = 19456,
        time_cost: int = 2,
        parallelism: int = 1,
        hash_len: int = 32,
        salt_len: int = 16,
        max_concurrent: int | None = None,
    ) -> None:
        limit = max_concurrent if max_concurrent is not None else (os.cpu_count() or 1)
        if limit < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=argon2.Type.ID,
        )
        self.max_concurrent = limit
        self._semaphore = asyncio.Semaphore(limit)
        self._executor: ThreadPoolExecutor | None = None
        self._counter_lock = threading.Lock()
        self._in_flight = 0
        self._peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        return self._peak_in_flight

    async def hash(self, password: str) -> str:
        secret = _encode(password)
        if secret is None:
            raise InvalidInputError(
                f"passwords must be valid text of at most {MAX_PASSWORD_LENGTH} characters"
            )
        try:
            return await self._run(self._hasher.hash, secret)
        except Argon2Error as exc:
            raise UnavailableError("password hashing failed") from exc

    async def verify(self, password_hash: str, password: str) -> bool:
        secret = _encode(password)
        if secret is None or not isinstance(password_hash, str):
            return False
        if not password_hash.startswith("$argon2"):
            return False
        try:
            return await self._run(self._hasher.verify, password_hash, secret)
        except (Argon2Error, ValueError):
            # mismatch, a corrupt hash, or parameters argon2 refuses
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError, TypeError):
            return True

    def close(self) -> None:
        """Stop the worker threads (they are started again on the next hash)."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_concurrent, thread_name_prefix="argon2"
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
        # so a cancelled caller cannot let more than ``max_concurrent`` hashes run.
        future.add_done_callback(self._finished)
        return await asyncio.shield(future)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._semaphore.release()
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned failure is not reported as lost

    def _counted(self, fn: Callable[..., T], *args: object) -> T:
        with self._counter_lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            return fn(*args)
        finally:
            with self._counter_lock:
                self._in_flight -= 1


def _encode(password: str) -> bytes | None:
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        return None
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None
