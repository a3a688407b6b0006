"""Password logins and the sessions they start: device cookies, refresh, logout, revocation."""

from __future__ import annotations

import hmac
from dataclasses import replace

from avatarstack.core import accounts
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import Principal, RequestContext, TokenPair
from avatarstack.core.identity.tokens import SessionTokens
from avatarstack.ports.errors import (
    AuthenticationError,
    EmailNotVerifiedError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from avatarstack.ports.storage import AuthSession, User


class SessionService:
    """Password logins and the sessions they start.

    Targeted lockout (OWASP Authentication Cheat Sheet, "device cookies"; NIST SP 800-63B
    5.2.2): the per-account limit counts failed attempts only, and a browser that signed in
    to this account before presents a signed device cookie; its attempts are limited on
    their own (per cookie), so strangers' failures never lock the owner out."""

    def __init__(self, kernel: IdentityKernel, issuer: SessionTokens) -> None:
        self._kernel = kernel
        self._issuer = issuer

    def issue_device(self, user_id: str) -> str:
        """A device cookie value: ``user.nonce.expiry.mac`` (HMAC-SHA256 with the device key)."""
        expires = int((self._kernel.clock.now() + self._kernel.policy.device_ttl).timestamp())
        payload = f"{user_id}.{accounts.new_secret()[:22]}.{expires}"
        return f"{payload}.{self._device_mac(payload)}"

    def _device_mac(self, payload: str) -> str:
        return self._kernel.sign(b"device:", payload)

    def trusted_device(self, device: str | None, user_id: str) -> str | None:
        """The nonce of a valid, unexpired device cookie issued to ``user_id``, else None."""
        if not device or len(device) > 300:
            return None
        payload, _, mac = device.rpartition(".")
        owner, _, rest = payload.partition(".")
        nonce, _, expires = rest.partition(".")
        if not hmac.compare_digest(mac, self._device_mac(payload)) or owner != user_id:
            return None
        if not expires.isdigit() or int(expires) <= self._kernel.clock.now().timestamp():
            return None
        return nonce

    async def login(
        self, email: str, password: str, ctx: RequestContext, *, device: str | None = None
    ) -> TokenPair:
        """A password login. ``device`` is the client's device cookie, if any; the pair
        carries a fresh one to set (``TokenPair.device``)."""
        await self._kernel.limiter.check("login:ip", ctx.ip, self._kernel.policy.login_per_ip)
        try:
            email = accounts.normalise_email(email)
        except InvalidInputError:
            await self._kernel.waste_a_hash(password[: accounts.MAX_PASSWORD_LENGTH])
            raise AuthenticationError("wrong e-mail or password") from None
        async with self._kernel.storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(email)
        nonce = self.trusted_device(device, user.id) if user is not None else None
        scope, subject = ("login:device", nonce) if nonce else ("login:account", email)
        await self._kernel.limiter.ensure_below(
            scope, subject, self._kernel.policy.login_per_account
        )
        if (
            user is None
            or user.password_hash is None
            or len(password) > accounts.MAX_PASSWORD_LENGTH
        ):
            await self._kernel.waste_a_hash(password[: accounts.MAX_PASSWORD_LENGTH])
            await self._kernel.limiter.count_failure(
                scope, subject, self._kernel.policy.login_per_account
            )
            await self._record_failed_login(user, ctx)
            raise AuthenticationError("wrong e-mail or password")
        if not await self._kernel.hasher.verify(user.password_hash, password):
            await self._kernel.limiter.count_failure(
                scope, subject, self._kernel.policy.login_per_account
            )
            await self._record_failed_login(user, ctx)
            raise AuthenticationError("wrong e-mail or password")
        if not user.is_active:
            raise PermissionDeniedError("this account is disabled")
        if not user.email_verified:
            raise EmailNotVerifiedError("confirm your e-mail address before logging in")
        if self._kernel.hasher.needs_rehash(user.password_hash):
            user = user.model_copy(
                update={"password_hash": await self._kernel.hasher.hash(password)}
            )
        async with self._kernel.storage.unit_of_work() as uow:
            fresh = await uow.users.get(user.id)
            if fresh is None:
                raise AuthenticationError("wrong e-mail or password")
            if fresh.password_hash != user.password_hash:
                await uow.users.update(
                    fresh.model_copy(update={"password_hash": user.password_hash})
                )
            pair = await self._issuer.start_session(uow, fresh, ctx)
            await self._kernel.audit(
                uow, "login_succeeded", actor_id=user.id, subject_id=user.id, ctx=ctx
            )
            await uow.commit()
        return replace(pair, device=self.issue_device(user.id))

    async def _record_failed_login(self, user: User | None, ctx: RequestContext) -> None:
        async with self._kernel.storage.unit_of_work() as uow:
            await self._kernel.audit(
                uow, "login_failed", subject_id=user.id if user else None, ctx=ctx
            )
            await uow.commit()

    async def refresh(self, refresh_token: str, ctx: RequestContext) -> TokenPair:
        await self._kernel.limiter.check("refresh:ip", ctx.ip, self._kernel.policy.refresh_per_ip)
        token_hash = accounts.hash_secret(refresh_token)
        now = self._kernel.clock.now()
        async with self._kernel.storage.unit_of_work() as uow:
            used = await uow.refresh_tokens.use(token_hash, now)
            if used is None:
                known = await uow.refresh_tokens.get(token_hash)
                if (
                    known is not None
                    and known.used_at is not None
                    and now - known.used_at <= self._kernel.policy.refresh_grace
                ):
                    # another tab refreshed with this token a moment ago: the same successor
                    successor = self._issuer.successor(refresh_token)
                    kept = await uow.refresh_tokens.get(accounts.hash_secret(successor))
                    if kept is not None and kept.session_id == known.session_id:
                        return await self._issuer.pair_for(uow, known.session_id, successor, now)
                if known is not None and known.used_at is not None:
                    # A rotated token came back: someone holds a copy. End the whole family.
                    session = await uow.sessions.get(known.session_id)
                    if await uow.sessions.revoke(known.session_id, now):
                        await self._kernel.audit(
                            uow,
                            "refresh_token_reused",
                            subject_id=session.user_id if session else None,
                            ctx=ctx,
                            session_id=known.session_id,
                        )
                    await uow.commit()
                    await self._kernel.sessions_ended(session.user_id if session else None)
                raise AuthenticationError("the refresh token is invalid, used or expired")
            session, user = await self._issuer.live_session(uow, used.session_id, now)
            await uow.sessions.touch(session.id, now)
            pair = await self._issuer.token_pair(
                uow, user, session, refresh=self._issuer.successor(refresh_token)
            )
            await uow.commit()
        return pair

    async def logout(self, principal: Principal, ctx: RequestContext) -> None:
        async with self._kernel.storage.unit_of_work() as uow:
            await uow.sessions.revoke(principal.session_id, self._kernel.clock.now())
            await self._kernel.audit(uow, "logout", actor_id=principal.user.id, ctx=ctx)
            await uow.commit()
        await self._kernel.sessions_ended(principal.user.id)

    async def logout_refresh(self, refresh_token: str, ctx: RequestContext) -> bool:
        """End the session (the whole refresh-token family) that ``refresh_token`` belongs to,
        used or not: the cookie logout holds a refresh token, not an access token. False when
        the token is unknown or its session has already ended."""
        token_hash = accounts.hash_secret(refresh_token)
        async with self._kernel.storage.unit_of_work() as uow:
            known = await uow.refresh_tokens.get(token_hash)
            if known is None:
                return False
            session = await uow.sessions.get(known.session_id)
            if session is None or not await uow.sessions.revoke(
                session.id, self._kernel.clock.now()
            ):
                return False
            await self._kernel.audit(uow, "logout", actor_id=session.user_id, ctx=ctx)
            await uow.commit()
        await self._kernel.sessions_ended(session.user_id)
        return True

    async def list_sessions(self, principal: Principal) -> list[AuthSession]:
        async with self._kernel.storage.unit_of_work() as uow:
            return list(await uow.sessions.list_active(principal.user.id, self._kernel.clock.now()))

    async def revoke_session(
        self, principal: Principal, session_id: str, ctx: RequestContext
    ) -> None:
        async with self._kernel.storage.unit_of_work() as uow:
            session = await uow.sessions.get(session_id)
            if session is None or session.user_id != principal.user.id:
                raise NotFoundError("no such session")
            await uow.sessions.revoke(session_id, self._kernel.clock.now())
            await self._kernel.audit(
                uow, "session_revoked", actor_id=principal.user.id, ctx=ctx, session_id=session_id
            )
            await uow.commit()
        await self._kernel.sessions_ended(principal.user.id)

    async def revoke_other_sessions(self, principal: Principal, ctx: RequestContext) -> int:
        now = self._kernel.clock.now()
        async with self._kernel.storage.unit_of_work() as uow:
            sessions = await uow.sessions.list_active(principal.user.id, now)
            count = 0
            for session in sessions:
                if session.id != principal.session_id:
                    count += await uow.sessions.revoke(session.id, now)
            await self._kernel.audit(
                uow, "sessions_revoked", actor_id=principal.user.id, ctx=ctx, count=count
            )
            await uow.commit()
        await self._kernel.sessions_ended(principal.user.id)
        return count

    async def purge_expired(self) -> int:
        """Delete expired one-time and refresh tokens and old rate-limit windows."""
        now = self._kernel.clock.now()
        async with self._kernel.storage.unit_of_work() as uow:
            count = await uow.tokens.delete_expired(now)
            count += await uow.refresh_tokens.delete_expired(now)
            await uow.commit()
        return count + await self._kernel.limiter.purge()
