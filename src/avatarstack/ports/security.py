"""Security ports: password hashing and access-token signing."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict


class PasswordHasher(Protocol):
    """Slow, salted password hashing. Implementations run the work off the event loop and cap
    how many hashes run at once."""

    name: str

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """False for a wrong password or a malformed hash; never raises for either."""

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with weaker parameters than the current ones."""


class AccessClaims(BaseModel):
    """The verified content of an access token."""

    model_config = ConfigDict(frozen=True)

    subject: str
    session_id: str
    token_id: str
    issued_at: datetime
    expires_at: datetime
    roles: tuple[str, ...] = ()


class AccessTokens(Protocol):
    """Issues and verifies short-lived signed access tokens (JWT)."""

    lifetime_seconds: int

    def issue(self, *, subject: str, session_id: str, roles: tuple[str, ...], now: datetime) -> str:
        """A signed token for the subject's session."""

    def verify(self, token: str, *, now: datetime) -> AccessClaims:
        """The claims of a valid token; AuthenticationError for anything else."""
