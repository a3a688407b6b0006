"""Password hashing with the standard library's scrypt, for deployments without argon2 wheels.

Hashes are self-describing: ``scrypt$n$r$p$salt$hash`` with base64 salt and hash, so parameters
can be raised later and old hashes still verify (``needs_rehash`` then says so). Like the argon2
adapter, the work runs in a thread pool of its own with at most ``max_concurrent`` hashes at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import NamedTuple

from avatarstack.adapters.passwords import (
    MAX_PASSWORD_LENGTH,
    ThreadedHasher,
    encode_password,
    unusable_password,
)

__all__ = ["MAX_PASSWORD_LENGTH", "ScryptPasswordHasher"]

#: hashes whose parameters need more memory than this are treated as malformed
_MAX_MEMORY = 256 * 1024 * 1024


class _Parsed(NamedTuple):
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


class ScryptPasswordHasher(ThreadedHasher):
    """scrypt with n=2**14, r=8, p=1, a 16-byte salt and a 64-byte key by default.

    ``in_flight`` and ``peak_in_flight`` count hashes running in worker threads right now and at
    most so far.
    """

    name = "scrypt"

    def __init__(
        self,
        *,
        n: int = 2**14,
        r: int = 8,
        p: int = 1,
        salt_len: int = 16,
        key_len: int = 64,
        max_concurrent: int | None = None,
    ) -> None:
        if n < 2 or n & (n - 1):
            raise ValueError("n must be a power of two greater than 1")
        if r < 1 or p < 1 or 128 * r * n > _MAX_MEMORY:
            raise ValueError("r and p must be positive and 128*r*n at most 256 MiB")
        if salt_len < 16 or key_len < 32:
            raise ValueError("use a salt of at least 16 bytes and a key of at least 32 bytes")
        self.n, self.r, self.p = n, r, p
        self.salt_len = salt_len
        self.key_len = key_len
        super().__init__(max_concurrent, "scrypt")

    async def hash(self, password: str) -> str:
        secret = encode_password(password)
        if secret is None:
            raise unusable_password()
        salt = secrets.token_bytes(self.salt_len)
        digest = await self._threads.run(
            _derive, secret, salt, self.n, self.r, self.p, self.key_len
        )
        return "$".join(
            (
                "scrypt",
                str(self.n),
                str(self.r),
                str(self.p),
                base64.b64encode(salt).decode("ascii"),
                base64.b64encode(digest).decode("ascii"),
            )
        )

    async def verify(self, password_hash: str, password: str) -> bool:
        secret = encode_password(password)
        parsed = _parse(password_hash)
        if secret is None or parsed is None:
            return False
        try:
            candidate = await self._threads.run(
                _derive, secret, parsed.salt, parsed.n, parsed.r, parsed.p, len(parsed.digest)
            )
        except (ValueError, MemoryError):
            return False
        return hmac.compare_digest(candidate, parsed.digest)

    def needs_rehash(self, password_hash: str) -> bool:
        parsed = _parse(password_hash)
        if parsed is None:
            return True
        return (parsed.n, parsed.r, parsed.p, len(parsed.digest)) != (
            self.n,
            self.r,
            self.p,
            self.key_len,
        ) or len(parsed.salt) < self.salt_len


def _derive(secret: bytes, salt: bytes, n: int, r: int, p: int, key_len: int) -> bytes:
    # OpenSSL needs 128*r*(n+p+2) bytes; leave a little room above that
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=key_len)


def _parse(password_hash: object) -> _Parsed | None:
    if not isinstance(password_hash, str) or len(password_hash) > 1024:
        return None
    parts = password_hash.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    _scheme, n_text, r_text, p_text, salt_text, digest_text = parts
    if not all(text.isascii() and text.isdigit() for text in (n_text, r_text, p_text)):
        return None
    n, r, p = int(n_text), int(r_text), int(p_text)
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        return None
    if 128 * r * n > _MAX_MEMORY:
        return None
    try:
        salt = base64.b64decode(salt_text, validate=True)
        digest = base64.b64decode(digest_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or not 16 <= len(digest) <= 128:
        return None
    return _Parsed(n, r, p, salt, digest)
