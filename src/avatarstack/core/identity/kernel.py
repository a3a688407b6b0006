"""What every identity use case shares: the collaborators (storage, hasher, access tokens,
clock, policy, links, rate limiter, the server key), the steps several of them take (an audit
entry, a one-time token, a new user, a profile), and the remembered principals that every
change to authentication must forget. One object is handed to each service (composition), so
no service reaches into another."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from avatarstack.core import accounts
from avatarstack.core.conversations.topics import user_topic
from avatarstack.core.identity.models import (
    SESSIONS_ENDED,
    IdentityPolicy,
    Principal,
    Profile,
    RequestContext,
)
from avatarstack.core.ratelimit import RateLimiter
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import AvatarstackError
from avatarstack.ports.links import Links
from avatarstack.ports.security import AccessTokens, PasswordHasher
from avatarstack.ports.storage import (
    AuditEvent,
    IdentityStorage,
    IdentityUnitOfWork,
    OneTimeToken,
    User,
    new_id,
)

log = structlog.get_logger("avatarstack.identity")

#: at most this many principals are remembered (the cache is emptied when full)
PRINCIPAL_CACHE_SIZE = 10_000


class PrincipalCache:
    """Verified access tokens' principals, each until a deadline. A change that authentication
    depends on bumps the generation and forgets them all; a lookup that started before the
    change may have read the old state, so its principal is not kept (``remember``)."""

    def __init__(self) -> None:
        self._principals: dict[str, tuple[datetime, Principal]] = {}
        self.generation = 0

    def get(self, access_token: str, now: datetime) -> Principal | None:
        cached = self._principals.get(access_token)
        return cached[1] if cached is not None and cached[0] > now else None

    def remember(
        self, access_token: str, principal: Principal, until: datetime, generation: int
    ) -> None:
        if generation != self.generation:
            return
        if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
            self._principals.clear()
        self._principals[access_token] = (until, principal)

    def forget(self) -> None:
        self.generation += 1
        self._principals.clear()


@dataclass(slots=True)
class IdentityKernel:
    """The collaborators and the shared steps of the identity services (see the module)."""

    storage: IdentityStorage
    hasher: PasswordHasher
    tokens: AccessTokens
    clock: Clock
    limiter: RateLimiter
    #: the addresses put in mails and redirects (the web adapter's paths)
    links: Links
    policy: IdentityPolicy = field(default_factory=IdentityPolicy)
    #: signs device cookies and derives refresh successors; from the secret key (container)
    server_key: bytes = field(default_factory=lambda: accounts.new_secret().encode())
    #: tells open WebSockets on every instance that a user's sessions changed
    broadcaster: Broadcaster | None = None
    principals: PrincipalCache = field(default_factory=PrincipalCache, init=False)
    _dummy_hash: str | None = field(default=None, init=False)

    def sign(self, label: bytes, value: str) -> str:
        """An HMAC-SHA256 of ``value`` with the server key, for the purpose ``label`` names
        (device cookies, refresh successors), URL-safe base64 without padding."""
        digest = hmac.new(self.server_key, label + value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def audit(
        self,
        uow: IdentityUnitOfWork,
        action: str,
        *,
        actor_id: str | None = None,
        subject_id: str | None = None,
        ctx: RequestContext | None = None,
        **data: Any,
    ) -> None:
        await uow.audit.append(
            AuditEvent(
                action=action,
                actor_id=actor_id,
                subject_id=subject_id,
                ip=ctx.ip if ctx else None,
                data=data,
                created_at=self.clock.now(),
            )
        )

    async def add_user(
        self,
        uow: IdentityUnitOfWork,
        email: str,
        roles: frozenset[str],
        *,
        password_hash: str | None = None,
        display_name: str | None = None,
        email_verified: bool = False,
    ) -> User:
        now = self.clock.now()
        user = User(
            id=new_id(),
            email=email,
            display_name=display_name,
            password_hash=password_hash,
            email_verified=email_verified,
            created_at=now,
            updated_at=now,
        )
        await uow.users.add(user)
        await uow.roles.set(user.id, roles)
        return user

    async def issue_one_time(
        self,
        uow: IdentityUnitOfWork,
        purpose: str,
        ttl: timedelta,
        *,
        user_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str:
        secret = accounts.new_secret()
        now = self.clock.now()
        await uow.tokens.add(
            OneTimeToken(
                token_hash=accounts.hash_secret(secret),
                purpose=purpose,
                user_id=user_id,
                data=data or {},
                created_at=now,
                expires_at=now + ttl,
            )
        )
        return secret

    async def waste_a_hash(self, password: str) -> None:
        """Spend the same time as a real check, so timing does not reveal unknown e-mails."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hasher.hash(accounts.new_secret())
        await self.hasher.verify(self._dummy_hash, password)

    async def profile(self, uow: IdentityUnitOfWork, user: User) -> Profile:
        roles = await uow.roles.get(user.id)
        identities = tuple(await uow.identities.list_for_user(user.id))
        return Profile(user=user, roles=roles, identities=identities)

    def forget_principals(self) -> None:
        """Something that authentication depends on changed: re-check every token."""
        self.principals.forget()

    async def sessions_ended(self, user_id: str | None) -> None:
        """Forget remembered principals here, and tell every instance (through the
        broadcaster, on the user's topic) so open WebSockets re-check their token at once."""
        self.forget_principals()
        if self.broadcaster is None or user_id is None:
            return
        try:
            await self.broadcaster.publish(user_topic(user_id), {SESSIONS_ENDED: True})
        except AvatarstackError as exc:  # sockets still re-check on their own schedule
            log.warning("session_notice_failed", error=exc.code)
