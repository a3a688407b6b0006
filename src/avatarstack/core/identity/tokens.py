"""Starting a login session and issuing its token pairs (password and OAuth logins, refresh)."""

from __future__ import annotations

from datetime import datetime

from avatarstack.core import accounts
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import RequestContext, TokenPair
from avatarstack.ports.errors import AuthenticationError
from avatarstack.ports.storage import AuthSession, IdentityUnitOfWork, RefreshToken, User, new_id


class SessionTokens:
    """A session's access and refresh tokens: the refresh token is stored as a hash only."""

    def __init__(self, kernel: IdentityKernel) -> None:
        self._kernel = kernel

    async def start_session(
        self, uow: IdentityUnitOfWork, user: User, ctx: RequestContext
    ) -> TokenPair:
        now = self._kernel.clock.now()
        session = AuthSession(
            id=new_id(),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=now + self._kernel.policy.refresh_ttl,
            user_agent=(ctx.user_agent or "")[:300] or None,
            ip=ctx.ip,
        )
        await uow.sessions.add(session)
        return await self.token_pair(uow, user, session)

    def successor(self, refresh_token: str) -> str:
        """The refresh token that replaces ``refresh_token``: derived from it with a server
        key (HMAC-SHA256), so each tab presenting the same token during the grace window gets
        the same successor while only its hash is stored (as for every refresh token)."""
        return self._kernel.sign(b"refresh successor:", refresh_token)

    async def token_pair(
        self,
        uow: IdentityUnitOfWork,
        user: User,
        session: AuthSession,
        *,
        refresh: str | None = None,
    ) -> TokenPair:
        now = self._kernel.clock.now()
        refresh = refresh or accounts.new_secret()
        await uow.refresh_tokens.add(
            RefreshToken(
                token_hash=accounts.hash_secret(refresh),
                session_id=session.id,
                created_at=now,
                expires_at=session.expires_at,
            )
        )
        return await self._pair(uow, user, session, refresh, now)

    async def live_session(
        self, uow: IdentityUnitOfWork, session_id: str, now: datetime
    ) -> tuple[AuthSession, User]:
        session = await uow.sessions.get(session_id)
        user = await uow.users.get(session.user_id) if session else None
        if (
            session is None
            or user is None
            or session.revoked_at is not None
            or session.expires_at <= now
            or not user.is_active
        ):
            raise AuthenticationError("the session has ended; log in again")
        return session, user

    async def pair_for(
        self, uow: IdentityUnitOfWork, session_id: str, refresh: str, now: datetime
    ) -> TokenPair:
        """A new access token with the (already stored) successor refresh token."""
        session, user = await self.live_session(uow, session_id, now)
        return await self._pair(uow, user, session, refresh, now)

    async def _pair(
        self, uow: IdentityUnitOfWork, user: User, session: AuthSession, refresh: str, now: datetime
    ) -> TokenPair:
        """A new access token for ``session`` (with the user's roles now), next to ``refresh``."""
        profile = await self._kernel.profile(uow, user)
        access = self._kernel.tokens.issue(
            subject=user.id, session_id=session.id, roles=tuple(sorted(profile.roles)), now=now
        )
        return TokenPair(access, refresh, self._kernel.tokens.lifetime_seconds, profile)
