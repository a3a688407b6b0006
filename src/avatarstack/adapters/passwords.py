"""What the password hashers share: the length guard, the UTF-8 encoding and their threads."""

from __future__ import annotations

from avatarstack.adapters.workers import BoundedThreads
from avatarstack.core.accounts import MAX_PASSWORD_LENGTH
from avatarstack.ports.errors import InvalidInputError

__all__ = ["MAX_PASSWORD_LENGTH", "ThreadedHasher", "encode_password", "unusable_password"]


def encode_password(password: str) -> bytes | None:
    """UTF-8 bytes, or None for what is never hashed nor matched: not text, longer than
    MAX_PASSWORD_LENGTH (a denial-of-service guard), or lone surrogates."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        return None
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:
        return None


def unusable_password() -> InvalidInputError:
    return InvalidInputError(
        f"passwords must be valid text of at most {MAX_PASSWORD_LENGTH} characters"
    )


class ThreadedHasher:
    """Runs the hashing off the event loop, at most ``max_concurrent`` at once."""

    def __init__(self, max_concurrent: int | None, name: str) -> None:
        self._threads = BoundedThreads(max_concurrent, name)
        self.max_concurrent = self._threads.max_concurrent

    @property
    def in_flight(self) -> int:
        return self._threads.in_flight

    @property
    def peak_in_flight(self) -> int:
        return self._threads.peak_in_flight

    def close(self) -> None:
        """Stop the worker threads (they are started again on the next hash)."""
        self._threads.close()
