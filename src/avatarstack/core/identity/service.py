"""``IdentityService``: the identity use cases, grouped by reason to change."""

from __future__ import annotations

from avatarstack.core.identity.admin import AdminService
from avatarstack.core.identity.authentication import AuthenticationService
from avatarstack.core.identity.models import IdentityPolicy
from avatarstack.core.identity.oauth import OAuthService
from avatarstack.core.identity.outbox import MailOutbox
from avatarstack.core.identity.passwords import PasswordService
from avatarstack.core.identity.registration import RegistrationService
from avatarstack.core.identity.sessions import SessionService


class IdentityService:
    """The identity services as one object for the adapters (``identity.sessions.login``,
    ``identity.registration.register``, …). It holds the services the container built and
    adds no behaviour of its own beyond closing them."""

    def __init__(
        self,
        *,
        policy: IdentityPolicy,
        outbox: MailOutbox,
        registration: RegistrationService,
        sessions: SessionService,
        authentication: AuthenticationService,
        passwords: PasswordService,
        oauth: OAuthService,
        admin: AdminService,
    ) -> None:
        self.policy = policy
        self.outbox = outbox
        self.registration = registration
        self.sessions = sessions
        self.authentication = authentication
        self.passwords = passwords
        self.oauth = oauth
        self.admin = admin

    async def close(self) -> None:
        """Deliver the queued mail and close the login providers' HTTP sessions."""
        await self.outbox.flush()
        await self.oauth.close()
