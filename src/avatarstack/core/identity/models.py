"""The identity context's values: the policy operators tune, who is asking (RequestContext),
who is signed in (Principal, Profile), and what the use cases hand back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from avatarstack.core.ratelimit import Limit
from avatarstack.ports.storage import Identity, User

#: the purposes of one-time tokens (a token works only for the purpose it was issued for)
VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"  # noqa: S105 - a token purpose, not a password
OAUTH_STATE = "oauth_state"
OAUTH_LOGIN = "oauth_login"

#: the key of the notice on a user's topic that says sessions of that user ended
SESSIONS_ENDED = "sessions_ended"

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
    #: a fresh device cookie value after a password login (see SessionService.login)
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
