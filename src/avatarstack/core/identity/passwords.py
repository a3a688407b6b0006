"""Forgotten passwords: the reset link and the new password."""

from __future__ import annotations

from avatarstack.core import accounts
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import PASSWORD_RESET, RequestContext
from avatarstack.core.identity.outbox import MailOutbox
from avatarstack.ports.errors import InvalidInputError, InvalidTokenError
from avatarstack.ports.mail import MailMessage


class PasswordService:
    """A mailed, single-use link lets the mailbox owner choose a new password."""

    def __init__(self, kernel: IdentityKernel, outbox: MailOutbox) -> None:
        self._kernel = kernel
        self._outbox = outbox

    async def forgot_password(self, email: str, ctx: RequestContext) -> None:
        await self._kernel.limiter.check("forgot:ip", ctx.ip, self._kernel.policy.forgot_per_ip)
        try:
            email = accounts.normalise_email(email)
        except InvalidInputError:
            return  # same answer as for an unknown address
        await self._kernel.limiter.check(
            "forgot:account", email, self._kernel.policy.forgot_per_account
        )
        link: str | None = None
        async with self._kernel.storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(email)
            if user is not None and user.is_active:
                secret = await self._kernel.issue_one_time(
                    uow, PASSWORD_RESET, self._kernel.policy.reset_ttl, user_id=user.id
                )
                link = self._kernel.links.reset_password(secret)
                await self._kernel.audit(
                    uow, "password_reset_requested", subject_id=user.id, ctx=ctx
                )
            await uow.commit()
        if link:
            await self._outbox.send(
                MailMessage(
                    to=email,
                    subject="Reset your password",
                    text=f"Open this link to choose a new password:\n\n{link}\n\n"
                    f"It expires in {self._kernel.policy.reset_ttl}. "
                    "If you did not ask, ignore this.",
                    links={"reset": link},
                    template="password_reset",
                )
            )

    async def reset_password(self, token: str, password: str, ctx: RequestContext) -> None:
        accounts.check_password(password)
        password_hash = await self._kernel.hasher.hash(password)
        now = self._kernel.clock.now()
        async with self._kernel.storage.unit_of_work() as uow:
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
            await self._kernel.audit(
                uow, "password_reset", subject_id=user.id, ctx=ctx, sessions_revoked=revoked
            )
            await uow.commit()
        await self._kernel.sessions_ended(user.id)
        await self._outbox.send(
            MailMessage(
                to=user.email,
                subject="Your password was changed",
                text="Your password was just changed and every session was signed out. "
                "If this was not you, reset your password now.",
                template="password_changed",
            )
        )
