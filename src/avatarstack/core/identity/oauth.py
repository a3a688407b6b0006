"""External logins (OAuth / OpenID Connect) and the identities they link."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

import structlog

from avatarstack.core import accounts
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import (
    OAUTH_LOGIN,
    OAUTH_STATE,
    OAuthStart,
    Principal,
    RequestContext,
    TokenPair,
)
from avatarstack.core.identity.tokens import SessionTokens
from avatarstack.ports.errors import (
    AuthenticationError,
    AvatarstackError,
    ConflictError,
    FieldError,
    InvalidInputError,
    InvalidTokenError,
    NotFoundError,
)
from avatarstack.ports.oauth import AuthorizationRequest, OAuthProfile, OAuthProvider
from avatarstack.ports.storage import Identity, OneTimeToken, new_id

log = structlog.get_logger("avatarstack.identity")


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthService:
    """Logins through a provider, and the external identities linked to an account."""

    def __init__(
        self,
        kernel: IdentityKernel,
        issuer: SessionTokens,
        *,
        public_url: str,
        providers: Mapping[str, OAuthProvider] | None = None,
    ) -> None:
        self._kernel = kernel
        self._issuer = issuer
        #: where redirects may lead (see safe_redirect)
        self.public_url = public_url.rstrip("/")
        #: the login providers, by name
        self.providers: dict[str, OAuthProvider] = dict(providers or {})

    def _provider(self, name: str) -> OAuthProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFoundError(f"no login provider named {name!r}")
        return provider

    def safe_redirect(self, redirect_to: str | None) -> str:
        """Only same-origin targets (PUBLIC_URL) or local paths; anything else is refused (an
        InvalidInputError naming the field ``redirect_to``; the adapter adds where it read it)."""
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
            [FieldError("redirect_to", "use a path or a URL under PUBLIC_URL")],
        )

    def failure_url(self, error: str) -> str:
        """Where to send a browser whose login failed with ``error`` (an error code)."""
        return self._kernel.links.oauth_failed(error)

    async def begin_oauth(
        self,
        provider_name: str,
        redirect_to: str | None,
        ctx: RequestContext,
        *,
        link_user_id: str | None = None,
    ) -> OAuthStart:
        """Store a state and return the provider URL plus the browser binding: a secret the
        caller gives the browser (a cookie) and must present at the callback, so a login
        started in one browser cannot be completed in another (login CSRF). An off-site
        ``redirect_to`` is refused as invalid input (see safe_redirect)."""
        await self._kernel.limiter.check("oauth:ip", ctx.ip, self._kernel.policy.oauth_per_ip)
        provider = self._provider(provider_name)
        target = self.safe_redirect(redirect_to)
        binding = accounts.new_secret()
        nonce = accounts.new_secret()
        verifier = accounts.new_secret() + accounts.new_secret()[:20]  # 43..128 chars (RFC 7636)
        async with self._kernel.storage.unit_of_work() as uow:
            state = await self._kernel.issue_one_time(
                uow,
                OAUTH_STATE,
                self._kernel.policy.oauth_state_ttl,
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
                redirect_uri=self._kernel.links.oauth_callback(provider_name),
                state=state,
                nonce=nonce,
                code_challenge=_pkce_challenge(verifier),
            )
        )
        return OAuthStart(url=url, binding=binding, max_age=self._kernel.policy.oauth_state_ttl)

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
            provider = self._provider(provider_name)
            if not state or not code:
                raise InvalidTokenError("the login was not started here or is incomplete")
            stored = await self._claim_state(provider_name, state, binding)
            profile = await provider.complete(
                code=code,
                code_verifier=str(stored.data["code_verifier"]),
                redirect_uri=self._kernel.links.oauth_callback(provider_name),
                nonce=str(stored.data["nonce"]),
            )
            login_code = await self._sign_in(provider_name, profile, stored.user_id, ctx)
        except AvatarstackError as exc:  # incl. provider outages: the browser gets a page
            log.info("oauth_failed", provider=provider_name, error=exc.code)
            return self.failure_url(exc.code)
        redirect_to = str(stored.data.get("redirect_to") or "/")
        return self._kernel.links.oauth_complete(login_code=login_code, redirect_to=redirect_to)

    async def _claim_state(
        self, provider_name: str, state: str, binding: str | None
    ) -> OneTimeToken:
        """Use up the login's state (it works once): it must be this provider's, and the
        browser must present the binding the login started with."""
        async with self._kernel.storage.unit_of_work() as uow:
            stored = await uow.tokens.consume(
                accounts.hash_secret(state), OAUTH_STATE, self._kernel.clock.now()
            )
            await uow.commit()
        self._kernel.forget_principals()
        if stored is None or stored.data.get("provider") != provider_name:
            raise InvalidTokenError("the login state is unknown, used or expired")
        if not binding or not hmac.compare_digest(
            accounts.hash_secret(binding), str(stored.data.get("binding", ""))
        ):
            raise InvalidTokenError("the login was started in another browser")
        return stored

    async def _sign_in(
        self, provider_name: str, profile: OAuthProfile, link_to: str | None, ctx: RequestContext
    ) -> str:
        """Find the account ``profile`` belongs to, link it to ``link_to`` (a linking login) or
        create it; returns a login code for it."""
        now = self._kernel.clock.now()
        async with self._kernel.storage.unit_of_work() as uow:
            identity = await uow.identities.get_by_subject(provider_name, profile.subject)
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
                    user = await self._kernel.add_user(
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
                await self._kernel.audit(
                    uow,
                    action,
                    actor_id=user.id,
                    subject_id=user.id,
                    ctx=ctx,
                    provider=provider_name,
                )
            login_code = await self._kernel.issue_one_time(
                uow, OAUTH_LOGIN, self._kernel.policy.login_code_ttl, user_id=user.id
            )
            await uow.commit()
        self._kernel.forget_principals()
        return login_code

    async def exchange_login_code(self, code: str, ctx: RequestContext) -> TokenPair:
        async with self._kernel.storage.unit_of_work() as uow:
            used = await uow.tokens.consume(
                accounts.hash_secret(code), OAUTH_LOGIN, self._kernel.clock.now()
            )
            user = await uow.users.get(used.user_id) if used and used.user_id else None
            if user is None or not user.is_active:
                raise InvalidTokenError("the login code is invalid, used or expired")
            pair = await self._issuer.start_session(uow, user, ctx)
            await self._kernel.audit(
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
        async with self._kernel.storage.unit_of_work() as uow:
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
            await self._kernel.audit(
                uow,
                "identity_unlinked",
                actor_id=principal.user.id,
                subject_id=principal.user.id,
                ctx=ctx,
                provider=target.provider,
            )
            await uow.commit()
        self._kernel.forget_principals()

    async def close(self) -> None:
        """Close the providers' HTTP sessions."""
        for provider in self.providers.values():
            await provider.close()
