"""Password hashing with Argon2id (argon2-cffi), OWASP parameters by default.

The hashing runs in a small thread pool of its own (argon2 releases the GIL), so the event loop
keeps serving requests, and at most ``max_concurrent`` hashes run at once: a burst of logins
queues instead of exhausting memory (each hash holds ``memory_cost`` KiB while it runs).
"""

from __future__ import annotations

import argon2
from argon2.exceptions import Argon2Error, InvalidHashError

from avatarstack.adapters.passwords import (
    MAX_PASSWORD_LENGTH,
    ThreadedHasher,
    encode_password,
    unusable_password,
)
from avatarstack.ports.errors import UnavailableError

__all__ = ["MAX_PASSWORD_LENGTH", "Argon2PasswordHasher"]


class Argon2PasswordHasher(ThreadedHasher):
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
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=argon2.Type.ID,
        )
        super().__init__(max_concurrent, "argon2")

    async def hash(self, password: str) -> str:
        secret = encode_password(password)
        if secret is None:
            raise unusable_password()
        try:
            return await self._threads.run(self._hasher.hash, secret)
        except Argon2Error as exc:
            raise UnavailableError("password hashing failed") from exc

    async def verify(self, password_hash: str, password: str) -> bool:
        secret = encode_password(password)
        if secret is None or not isinstance(password_hash, str):
            return False
        if not password_hash.startswith("$argon2"):
            return False
        try:
            return await self._threads.run(self._hasher.verify, password_hash, secret)
        except (Argon2Error, ValueError):
            # mismatch, a corrupt hash, or parameters argon2 refuses
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError, TypeError):
            return True
