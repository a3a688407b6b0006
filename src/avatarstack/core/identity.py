"""The identity use cases: accounts, e-mail verification, login sessions, password reset,
external identities (OAuth), roles and the audit trail.

Security rules kept here, whatever adapter sits behind the ports:
- secrets (verification/reset tokens, refresh tokens, OAuth state, login codes) are random,
  ≥ 32 bytes, stored only as SHA-256 hashes, purpose-scoped and single-use by one conditional
  update;
- responses that could reveal whether an e-mail is registered are the same either way;
- a refresh token works once; presenting a used one revokes its whole session (family);
- a session revoked (logout, reset, admin) stops its access tokens at the next request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog

from avatarstack.core import accounts
from avatarstack.core.conversations import user_topic
from avatarstack.core.ratelimit import Limit, RateLimiter
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import (
    AuthenticationError,
    AvatarstackError,
    ConflictError,
    EmailNotVerifiedError,
    FieldError,
    InvalidInputError,
    InvalidTokenError,
    NotFoundError,
    PermissionDeniedError,
    SessionEndedError,
)
from avatarstack.ports.links import Links
from avatarstack.ports.mail import Mailer, MailMessage
from avatarstack.ports.oauth import AuthorizationRequest, OAuthProvider
from avatarstack.ports.security import AccessTokens, PasswordHasher
from avatarstack.ports.storage import (
    AuditEvent,
    AuthSession,
    Identity,
    IdentityStorage,
    IdentityUnitOfWork,
    OneTimeToken,
    RefreshToken,
    User,
    new_id,
)

log = structlog.get_logger("avatarstack.identity")

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"  # noqa: S105 - a token purpose, not a password
OAUTH_STATE = "oauth_state"
OAUTH_LOGIN = "oauth_login"


#: default rate limits (hits per seconds); operators tune them through settings
LOGIN_PER_IP = Limit(30, 60)
LOGIN_PER_ACCOUNT = Limit(10, 900)
REGISTER_PER_IP = Limit(10, 3600)
RESEND_PER_ACCOUNT = Limit(1, 60)
RESEND_PER_IP = Limit(10, 3600)
FORGOT_PER_ACCOUNT = Limit(3, 3600)
FORGOT_PER_IP = Limit(10, 3600)
REFRESH_PER_IP = Limit(120, 60)
OAUTH_PER_IP = Limit(30, 60)
PRINCIPAL_CACHE_SIZE = 10_000
#: the key of the notice on a user's topic that says sessions of that user ended
SESSIONS_ENDED = "sessions_ended"


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    verification_ttl: timedelta = timedelta(hours=24)
    reset_ttl: timedelta = timedelta(minutes=60)
    refresh_ttl: timedelta = timedelta(days=30)
    oauth_state_ttl: timedelta = timedelta(minutes=10)
    login_code_ttl: timedelta = timedelta(seconds=60)
    #: development only: registration responses carry the verification link
    expose_dev_links: bool = False
    #: development only: the first account registered on an empty installation is its admin
    #: (so a person trying avatarstack can upload and build by clicking alone); production
    #: creates admins with ``avatarstack users create --role admin``
    first_account_admin: bool = False
    login_per_ip: Limit = LOGIN_PER_IP
    login_per_account: Limit = LOGIN_PER_ACCOUNT
    register_per_ip: Limit = REGISTER_PER_IP
    resend_per_account: Limit = RESEND_PER_ACCOUNT
    resend_per_ip: Limit = RESEND_PER_IP
    forgot_per_account: Limit = FORGOT_PER_ACCOUNT
    forgot_per_ip: Limit = FORGOT_PER_IP
    refresh_per_ip: Limit = REFRESH_PER_IP
    oauth_per_ip: Limit = OAUTH_PER_IP
    #: how long a verified access token's principal is remembered (0: never)
    principal_cache: timedelta = timedelta(seconds=2)
    #: how long a device cookie (proof of an earlier sign-in from that browser) is honoured
    device_ttl: timedelta = timedelta(days=180)
    #: a used refresh token presented again this soon returns the same successor (tabs
    #: refreshing at once); later it is a reuse that ends the session
    refresh_grace: timedelta = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from (for rate limits, sessions and the audit trail)."""

    ip: str = "unknown"
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an authenticated request, with their profile as loaded for it."""

    user: User
    roles: frozenset[str]
    session_id: str
    permissions: frozenset[str] = field(default_factory=frozenset)
    identities: tuple[Identity, ...] = ()

    @property
    def profile(self) -> Profile:
        return Profile(user=self.user, roles=self.roles, identities=self.identities)

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True, slots=True)
class Profile:
    user: User
    roles: frozenset[str]
    identities: tuple[Identity, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    profile: Profile
    #: a fresh device cookie value after a password login (see IdentityService.login)
    device: str | None = None


@dataclass(frozen=True, slots=True)
class OAuthStart:
    """Where to send the browser, and the secret binding the login to that browser."""

    url: str
    binding: str
    max_age: timedelta


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    verification_url: str | None = None


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class IdentityService:
    def __init__(
        self,
        *,
        storage: IdentityStorage,
        hasher: PasswordHasher,
        tokens: AccessTokens,
        mailer: Mailer,
        clock: Clock,
        limiter: RateLimiter,
        public_url: str,
        links: Links,
        oauth_providers: Mapping[str, OAuthProvider] | None = None,
        policy: IdentityPolicy | None = None,
        server_key: bytes | None = None,
        broadcaster: Broadcaster | None = None,
    ) -> None:
        self._storage = storage
        #: tells open WebSockets on every instance that a user's sessions changed
        self._broadcaster = broadcaster
        #: signs device cookies and derives refresh successors; from the secret key (container)
        self._server_key = server_key or accounts.new_secret().encode()
        self._hasher = hasher
        self._tokens = tokens
        self._mailer = mailer
        self._clock = clock
        self._limiter = limiter
        self.public_url = public_url.rstrip("/")
        #: the addresses put in mails and redirects (the web adapter's paths)
        self.links = links
        self.oauth_providers: dict[str, OAuthProvider] = dict(oauth_providers or {})
        self.policy = policy or IdentityPolicy()
        self._dummy_hash: str | None = None
        self._outbox: set[asyncio.Task[None]] = set()
        self._principals: dict[str, tuple[datetime, Principal]] = {}
        self._lookups: dict[str, asyncio.Future[Principal]] = {}
        self._generation = 0

    # ------------------------------------------------------------------ helpers

    async def _audit(
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
                created_at=self._clock.now(),
            )
        )

    async def _send(self, message: MailMessage) -> None:
        """Queue a mail after the commit. Delivery runs in the background, so how long a
        response takes never reveals whether a message was sent (known vs unknown e-mails);
        a failure is logged and never undoes the change (the user can ask again)."""
        task = asyncio.create_task(self._deliver(message))
        self._outbox.add(task)
        task.add_done_callback(self._outbox.discard)

    async def _send_verification(self, email: str, link: str) -> None:
        await self._send(
            MailMessage(
                to=email,
                subject="Confirm your e-mail address",
                text=f"Open this link to confirm your address:\n\n{link}\n\n"
                f"It expires in {self.policy.verification_ttl}.",
                links={"verify": link},
                template="verify_email",
            )
        )

    async def _add_user(
        self,
        uow: IdentityUnitOfWork,
        email: str,
        roles: frozenset[str],
        *,
        password_hash: str | None = None,
        display_name: str | None = None,
        email_verified: bool = False,
    ) -> User:
        now = self._clock.now()
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

    async def _deliver(self, message: MailMessage) -> None:
        try:
            await self._mailer.send(message)
        except Exception as exc:
            log.error("mail_failed", template=message.template, error=str(exc))

    async def flush_mail(self) -> None:
        """Wait (up to 30 s) until queued mail is delivered or failed (shutdown, tests)."""
        if self._outbox:
            await asyncio.wait(set(self._outbox), timeout=30.0)

    async def _issue_one_time(
        self,
        uow: IdentityUnitOfWork,
        purpose: str,
        ttl: timedelta,
        *,
        user_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str:
        secret = accounts.new_secret()
        now = self._clock.now()
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

    async def _waste_a_hash(self, password: str) -> None:
        """Spend the same time as a real check, so timing does not reveal unknown e-mails."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hasher.hash(accounts.new_secret())
        await self._hasher.verify(self._dummy_hash, password)

    async def _profile(self, uow: IdentityUnitOfWork, user: User) -> Profile:
        roles = await uow.roles.get(user.id)
        identities = tuple(await uow.identities.list_for_user(user.id))
        return Profile(user=user, roles=roles, identities=identities)

    async def _start_session(
        self, uow: IdentityUnitOfWork, user: User, ctx: RequestContext
    ) -> TokenPair:
        now = self._clock.now()
        session = AuthSession(
            id=new_id(),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=now + self.policy.refresh_ttl,
            user_agent=(ctx.user_agent or "")[:300] or None,
            ip=ctx.ip,
        )
        await uow.sessions.add(session)
        return await self._token_pair(uow, user, session)

    def _successor(self, refresh_token: str) -> str:
        """The refresh token that replaces ``refresh_token``: derived from it with a server
        key (HMAC-SHA256), so each tab presenting the same token during the grace window gets
        the same successor while only its hash is stored (as for every refresh token)."""
        digest = hmac.new(
            self._server_key, b"refresh successor:" + refresh_token.encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def _token_pair(
        self,
        uow: IdentityUnitOfWork,
        user: User,
        session: AuthSession,
        *,
        refresh: str | None = None,
    ) -> TokenPair:
        now = self._clock.now()
        refresh = refresh or accounts.new_secret()
        await uow.refresh_tokens.add(
            RefreshToken(
                token_hash=accounts.hash_secret(refresh),
                session_id=session.id,
                created_at=now,
                expires_at=session.expires_at,
            )
        )
        profile = await self._profile(uow, user)
        access = self._tokens.issue(
            subject=user.id, session_id=session.id, roles=tuple(sorted(profile.roles)), now=now
        )
        return TokenPair(access, refresh, self._tokens.lifetime_seconds, profile)

    # ------------------------------------------------------------------ registration

    async def register(
        self, email: str, password: str, display_name: str | None, ctx: RequestContext
    ) -> RegistrationResult:
        """Same outcome for new and existing addresses; the owner of an existing one is told."""
        await self._limiter.check("register:ip", ctx.ip, self.policy.register_per_ip)
        email = accounts.normalise_email(email)
        accounts.check_password(password)
        name = accounts.clean_display_name(display_name)
        password_hash = await self._hasher.hash(password)
        link: str | None = None
        async with self._storage.unit_of_work() as uow:
            existing = await uow.users.get_by_email(email)
            if existing is None:
                first = self.policy.first_account_admin and await uow.users.count() == 0
                user = await self._add_user(
                    uow,
                    email,
                    frozenset({accounts.ADMIN if first else accounts.MEMBER}),
                    password_hash=password_hash,
                    display_name=name,
                )
                link = await self._verification_link(uow, user)
                await self._audit(
                    uow,
                    "user_registered_as_first_admin" if first else "user_registered",
                    subject_id=user.id,
                    ctx=ctx,
                )
            elif not existing.email_verified and existing.is_active:
                # A second registration of an address nobody has proven yet: either of the two
                # may be an attacker hoping the owner clicks a link, so neither password is
                # kept; the one who proves the address chooses it (verify_email mails a link).
                now = self._clock.now()
                cleared = existing.model_copy(update={"password_hash": None, "updated_at": now})
                await uow.users.update(cleared)
                await uow.tokens.revoke_for_user(existing.id, VERIFY_EMAIL, now)
                link = await self._verification_link(uow, cleared)
                await self._audit(uow, "registration_repeated", subject_id=existing.id, ctx=ctx)
            await uow.commit()
        if link is not None:
            await self._send_verification(email, link)
        else:
            await self._send(
                MailMessage(
                    to=email,
                    subject="Someone tried to register with your address",
                    text="An account with this e-mail address already exists. If this was "
                    "you, log in or reset your password. Otherwise ignore this message.",
                    template="already_registered",
                )
            )
        return RegistrationResult(link if self.policy.expose_dev_links else None)

    @staticmethod
    def _password_binding(user: User) -> str:
        """What a verification token records of the password it was issued for (a hash of
        the stored hash, never the hash itself)."""
        return accounts.hash_secret(user.password_hash or "")

    async def _verification_link(self, uow: IdentityUnitOfWork, user: User) -> str:
        secret = await self._issue_one_time(
            uow,
            VERIFY_EMAIL,
            self.policy.verification_ttl,
            user_id=user.id,
            data={"password": self._password_binding(user)},
        )
        return self.links.verify_email(secret)

    async def verify_email(self, token: str, ctx: RequestContext) -> Profile:
        """Mark the address proven. A password set before the proof survives only when this
        link was issued for it (the registration that set it); otherwise it is cleared and the
        person who proved the address is mailed a link to choose one (pre-account hijacking:
        an attacker's password must not outlive the owner's verification)."""
        reset_link: str | None = None
        async with self._storage.unit_of_work() as uow:
            used = await uow.tokens.consume(
                accounts.hash_secret(token), VERIFY_EMAIL, self._clock.now()
            )
            user = await uow.users.get(used.user_id) if used and used.user_id else None
            if used is None or user is None:
                raise InvalidTokenError("the verification link is invalid, used or expired")
            if not user.email_verified:
                now = self._clock.now()
                update: dict[str, Any] = {"email_verified": True, "updated_at": now}
                unproven = used.data.get("password") != self._password_binding(user)
                if user.password_hash is not None and unproven:
                    update["password_hash"] = None
                    await self._audit(uow, "unproven_password_cleared", subject_id=user.id, ctx=ctx)
                user = user.model_copy(update=update)
                await uow.users.update(user)
                await self._audit(uow, "email_verified", subject_id=user.id, ctx=ctx)
                if user.password_hash is None and user.is_active:
                    secret = await self._issue_one_time(
                        uow, PASSWORD_RESET, self.policy.reset_ttl, user_id=user.id
                    )
                    reset_link = self.links.reset_password(secret)
            profile = await self._profile(uow, user)
            await uow.commit()
        if reset_link is not None:
            await self._send(
                MailMessage(
                    to=user.email,
                    subject="Reset your password: choose one for your confirmed address",
                    text="Your address is confirmed. Open this link to choose your password:"
                    f"\n\n{reset_link}\n\nIt expires in {self.policy.reset_ttl}.",
                    links={"reset": reset_link},
                    template="password_reset",
                )
            )
        return profile

    async def resend_verification(self, email: str, ctx: RequestContext) -> None:
        await self._limiter.check("resend:ip", ctx.ip, self.policy.resend_per_ip)
        try:
            email = accounts.normalise_email(email)
        except InvalidInputError:
            return  # 202 always, as for an unknown address (and as forgot_password does)
        await self._limiter.check("resend:account", email, self.policy.resend_per_account)
        link: str | None = None
        async with self._storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(email)
            if user is not None and not user.email_verified and user.is_active:
                link = await self._verification_link(uow, user)
            await uow.commit()
        if link:
            await self._send_verification(email, link)

    # ------------------------------------------------------------------ sessions

    # Targeted lockout (OWASP Authentication Cheat Sheet, "device cookies"; NIST SP 800-63B
    # 5.2.2): the per-account limit counts failed attempts only, and a browser that signed in
    # to this account before presents a signed device cookie; its attempts are limited on
    # their own (per cookie), so strangers' failures never lock the owner out.

    def issue_device(self, user_id: str) -> str:
        """A device cookie value: ``user.nonce.expiry.mac`` (HMAC-SHA256 with the device key)."""
        expires = int((self._clock.now() + self.policy.device_ttl).timestamp())
        payload = f"{user_id}.{accounts.new_secret()[:22]}.{expires}"
        return f"{payload}.{self._device_mac(payload)}"

    def _device_mac(self, payload: str) -> str:
        digest = hmac.new(self._server_key, b"device:" + payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def trusted_device(self, device: str | None, user_id: str) -> str | None:
        """The nonce of a valid, unexpired device cookie issued to ``user_id``, else None."""
        if not device or len(device) > 300:
            return None
        payload, _, mac = device.rpartition(".")
        owner, _, rest = payload.partition(".")
        nonce, _, expires = rest.partition(".")
        if not hmac.compare_digest(mac, self._device_mac(payload)) or owner != user_id:
            return None
        if not expires.isdigit() or int(expires) <= self._clock.now().timestamp():
            return None
        return nonce

    async def login(
        self, email: str, password: str, ctx: RequestContext, *, device: str | None = None
    ) -> TokenPair:
        """A password login. ``device`` is the client's device cookie, if any; the pair
        carries a fresh one to set (``TokenPair.device``)."""
        await self._limiter.check("login:ip", ctx.ip, self.policy.login_per_ip)
        try:
            email = accounts.normalise_email(email)
        except InvalidInputError:
            await self._waste_a_hash(password[: accounts.MAX_PASSWORD_LENGTH])
            raise AuthenticationError("wrong e-mail or password") from None
        async with self._storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(email)
        nonce = self.trusted_device(device, user.id) if user is not None else None
        scope, subject = ("login:device", nonce) if nonce else ("login:account", email)
        await self._limiter.ensure_below(scope, subject, self.policy.login_per_account)
        if (
            user is None
            or user.password_hash is None
            or len(password) > accounts.MAX_PASSWORD_LENGTH
        ):
            await self._waste_a_hash(password[: accounts.MAX_PASSWORD_LENGTH])
            await self._limiter.count_failure(scope, subject, self.policy.login_per_account)
            await self._record_failed_login(user, ctx)
            raise AuthenticationError("wrong e-mail or password")
        if not await self._hasher.verify(user.password_hash, password):
            await self._limiter.count_failure(scope, subject, self.policy.login_per_account)
            await self._record_failed_login(user, ctx)
            raise AuthenticationError("wrong e-mail or password")
        if not user.is_active:
            raise PermissionDeniedError("this account is disabled")
        if not user.email_verified:
            raise EmailNotVerifiedError("confirm your e-mail address before logging in")
        if self._hasher.needs_rehash(user.password_hash):
            user = user.model_copy(update={"password_hash": await self._hasher.hash(password)})
        async with self._storage.unit_of_work() as uow:
            fresh = await uow.users.get(user.id)
            if fresh is None:
                raise AuthenticationError("wrong e-mail or password")
            if fresh.password_hash != user.password_hash:
                await uow.users.update(
                    fresh.model_copy(update={"password_hash": user.password_hash})
                )
            pair = await self._start_session(uow, fresh, ctx)
            await self._audit(uow, "login_succeeded", actor_id=user.id, subject_id=user.id, ctx=ctx)
            await uow.commit()
        return replace(pair, device=self.issue_device(user.id))

    async def _record_failed_login(self, user: User | None, ctx: RequestContext) -> None:
        async with self._storage.unit_of_work() as uow:
            await self._audit(uow, "login_failed", subject_id=user.id if user else None, ctx=ctx)
            await uow.commit()

    async def refresh(self, refresh_token: str, ctx: RequestContext) -> TokenPair:
        await self._limiter.check("refresh:ip", ctx.ip, self.policy.refresh_per_ip)
        token_hash = accounts.hash_secret(refresh_token)
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            used = await uow.refresh_tokens.use(token_hash, now)
            if used is None:
                known = await uow.refresh_tokens.get(token_hash)
                if (
                    known is not None
                    and known.used_at is not None
                    and now - known.used_at <= self.policy.refresh_grace
                ):
                    # another tab refreshed with this token a moment ago: the same successor
                    successor = self._successor(refresh_token)
                    kept = await uow.refresh_tokens.get(accounts.hash_secret(successor))
                    if kept is not None and kept.session_id == known.session_id:
                        return await self._pair_for(uow, known.session_id, successor, now)
                if known is not None and known.used_at is not None:
                    # A rotated token came back: someone holds a copy. End the whole family.
                    session = await uow.sessions.get(known.session_id)
                    if await uow.sessions.revoke(known.session_id, now):
                        await self._audit(
                            uow,
                            "refresh_token_reused",
                            subject_id=session.user_id if session else None,
                            ctx=ctx,
                            session_id=known.session_id,
                        )
                    await uow.commit()
                    await self._sessions_ended(session.user_id if session else None)
                raise AuthenticationError("the refresh token is invalid, used or expired")
            session, user = await self._live_session(uow, used.session_id, now)
            await uow.sessions.touch(session.id, now)
            pair = await self._token_pair(
                uow, user, session, refresh=self._successor(refresh_token)
            )
            await uow.commit()
        return pair

    async def _live_session(
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

    async def _pair_for(
        self, uow: IdentityUnitOfWork, session_id: str, refresh: str, now: datetime
    ) -> TokenPair:
        """A new access token with the (already stored) successor refresh token."""
        session, user = await self._live_session(uow, session_id, now)
        profile = await self._profile(uow, user)
        access = self._tokens.issue(
            subject=user.id, session_id=session.id, roles=tuple(sorted(profile.roles)), now=now
        )
        return TokenPair(access, refresh, self._tokens.lifetime_seconds, profile)

    async def authenticate(self, access_token: str) -> Principal:
        """The principal of a valid access token whose session is still active.

        A verified principal is remembered for at most ``policy.principal_cache`` (and never
        past the token's expiry): repeated requests with one token skip the signature check
        and the database. Every change made through this service (logout, revocation, reset,
        roles, profile, identities) forgets all remembered principals at once, so on this
        instance it applies to the next request; other instances see it within the cache
        lifetime. A zero lifetime checks the database on every request.
        """
        now = self._clock.now()
        cached = self._principals.get(access_token)
        if cached is not None and cached[0] > now:
            return cached[1]
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
        generation = self._generation
        claims = self._tokens.verify(access_token, now=now)
        async with self._storage.unit_of_work() as uow:
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
        lifetime = self.policy.principal_cache
        # a change committed while this lookup ran may not be in what it read: don't keep it
        if lifetime > timedelta(0) and generation == self._generation:
            if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
                self._principals.clear()
            until = min(now + lifetime, claims.expires_at, session.expires_at)
            self._principals[access_token] = (until, principal)
        return principal

    def _forget_principals(self) -> None:
        """Something that authentication depends on changed: re-check every token."""
        self._generation += 1
        self._principals.clear()

    def forget_principals(self) -> None:
        """Forget remembered principals (another instance said a session ended)."""
        self._forget_principals()

    async def _sessions_ended(self, user_id: str | None) -> None:
        """Forget remembered principals here, and tell every instance (through the
        broadcaster, on the user's topic) so open WebSockets re-check their token at once."""
        self._forget_principals()
        if self._broadcaster is None or user_id is None:
            return
        try:
            await self._broadcaster.publish(user_topic(user_id), {SESSIONS_ENDED: True})
        except AvatarstackError as exc:  # sockets still re-check on their own schedule
            log.warning("session_notice_failed", error=exc.code)

    async def logout(self, principal: Principal, ctx: RequestContext) -> None:
        async with self._storage.unit_of_work() as uow:
            await uow.sessions.revoke(principal.session_id, self._clock.now())
            await self._audit(uow, "logout", actor_id=principal.user.id, ctx=ctx)
            await uow.commit()
        await self._sessions_ended(principal.user.id)

    async def logout_refresh(self, refresh_token: str, ctx: RequestContext) -> bool:
        """End the session (the whole refresh-token family) that ``refresh_token`` belongs to,
        used or not: the cookie logout holds a refresh token, not an access token. False when
        the token is unknown or its session has already ended."""
        token_hash = accounts.hash_secret(refresh_token)
        async with self._storage.unit_of_work() as uow:
            known = await uow.refresh_tokens.get(token_hash)
            if known is None:
                return False
            session = await uow.sessions.get(known.session_id)
            if session is None or not await uow.sessions.revoke(session.id, self._clock.now()):
                return False
            await self._audit(uow, "logout", actor_id=session.user_id, ctx=ctx)
            await uow.commit()
        await self._sessions_ended(session.user_id)
        return True

    async def list_sessions(self, principal: Principal) -> list[AuthSession]:
        async with self._storage.unit_of_work() as uow:
            return list(await uow.sessions.list_active(principal.user.id, self._clock.now()))

    async def revoke_session(
        self, principal: Principal, session_id: str, ctx: RequestContext
    ) -> None:
        async with self._storage.unit_of_work() as uow:
            session = await uow.sessions.get(session_id)
            if session is None or session.user_id != principal.user.id:
                raise NotFoundError("no such session")
            await uow.sessions.revoke(session_id, self._clock.now())
            await self._audit(
                uow, "session_revoked", actor_id=principal.user.id, ctx=ctx, session_id=session_id
            )
            await uow.commit()
        await self._sessions_ended(principal.user.id)

    async def revoke_other_sessions(self, principal: Principal, ctx: RequestContext) -> int:
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            sessions = await uow.sessions.list_active(principal.user.id, now)
            count = 0
            for session in sessions:
                if session.id != principal.session_id:
                    count += await uow.sessions.revoke(session.id, now)
            await self._audit(
                uow, "sessions_revoked", actor_id=principal.user.id, ctx=ctx, count=count
            )
            await uow.commit()
        await self._sessions_ended(principal.user.id)
        return count

    # ------------------------------------------------------------------ password reset

    async def forgot_password(self, email: str, ctx: RequestContext) -> None:
        await self._limiter.check("forgot:ip", ctx.ip, self.policy.forgot_per_ip)
        try:
            email = accounts.normalise_email(email)
        except InvalidInputError:
            return  # same answer as for an unknown address
        await self._limiter.check("forgot:account", email, self.policy.forgot_per_account)
        link: str | None = None
        async with self._storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(email)
            if user is not None and user.is_active:
                secret = await self._issue_one_time(
                    uow, PASSWORD_RESET, self.policy.reset_ttl, user_id=user.id
                )
                link = self.links.reset_password(secret)
                await self._audit(uow, "password_reset_requested", subject_id=user.id, ctx=ctx)
            await uow.commit()
        if link:
            await self._send(
                MailMessage(
                    to=email,
                    subject="Reset your password",
                    text=f"Open this link to choose a new password:\n\n{link}\n\n"
                    f"It expires in {self.policy.reset_ttl}. If you did not ask, ignore this.",
                    links={"reset": link},
                    template="password_reset",
                )
            )

    async def reset_password(self, token: str, password: str, ctx: RequestContext) -> None:
        accounts.check_password(password)
        password_hash = await self._hasher.hash(password)
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            used = await uow.tokens.consume(accounts.hash_secret(token), PASSWORD_RESET, now)
            user = await uow.users.get(used.user_id) if used and used.user_id else None
            if user is None:
                raise InvalidTokenError("the reset link is invalid, used or expired")
            # the mailbox owner just proved control of the address
            user = user.model_copy(
                update={"password_hash": password_hash, "email_verified": True, "updated_at": now}
            )
            await uow.users.update(user)
            await uow.tokens.revoke_for_user(user.id, PASSWORD_RESET, now)  # other links die
            revoked = await uow.sessions.revoke_all(user.id, now)
            await self._audit(
                uow, "password_reset", subject_id=user.id, ctx=ctx, sessions_revoked=revoked
            )
            await uow.commit()
        await self._sessions_ended(user.id)
        await self._send(
            MailMessage(
                to=user.email,
                subject="Your password was changed",
                text="Your password was just changed and every session was signed out. "
                "If this was not you, reset your password now.",
                template="password_changed",
            )
        )

    # ------------------------------------------------------------------ profile & admin

    async def profile(self, user_id: str) -> Profile:
        async with self._storage.unit_of_work() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFoundError("no such user")
            return await self._profile(uow, user)

    async def update_profile(self, principal: Principal, display_name: str | None) -> Profile:
        name = accounts.clean_display_name(display_name)
        async with self._storage.unit_of_work() as uow:
            user = await uow.users.get(principal.user.id)
            if user is None:
                raise NotFoundError("no such user")
            user = user.model_copy(update={"display_name": name, "updated_at": self._clock.now()})
            await uow.users.update(user)
            profile = await self._profile(uow, user)
            await uow.commit()
        self._forget_principals()
        return profile

    async def list_users(self, *, limit: int, offset: int) -> tuple[list[Profile], int]:
        async with self._storage.unit_of_work() as uow:
            users = await uow.users.list(limit=limit, offset=offset)
            total = await uow.users.count()
            return [await self._profile(uow, u) for u in users], total

    async def set_roles(
        self, actor: Principal | None, user_id: str, roles: frozenset[str], ctx: RequestContext
    ) -> Profile:
        wanted = accounts.validate_roles(roles)
        async with self._storage.unit_of_work() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFoundError("no such user")
            before = await uow.roles.get(user_id)
            losing_admin = accounts.ADMIN in before and accounts.ADMIN not in wanted
            if losing_admin and not await self._another_admin_exists(uow, user_id):
                raise ConflictError("the last admin cannot lose the admin role")
            await uow.roles.set(user_id, wanted)
            await self._audit(
                uow,
                "roles_changed",
                actor_id=actor.user.id if actor else None,
                subject_id=user_id,
                ctx=ctx,
                before=sorted(before),
                after=sorted(wanted),
            )
            profile = await self._profile(uow, user)
            await uow.commit()
        self._forget_principals()
        return profile

    async def _another_admin_exists(self, uow: IdentityUnitOfWork, user_id: str) -> bool:
        offset = 0
        while True:
            users = await uow.users.list(limit=200, offset=offset)
            for other in users:
                if other.id != user_id and accounts.ADMIN in await uow.roles.get(other.id):
                    return True
            if len(users) < 200:
                return False
            offset += 200

    async def create_user(
        self, email: str, password: str | None, roles: frozenset[str], ctx: RequestContext
    ) -> Profile:
        """Operator path (CLI): a verified user with the given roles."""
        email = accounts.normalise_email(email, field="email")
        wanted = accounts.validate_roles(roles or {accounts.MEMBER})
        password_hash = None
        if password is not None:
            accounts.check_password(password, field="password")
            password_hash = await self._hasher.hash(password)
        async with self._storage.unit_of_work() as uow:
            if await uow.users.get_by_email(email) is not None:
                raise ConflictError(f"a user with the e-mail {email} already exists")
            user = await self._add_user(
                uow, email, wanted, password_hash=password_hash, email_verified=True
            )
            await self._audit(
                uow, "user_created", subject_id=user.id, ctx=ctx, roles=sorted(wanted)
            )
            profile = await self._profile(uow, user)
            await uow.commit()
        return profile

    async def find_user(self, email: str) -> User:
        async with self._storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(accounts.normalise_email(email, field="email"))
        if user is None:
            raise NotFoundError(f"no user with the e-mail {email}")
        return user

    async def audit_log(
        self, *, limit: int, before_id: int | None, subject_id: str | None
    ) -> list[AuditEvent]:
        async with self._storage.unit_of_work() as uow:
            return list(
                await uow.audit.list(limit=limit, before_id=before_id, subject_id=subject_id)
            )

    # ------------------------------------------------------------------ OAuth

    def _provider(self, name: str) -> OAuthProvider:
        provider = self.oauth_providers.get(name)
        if provider is None:
            raise NotFoundError(f"no login provider named {name!r}")
        return provider

    def safe_redirect(self, redirect_to: str | None, field: str = "redirect_to") -> str:
        """Only same-origin targets (PUBLIC_URL) or local paths; anything else is refused (an
        InvalidInputError naming ``field``, where the caller read the target from)."""
        if not redirect_to:
            return "/"
        if redirect_to.startswith("/") and not redirect_to.startswith(("//", "/\\")):
            if all(ch.isprintable() and ch not in "\\" for ch in redirect_to):
                return redirect_to
        else:
            target, home = urlsplit(redirect_to), urlsplit(self.public_url)
            same_site = (target.scheme, target.netloc) == (home.scheme, home.netloc)
            # printable only, as for paths: a NUL cannot even be stored (PostgreSQL JSONB)
            if same_site and not target.username and redirect_to.isprintable():
                return redirect_to
        raise InvalidInputError(
            "redirect_to must stay on this site",
            [FieldError(field, "use a path or a URL under PUBLIC_URL")],
        )

    async def begin_oauth(
        self,
        provider_name: str,
        redirect_to: str | None,
        ctx: RequestContext,
        *,
        link_user_id: str | None = None,
        redirect_field: str = "redirect_to",
    ) -> OAuthStart:
        """Store a state and return the provider URL plus the browser binding: a secret the
        caller gives the browser (a cookie) and must present at the callback, so a login
        started in one browser cannot be completed in another (login CSRF). An off-site
        ``redirect_to`` is refused as invalid input in ``redirect_field`` (the caller's name
        for where it came from)."""
        await self._limiter.check("oauth:ip", ctx.ip, self.policy.oauth_per_ip)
        provider = self._provider(provider_name)
        target = self.safe_redirect(redirect_to, redirect_field)
        binding = accounts.new_secret()
        nonce = accounts.new_secret()
        verifier = accounts.new_secret() + accounts.new_secret()[:20]  # 43..128 chars (RFC 7636)
        async with self._storage.unit_of_work() as uow:
            state = await self._issue_one_time(
                uow,
                OAUTH_STATE,
                self.policy.oauth_state_ttl,
                user_id=link_user_id,
                data={
                    "provider": provider_name,
                    "nonce": nonce,
                    "code_verifier": verifier,
                    "redirect_to": target,
                    "binding": accounts.hash_secret(binding),
                },
            )
            await uow.commit()
        url = await provider.authorization_url(
            AuthorizationRequest(
                redirect_uri=self.links.oauth_callback(provider_name),
                state=state,
                nonce=nonce,
                code_challenge=_pkce_challenge(verifier),
            )
        )
        return OAuthStart(url=url, binding=binding, max_age=self.policy.oauth_state_ttl)

    async def finish_oauth(
        self,
        provider_name: str,
        code: str | None,
        state: str | None,
        binding: str | None,
        ctx: RequestContext,
    ) -> str:
        """Handle the provider's callback; returns where to send the browser (never raises for
        bad input: errors travel in the fragment)."""
        try:
            login_code, redirect_to = await self._finish_oauth(
                provider_name, code, state, binding, ctx
            )
        except AvatarstackError as exc:  # incl. provider outages: the browser gets a page
            log.info("oauth_failed", provider=provider_name, error=exc.code)
            return self.links.oauth_failed(exc.code)
        return self.links.oauth_complete(login_code=login_code, redirect_to=redirect_to)

    async def _finish_oauth(
        self,
        provider_name: str,
        code: str | None,
        state: str | None,
        binding: str | None,
        ctx: RequestContext,
    ) -> tuple[str, str]:
        provider = self._provider(provider_name)
        if not state or not code:
            raise InvalidTokenError("the login was not started here or is incomplete")
        async with self._storage.unit_of_work() as uow:
            stored = await uow.tokens.consume(
                accounts.hash_secret(state), OAUTH_STATE, self._clock.now()
            )
            await uow.commit()
        self._forget_principals()
        if stored is None or stored.data.get("provider") != provider_name:
            raise InvalidTokenError("the login state is unknown, used or expired")
        if not binding or not hmac.compare_digest(
            accounts.hash_secret(binding), str(stored.data.get("binding", ""))
        ):
            raise InvalidTokenError("the login was started in another browser")
        profile = await provider.complete(
            code=code,
            code_verifier=str(stored.data["code_verifier"]),
            redirect_uri=self.links.oauth_callback(provider_name),
            nonce=str(stored.data["nonce"]),
        )
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            identity = await uow.identities.get_by_subject(provider_name, profile.subject)
            link_to = stored.user_id
            if identity is not None:
                if link_to is not None and identity.user_id != link_to:
                    raise ConflictError("this external account is linked to another user")
                user = await uow.users.get(identity.user_id)
            elif link_to is not None:
                user = await uow.users.get(link_to)
                action = "identity_linked"
            else:
                email = accounts.normalise_email(profile.email) if profile.email else None
                if email is None or not profile.email_verified:
                    raise AuthenticationError(
                        "the provider did not confirm an e-mail address; log in another way "
                        "and link this account from your profile"
                    )
                user = await uow.users.get_by_email(email)
                action = "identity_linked"
                if user is None:
                    user = await self._add_user(
                        uow,
                        email,
                        frozenset({accounts.MEMBER}),
                        display_name=accounts.clean_display_name(profile.name),
                        email_verified=True,
                    )
                    action = "user_registered_oauth"
                elif not user.email_verified:
                    # Nobody proved this address before: the password was chosen by whoever
                    # registered it (maybe a squatter), so it must not open the account now
                    # that the provider confirmed the real owner (pre-account hijacking).
                    user = user.model_copy(
                        update={"email_verified": True, "password_hash": None, "updated_at": now}
                    )
                    await uow.users.update(user)
            if user is None or not user.is_active:
                raise AuthenticationError("this account cannot log in")
            if identity is None:
                await uow.identities.add(
                    Identity(
                        id=new_id(),
                        user_id=user.id,
                        provider=provider_name,
                        subject=profile.subject,
                        email=profile.email,
                        email_verified=profile.email_verified,
                        created_at=now,
                    )
                )
                await self._audit(
                    uow,
                    action,
                    actor_id=user.id,
                    subject_id=user.id,
                    ctx=ctx,
                    provider=provider_name,
                )
            login_code = await self._issue_one_time(
                uow, OAUTH_LOGIN, self.policy.login_code_ttl, user_id=user.id
            )
            await uow.commit()
        self._forget_principals()
        return login_code, str(stored.data.get("redirect_to") or "/")

    async def exchange_login_code(self, code: str, ctx: RequestContext) -> TokenPair:
        async with self._storage.unit_of_work() as uow:
            used = await uow.tokens.consume(
                accounts.hash_secret(code), OAUTH_LOGIN, self._clock.now()
            )
            user = await uow.users.get(used.user_id) if used and used.user_id else None
            if user is None or not user.is_active:
                raise InvalidTokenError("the login code is invalid, used or expired")
            pair = await self._start_session(uow, user, ctx)
            await self._audit(
                uow,
                "login_succeeded",
                actor_id=user.id,
                subject_id=user.id,
                ctx=ctx,
                method="oauth",
            )
            await uow.commit()
        return pair

    async def unlink_identity(
        self, principal: Principal, identity_id: str, ctx: RequestContext
    ) -> None:
        async with self._storage.unit_of_work() as uow:
            identities = await uow.identities.list_for_user(principal.user.id)
            target = next((i for i in identities if i.id == identity_id), None)
            if target is None:
                raise NotFoundError("no such linked identity")
            user = await uow.users.get(principal.user.id)
            has_password = bool(user and user.password_hash)
            if not has_password and len(identities) == 1:
                raise ConflictError(
                    "this is your only way to log in; set a password (reset) or link another "
                    "provider first"
                )
            await uow.identities.delete(identity_id)
            await self._audit(
                uow,
                "identity_unlinked",
                actor_id=principal.user.id,
                subject_id=principal.user.id,
                ctx=ctx,
                provider=target.provider,
            )
            await uow.commit()
        self._forget_principals()

    async def purge_expired(self) -> int:
        """Delete expired one-time and refresh tokens and old rate-limit windows."""
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            count = await uow.tokens.delete_expired(now)
            count += await uow.refresh_tokens.delete_expired(now)
            await uow.commit()
        return count + await self._limiter.purge()

    async def close(self) -> None:
        await self.flush_mail()
        for provider in self.oauth_providers.values():
            await provider.close()
