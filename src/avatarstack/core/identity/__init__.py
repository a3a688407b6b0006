"""The identity use cases: accounts, e-mail verification, login sessions, password reset,
external identities (OAuth), roles and the audit trail, one service per reason to change
(``IdentityService`` groups them).

Security rules kept here, whatever adapter sits behind the ports:
- secrets (verification/reset tokens, refresh tokens, OAuth state, login codes) are random,
  ≥ 32 bytes, stored only as SHA-256 hashes, purpose-scoped and single-use by one conditional
  update;
- responses that could reveal whether an e-mail is registered are the same either way;
- a refresh token works once; presenting a used one revokes its whole session (family);
- a session revoked (logout, reset, admin) stops its access tokens at the next request.
"""

from avatarstack.core.identity.admin import AdminService
from avatarstack.core.identity.authentication import AuthenticationService
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import (
    SESSIONS_ENDED,
    IdentityPolicy,
    OAuthStart,
    Principal,
    Profile,
    RegistrationResult,
    RequestContext,
    TokenPair,
)
from avatarstack.core.identity.oauth import OAuthService
from avatarstack.core.identity.outbox import MailOutbox
from avatarstack.core.identity.passwords import PasswordService
from avatarstack.core.identity.registration import RegistrationService
from avatarstack.core.identity.service import IdentityService
from avatarstack.core.identity.sessions import SessionService
from avatarstack.core.identity.tokens import SessionTokens

__all__ = [
    "SESSIONS_ENDED",
    "AdminService",
    "AuthenticationService",
    "IdentityKernel",
    "IdentityPolicy",
    "IdentityService",
    "MailOutbox",
    "OAuthService",
    "OAuthStart",
    "PasswordService",
    "Principal",
    "Profile",
    "RegistrationResult",
    "RegistrationService",
    "RequestContext",
    "SessionService",
    "SessionTokens",
    "TokenPair",
]
