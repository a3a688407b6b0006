"""Registration and e-mail verification."""

from __future__ import annotations

from typing import Any

from avatarstack.core import accounts
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import (
    PASSWORD_RESET,
    VERIFY_EMAIL,
    Profile,
    RegistrationResult,
    RequestContext,
)
from avatarstack.core.identity.outbox import MailOutbox
from avatarstack.ports.errors import InvalidInputError, InvalidTokenError
from avatarstack.ports.mail import MailMessage
from avatarstack.ports.storage import IdentityUnitOfWork, User


class RegistrationService:
    """Accounts come into being here, and prove their e-mail address."""

    def __init__(self, kernel: IdentityKernel, outbox: MailOutbox) -> None:
        self._kernel = kernel
        self._outbox = outbox

    async def register(
        self, email: str, password: str, display_name: str | None, ctx: RequestContext
    ) -> RegistrationResult:
        """Same outcome for new and existing addresses; the owner of an existing one is told."""
        await self._kernel.limiter.check("register:ip", ctx.ip, self._kernel.policy.register_per_ip)
        email = accounts.normalise_email(email)
        accounts.check_password(password)
        name = accounts.clean_display_name(display_name)
        password_hash = await self._kernel.hasher.hash(password)
        link: str | None = None
        async with self._kernel.storage.unit_of_work() as uow:
            existing = await uow.users.get_by_email(email)
            if existing is None:
                first = self._kernel.policy.first_account_admin and await uow.users.count() == 0
                user = await self._kernel.add_user(
                    uow,
                    email,
                    frozenset({accounts.ADMIN if first else accounts.MEMBER}),
                    password_hash=password_hash,
                    display_name=name,
                )
                link = await self._verification_link(uow, user)
                await self._kernel.audit(
                    uow,
                    "user_registered_as_first_admin" if first else "user_registered",
                    subject_id=user.id,
                    ctx=ctx,
                )
            elif not existing.email_verified and existing.is_active:
                # A second registration of an address nobody has proven yet: either of the two
                # may be an attacker hoping the owner clicks a link, so neither password is
                # kept; the one who proves the address chooses it (verify_email mails a link).
                now = self._kernel.clock.now()
                cleared = existing.model_copy(update={"password_hash": None, "updated_at": now})
                await uow.users.update(cleared)
                await uow.tokens.revoke_for_user(existing.id, VERIFY_EMAIL, now)
                link = await self._verification_link(uow, cleared)
                await self._kernel.audit(
                    uow, "registration_repeated", subject_id=existing.id, ctx=ctx
                )
            await uow.commit()
        if link is not None:
            await self._send_verification(email, link)
        else:
            await self._outbox.send(
                MailMessage(
                    to=email,
                    subject="Someone tried to register with your address",
                    text="An account with this e-mail address already exists. If this was "
                    "you, log in or reset your password. Otherwise ignore this message.",
                    template="already_registered",
                )
            )
        return RegistrationResult(link if self._kernel.policy.expose_dev_links else None)

    @staticmethod
    def _password_binding(user: User) -> str:
        """What a verification token records of the password it was issued for (a hash of
        the stored hash, never the hash itself)."""
        return accounts.hash_secret(user.password_hash or "")

    async def _verification_link(self, uow: IdentityUnitOfWork, user: User) -> str:
        secret = await self._kernel.issue_one_time(
            uow,
            VERIFY_EMAIL,
            self._kernel.policy.verification_ttl,
            user_id=user.id,
            data={"password": self._password_binding(user)},
        )
        return self._kernel.links.verify_email(secret)

    async def verify_email(self, token: str, ctx: RequestContext) -> Profile:
        """Mark the address proven. A password set before the proof survives only when this
        link was issued for it (the registration that set it); otherwise it is cleared and the
        person who proved the address is mailed a link to choose one (pre-account hijacking:
        an attacker's password must not outlive the owner's verification)."""
        reset_link: str | None = None
        async with self._kernel.storage.unit_of_work() as uow:
            used = await uow.tokens.consume(
                accounts.hash_secret(token), VERIFY_EMAIL, self._kernel.clock.now()
            )
            user = await uow.users.get(used.user_id) if used and used.user_id else None
            if used is None or user is None:
                raise InvalidTokenError("the verification link is invalid, used or expired")
            if not user.email_verified:
                now = self._kernel.clock.now()
                update: dict[str, Any] = {"email_verified": True, "updated_at": now}
                unproven = used.data.get("password") != self._password_binding(user)
                if user.password_hash is not None and unproven:
                    update["password_hash"] = None
                    await self._kernel.audit(
                        uow, "unproven_password_cleared", subject_id=user.id, ctx=ctx
                    )
                user = user.model_copy(update=update)
                await uow.users.update(user)
                await self._kernel.audit(uow, "email_verified", subject_id=user.id, ctx=ctx)
                if user.password_hash is None and user.is_active:
                    secret = await self._kernel.issue_one_time(
                        uow, PASSWORD_RESET, self._kernel.policy.reset_ttl, user_id=user.id
                    )
                    reset_link = self._kernel.links.reset_password(secret)
            profile = await self._kernel.profile(uow, user)
            await uow.commit()
        if reset_link is not None:
            await self._outbox.send(
                MailMessage(
                    to=user.email,
                    subject="Reset your password: choose one for your confirmed address",
                    text="Your address is confirmed. Open this link to choose your password:"
                    f"\n\n{reset_link}\n\nIt expires in {self._kernel.policy.reset_ttl}.",
                    links={"reset": reset_link},
                    template="password_reset",
                )
            )
        return profile

    async def resend_verification(self, email: str, ctx: RequestContext) -> None:
        await self._kernel.limiter.check("resend:ip", ctx.ip, self._kernel.policy.resend_per_ip)
        try:
            email = accounts.normalise_email(email)
        except InvalidInputError:
            return  # 202 always, as for an unknown address (and as forgot_password does)
        await self._kernel.limiter.check(
            "resend:account", email, self._kernel.policy.resend_per_account
        )
        link: str | None = None
        async with self._kernel.storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(email)
            if user is not None and not user.email_verified and user.is_active:
                link = await self._verification_link(uow, user)
            await uow.commit()
        if link:
            await self._send_verification(email, link)

    async def _send_verification(self, email: str, link: str) -> None:
        await self._outbox.send(
            MailMessage(
                to=email,
                subject="Confirm your e-mail address",
                text=f"Open this link to confirm your address:\n\n{link}\n\n"
                f"It expires in {self._kernel.policy.verification_ttl}.",
                links={"verify": link},
                template="verify_email",
            )
        )
