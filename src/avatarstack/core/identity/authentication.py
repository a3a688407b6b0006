"""Who is calling: an access token's principal, remembered for a moment."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from avatarstack.core import accounts
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import Principal
from avatarstack.ports.errors import SessionEndedError


class AuthenticationService:
    """Every authenticated request (and WebSocket re-check) comes through here."""

    def __init__(self, kernel: IdentityKernel) -> None:
        self._kernel = kernel
        self._lookups: dict[str, asyncio.Future[Principal]] = {}

    async def authenticate(self, access_token: str) -> Principal:
        """The principal of a valid access token whose session is still active.

        A verified principal is remembered for at most ``policy.principal_cache`` (and never
        past the token's expiry): repeated requests with one token skip the signature check
        and the database. Every change made through the identity services (logout, revocation,
        reset, roles, profile, identities) forgets all remembered principals at once, so on this
        instance it applies to the next request; other instances see it within the cache
        lifetime. A zero lifetime checks the database on every request.
        """
        now = self._kernel.clock.now()
        cached = self._kernel.principals.get(access_token, now)
        if cached is not None:
            return cached
        # concurrent requests with one token share one lookup (no stampede at expiry)
        pending = self._lookups.get(access_token)
        if pending is not None:
            return await asyncio.shield(pending)
        lookup = asyncio.ensure_future(self._load_principal(access_token, now))
        self._lookups[access_token] = lookup
        try:
            return await asyncio.shield(lookup)
        finally:
            if lookup.done():
                self._lookups.pop(access_token, None)
            else:
                lookup.add_done_callback(lambda _: self._lookups.pop(access_token, None))

    async def _load_principal(self, access_token: str, now: datetime) -> Principal:
        generation = self._kernel.principals.generation
        claims = self._kernel.tokens.verify(access_token, now=now)
        async with self._kernel.storage.unit_of_work() as uow:
            session = await uow.sessions.get(claims.session_id)
            user = await uow.users.get(claims.subject)
            roles = await uow.roles.get(claims.subject) if user else frozenset()
            identities = tuple(await uow.identities.list_for_user(user.id)) if user else ()
        if (
            session is None
            or user is None
            or session.user_id != user.id
            or session.revoked_at is not None
            or session.expires_at <= now
            or not user.is_active
        ):
            raise SessionEndedError("the session has ended; log in again")
        principal = Principal(
            user=user,
            roles=roles,
            session_id=session.id,
            permissions=accounts.permissions_for(roles),
            identities=identities,
        )
        lifetime = self._kernel.policy.principal_cache
        # a change committed while this lookup ran may not be in what it read: don't keep it
        if lifetime > timedelta(0):
            until = min(now + lifetime, claims.expires_at, session.expires_at)
            self._kernel.principals.remember(access_token, principal, until, generation)
        return principal

    def forget_principals(self) -> None:
        """Forget remembered principals (another instance said a session ended)."""
        self._kernel.forget_principals()
