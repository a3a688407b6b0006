"""In-memory repositories of the identity context."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from avatarstack.adapters.memory.repositories._base import _Repo
from avatarstack.ports.errors import ConflictError, DuplicateError, NotFoundError
from avatarstack.ports.storage import (
    AuditEvent,
    AuthSession,
    Identity,
    OneTimeToken,
    RefreshToken,
    User,
)


class _Users(_Repo):
    async def add(self, user: User) -> None:
        if user.id in self._s.users or any(u.email == user.email for u in self._s.users.values()):
            raise DuplicateError("a record with the same key already exists")
        self._s.users[user.id] = user

    async def get(self, user_id: str) -> User | None:
        return self._s.users.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        return next((u for u in self._s.users.values() if u.email == email), None)

    async def update(self, user: User) -> None:
        old = self._s.users.get(user.id)
        if old is None:
            raise NotFoundError(f"user {user.id} does not exist")
        if any(u.email == user.email and u.id != user.id for u in self._s.users.values()):
            raise DuplicateError("a record with the same key already exists")
        self._s.users[user.id] = user.model_copy(update={"created_at": old.created_at})

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[User]:
        users = sorted(self._s.users.values(), key=lambda u: (u.created_at, u.id))
        return users[offset : offset + limit]

    async def count(self) -> int:
        return len(self._s.users)


class _Roles(_Repo):
    async def get(self, user_id: str) -> frozenset[str]:
        return self._s.roles.get(user_id, frozenset())

    async def set(self, user_id: str, roles: frozenset[str]) -> None:
        if user_id not in self._s.users:
            raise ConflictError("roles need an existing user")
        self._s.roles[user_id] = frozenset(roles)


class _Identities(_Repo):
    async def add(self, identity: Identity) -> None:
        if identity.id in self._s.identities or any(
            (i.provider, i.subject) == (identity.provider, identity.subject)
            for i in self._s.identities.values()
        ):
            raise DuplicateError("a record with the same key already exists")
        self._s.identities[identity.id] = identity

    async def get_by_subject(self, provider: str, subject: str) -> Identity | None:
        return next(
            (
                i
                for i in self._s.identities.values()
                if i.provider == provider and i.subject == subject
            ),
            None,
        )

    async def list_for_user(self, user_id: str) -> Sequence[Identity]:
        found = [i for i in self._s.identities.values() if i.user_id == user_id]
        return sorted(found, key=lambda i: (i.created_at, i.id))

    async def delete(self, identity_id: str) -> bool:
        return self._s.identities.pop(identity_id, None) is not None


class _Tokens(_Repo):
    async def add(self, token: OneTimeToken) -> None:
        if token.token_hash in self._s.tokens:
            raise DuplicateError("a record with the same key already exists")
        self._s.tokens[token.token_hash] = token

    async def consume(self, token_hash: str, purpose: str, now: datetime) -> OneTimeToken | None:
        token = self._s.tokens.get(token_hash)
        if token is None or token.purpose != purpose or token.used_at or token.expires_at <= now:
            return None
        used = token.model_copy(update={"used_at": now})
        self._s.tokens[token_hash] = used
        return used

    async def revoke_for_user(self, user_id: str, purpose: str, now: datetime) -> int:
        found = [
            h
            for h, t in self._s.tokens.items()
            if t.user_id == user_id and t.purpose == purpose and t.used_at is None
        ]
        for token_hash in found:
            self._s.tokens[token_hash] = self._s.tokens[token_hash].model_copy(
                update={"used_at": now}
            )
        return len(found)

    async def delete_expired(self, now: datetime) -> int:
        expired = [h for h, t in self._s.tokens.items() if t.expires_at <= now]
        for token_hash in expired:
            del self._s.tokens[token_hash]
        return len(expired)


class _Sessions(_Repo):
    async def add(self, session: AuthSession) -> None:
        if session.id in self._s.sessions:
            raise DuplicateError("a record with the same key already exists")
        self._s.sessions[session.id] = session

    async def get(self, session_id: str) -> AuthSession | None:
        return self._s.sessions.get(session_id)

    async def list_active(self, user_id: str, now: datetime) -> Sequence[AuthSession]:
        found = [
            s
            for s in self._s.sessions.values()
            if s.user_id == user_id and s.revoked_at is None and s.expires_at > now
        ]
        found.sort(key=lambda s: s.id)
        found.sort(key=lambda s: s.last_used_at, reverse=True)
        return found

    async def touch(self, session_id: str, now: datetime) -> None:
        session = self._s.sessions.get(session_id)
        if session is not None:
            self._s.sessions[session_id] = session.model_copy(update={"last_used_at": now})

    async def revoke(self, session_id: str, now: datetime) -> bool:
        session = self._s.sessions.get(session_id)
        if session is None or session.revoked_at is not None:
            return False
        self._s.sessions[session_id] = session.model_copy(update={"revoked_at": now})
        return True

    async def revoke_all(self, user_id: str, now: datetime) -> int:
        ids = [
            s.id for s in self._s.sessions.values() if s.user_id == user_id and s.revoked_at is None
        ]
        for session_id in ids:
            await self.revoke(session_id, now)
        return len(ids)


class _RefreshTokens(_Repo):
    async def add(self, token: RefreshToken) -> None:
        if token.token_hash in self._s.refresh_tokens:
            raise DuplicateError("a record with the same key already exists")
        if token.session_id not in self._s.sessions:
            raise ConflictError("a refresh token needs an existing session")
        self._s.refresh_tokens[token.token_hash] = token

    async def get(self, token_hash: str) -> RefreshToken | None:
        return self._s.refresh_tokens.get(token_hash)

    async def use(self, token_hash: str, now: datetime) -> RefreshToken | None:
        token = self._s.refresh_tokens.get(token_hash)
        if token is None or token.used_at is not None or token.expires_at <= now:
            return None
        used = token.model_copy(update={"used_at": now})
        self._s.refresh_tokens[token_hash] = used
        return used

    async def delete_expired(self, now: datetime) -> int:
        expired = [h for h, t in self._s.refresh_tokens.items() if t.expires_at <= now]
        for token_hash in expired:
            del self._s.refresh_tokens[token_hash]
        return len(expired)


class _RateLimits(_Repo):
    async def hit(self, key: str, window_start: datetime) -> int:
        hits = self._s.rate_limits.get((key, window_start), 0) + 1
        self._s.rate_limits[(key, window_start)] = hits
        return hits

    async def count(self, key: str, window_start: datetime) -> int:
        return self._s.rate_limits.get((key, window_start), 0)

    async def purge(self, before: datetime) -> int:
        old = [k for k in self._s.rate_limits if k[1] < before]
        for k in old:
            del self._s.rate_limits[k]
        return len(old)


class _Audit(_Repo):
    async def append(self, event: AuditEvent) -> AuditEvent:
        stored = event.model_copy(update={"id": len(self._s.audit) + 1})
        self._s.audit.append(stored)
        return stored

    async def list(
        self, *, limit: int = 50, before_id: int | None = None, subject_id: str | None = None
    ) -> Sequence[AuditEvent]:
        found = [
            e
            for e in reversed(self._s.audit)
            if (before_id is None or (e.id or 0) < before_id)
            and (subject_id is None or e.subject_id == subject_id)
        ]
        return found[:limit]
