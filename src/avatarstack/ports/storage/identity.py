"""The identity context: users and their roles, linked external identities, one-time tokens,
login sessions, refresh tokens, rate-limit counters and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from avatarstack.ports.storage._base import Record
from avatarstack.ports.storage.uow import Transaction

__all__ = [
    "AuditEvent",
    "AuditRepository",
    "AuthSession",
    "Identity",
    "IdentityRepository",
    "IdentityStorage",
    "IdentityUnitOfWork",
    "OneTimeToken",
    "OneTimeTokenRepository",
    "RateLimitRepository",
    "RefreshToken",
    "RefreshTokenRepository",
    "RoleRepository",
    "SessionRepository",
    "User",
    "UserRepository",
]


class User(Record):
    id: str
    email: str = Field(description="Normalised (case-folded) e-mail address; unique.")
    display_name: str | None = None
    password_hash: str | None = Field(default=None, repr=False)
    email_verified: bool = False
    is_active: bool = True
    created_at: datetime
    updated_at: datetime


class Identity(Record):
    """A login method from an external provider linked to a user."""

    id: str
    user_id: str
    provider: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    created_at: datetime


class OneTimeToken(Record):
    """A single-use secret (verification, reset, OAuth state, login code), stored hashed."""

    token_hash: str = Field(repr=False)
    purpose: str
    user_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


class AuthSession(Record):
    """A login session (a device); its refresh tokens form one family."""

    id: str
    user_id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    user_agent: str | None = None
    ip: str | None = None


class RefreshToken(Record):
    """One opaque refresh token of a session (stored hashed); used at most once."""

    token_hash: str = Field(repr=False)
    session_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


class AuditEvent(Record):
    """An append-only audit record. ``id`` is assigned by the store (monotonic)."""

    id: int | None = None
    action: str
    actor_id: str | None = None
    subject_id: str | None = None
    ip: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Insert; :class:`~avatarstack.ports.errors.DuplicateError` if id or e-mail exists."""

    async def get(self, user_id: str) -> User | None: ...

    async def get_by_email(self, email: str) -> User | None:
        """Look up by the normalised e-mail exactly as stored."""

    async def update(self, user: User) -> None:
        """Replace the mutable fields of an existing user; NotFoundError if absent."""

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[User]:
        """Users ordered by creation time, oldest first."""

    async def count(self) -> int: ...


class RoleRepository(Protocol):
    async def get(self, user_id: str) -> frozenset[str]: ...

    async def set(self, user_id: str, roles: frozenset[str]) -> None:
        """Replace the user's roles with exactly ``roles``."""


class IdentityRepository(Protocol):
    async def add(self, identity: Identity) -> None:
        """DuplicateError when (provider, subject) is already linked."""

    async def get_by_subject(self, provider: str, subject: str) -> Identity | None: ...

    async def list_for_user(self, user_id: str) -> Sequence[Identity]: ...

    async def delete(self, identity_id: str) -> bool:
        """True when a row was removed."""


class OneTimeTokenRepository(Protocol):
    async def add(self, token: OneTimeToken) -> None: ...

    async def consume(self, token_hash: str, purpose: str, now: datetime) -> OneTimeToken | None:
        """Mark the token used in one conditional update and return it.

        Returns None when the hash is unknown, of another purpose, expired or already used;
        of two concurrent calls exactly one succeeds.
        """

    async def revoke_for_user(self, user_id: str, purpose: str, now: datetime) -> int:
        """Use up every unused token of ``purpose`` for the user (e.g. other reset links once
        one has been used); returns how many."""

    async def delete_expired(self, now: datetime) -> int: ...


class SessionRepository(Protocol):
    async def add(self, session: AuthSession) -> None: ...

    async def get(self, session_id: str) -> AuthSession | None: ...

    async def list_active(self, user_id: str, now: datetime) -> Sequence[AuthSession]:
        """Sessions neither revoked nor expired, most recently used first."""

    async def touch(self, session_id: str, now: datetime) -> None: ...

    async def revoke(self, session_id: str, now: datetime) -> bool:
        """True when the session was active and is now revoked."""

    async def revoke_all(self, user_id: str, now: datetime) -> int: ...


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken) -> None: ...

    async def get(self, token_hash: str) -> RefreshToken | None: ...

    async def use(self, token_hash: str, now: datetime) -> RefreshToken | None:
        """Mark the token used in one conditional update and return it; None when it is
        unknown, expired or already used. Of two concurrent calls exactly one succeeds."""

    async def delete_expired(self, now: datetime) -> int:
        """Delete tokens past their expiry (their session has ended); returns how many."""


class RateLimitRepository(Protocol):
    async def hit(self, key: str, window_start: datetime) -> int:
        """Count one hit in the fixed window ``(key, window_start)``; returns the new count.

        Shared by every instance on the same database."""

    async def count(self, key: str, window_start: datetime) -> int:
        """The hits counted in the window ``(key, window_start)`` so far (0 when none)."""

    async def purge(self, before: datetime) -> int:
        """Delete windows that started before ``before``."""


class AuditRepository(Protocol):
    async def append(self, event: AuditEvent) -> AuditEvent:
        """Store and return the event with its assigned ``id``."""

    async def list(
        self, *, limit: int = 50, before_id: int | None = None, subject_id: str | None = None
    ) -> Sequence[AuditEvent]:
        """Newest first; ``before_id`` pages backwards."""


@runtime_checkable
class IdentityUnitOfWork(Transaction, Protocol):
    """A transaction over the identity repositories only."""

    @property
    def users(self) -> UserRepository: ...

    @property
    def roles(self) -> RoleRepository: ...

    @property
    def identities(self) -> IdentityRepository: ...

    @property
    def tokens(self) -> OneTimeTokenRepository: ...

    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def refresh_tokens(self) -> RefreshTokenRepository: ...

    @property
    def rate_limits(self) -> RateLimitRepository: ...

    @property
    def audit(self) -> AuditRepository: ...


class IdentityStorage(Protocol):
    """What a service of this context needs of a storage: its units of work (a full
    :class:`~avatarstack.ports.storage.Storage` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[IdentityUnitOfWork]: ...
