"""Profiles and administration: display names, users, roles, the audit trail."""

from __future__ import annotations

from avatarstack.core import accounts
from avatarstack.core.identity.kernel import IdentityKernel
from avatarstack.core.identity.models import Principal, Profile, RequestContext
from avatarstack.ports.errors import ConflictError, NotFoundError
from avatarstack.ports.storage import AuditEvent, IdentityUnitOfWork, User


class AdminService:
    """Users' profiles and roles, and the audit trail (for the user, an admin or the CLI)."""

    def __init__(self, kernel: IdentityKernel) -> None:
        self._kernel = kernel

    async def profile(self, user_id: str) -> Profile:
        async with self._kernel.storage.unit_of_work() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFoundError("no such user")
            return await self._kernel.profile(uow, user)

    async def update_profile(self, principal: Principal, display_name: str | None) -> Profile:
        name = accounts.clean_display_name(display_name)
        async with self._kernel.storage.unit_of_work() as uow:
            user = await uow.users.get(principal.user.id)
            if user is None:
                raise NotFoundError("no such user")
            user = user.model_copy(
                update={"display_name": name, "updated_at": self._kernel.clock.now()}
            )
            await uow.users.update(user)
            profile = await self._kernel.profile(uow, user)
            await uow.commit()
        self._kernel.forget_principals()
        return profile

    async def list_users(self, *, limit: int, offset: int) -> tuple[list[Profile], int]:
        async with self._kernel.storage.unit_of_work() as uow:
            users = await uow.users.list(limit=limit, offset=offset)
            total = await uow.users.count()
            return [await self._kernel.profile(uow, u) for u in users], total

    async def set_roles(
        self, actor: Principal | None, user_id: str, roles: frozenset[str], ctx: RequestContext
    ) -> Profile:
        wanted = accounts.validate_roles(roles)
        async with self._kernel.storage.unit_of_work() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFoundError("no such user")
            before = await uow.roles.get(user_id)
            losing_admin = accounts.ADMIN in before and accounts.ADMIN not in wanted
            if losing_admin and not await self._another_admin_exists(uow, user_id):
                raise ConflictError("the last admin cannot lose the admin role")
            await uow.roles.set(user_id, wanted)
            await self._kernel.audit(
                uow,
                "roles_changed",
                actor_id=actor.user.id if actor else None,
                subject_id=user_id,
                ctx=ctx,
                before=sorted(before),
                after=sorted(wanted),
            )
            profile = await self._kernel.profile(uow, user)
            await uow.commit()
        self._kernel.forget_principals()
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
        email = accounts.normalise_email(email)
        wanted = accounts.validate_roles(roles or {accounts.MEMBER})
        password_hash = None
        if password is not None:
            accounts.check_password(password)
            password_hash = await self._kernel.hasher.hash(password)
        async with self._kernel.storage.unit_of_work() as uow:
            if await uow.users.get_by_email(email) is not None:
                raise ConflictError(f"a user with the e-mail {email} already exists")
            user = await self._kernel.add_user(
                uow, email, wanted, password_hash=password_hash, email_verified=True
            )
            await self._kernel.audit(
                uow, "user_created", subject_id=user.id, ctx=ctx, roles=sorted(wanted)
            )
            profile = await self._kernel.profile(uow, user)
            await uow.commit()
        return profile

    async def find_user(self, email: str) -> User:
        async with self._kernel.storage.unit_of_work() as uow:
            user = await uow.users.get_by_email(accounts.normalise_email(email))
        if user is None:
            raise NotFoundError(f"no user with the e-mail {email}")
        return user

    async def audit_log(
        self, *, limit: int, before_id: int | None, subject_id: str | None
    ) -> list[AuditEvent]:
        async with self._kernel.storage.unit_of_work() as uow:
            return list(
                await uow.audit.list(limit=limit, before_id=before_id, subject_id=subject_id)
            )
