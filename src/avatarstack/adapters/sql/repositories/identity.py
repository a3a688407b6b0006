"""SQL repositories of the identity context: users, roles, identities, tokens, sessions,
refresh tokens, rate limits and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from avatarstack.adapters.sql.repositories._base import Columns, _dump, _model, _Repository
from avatarstack.ports.errors import NotFoundError
from avatarstack.ports.storage import (
    AuditEvent,
    AuthSession,
    Identity,
    OneTimeToken,
    RefreshToken,
    User,
)

__all__ = [
    "SqlAuditRepository",
    "SqlIdentityRepository",
    "SqlOneTimeTokenRepository",
    "SqlRateLimitRepository",
    "SqlRefreshTokenRepository",
    "SqlRoleRepository",
    "SqlSessionRepository",
    "SqlUserRepository",
]


class SqlUserRepository(_Repository):
    _COLUMNS = Columns(
        User,
        "id, email, display_name, password_hash, email_verified, is_active, created_at, updated_at",
    )

    async def add(self, user: User) -> None:
        await self._conn.execute(self._COLUMNS.insert("users"), *self._COLUMNS.values(user))

    async def get(self, user_id: str) -> User | None:
        row = await self._conn.fetchrow(f"SELECT {self._COLUMNS} FROM users WHERE id = $1", user_id)
        return self._COLUMNS.record(row) if row else None

    async def get_by_email(self, email: str) -> User | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM users WHERE email = $1", email
        )
        return self._COLUMNS.record(row) if row else None

    async def update(self, user: User) -> None:
        changed = await self._conn.execute(
            "UPDATE users SET email = $2, display_name = $3, password_hash = $4, "
            "email_verified = $5, is_active = $6, updated_at = $7 WHERE id = $1",
            user.id,
            user.email,
            user.display_name,
            user.password_hash,
            user.email_verified,
            user.is_active,
            user.updated_at,
        )
        if not changed:
            raise NotFoundError(f"user {user.id} does not exist")

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[User]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def count(self) -> int:
        row = await self._conn.fetchrow("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row else 0


class SqlRoleRepository(_Repository):
    async def get(self, user_id: str) -> frozenset[str]:
        rows = await self._conn.fetch("SELECT role FROM user_roles WHERE user_id = $1", user_id)
        return frozenset(row["role"] for row in rows)

    async def set(self, user_id: str, roles: frozenset[str]) -> None:
        await self._conn.execute("DELETE FROM user_roles WHERE user_id = $1", user_id)
        for role in sorted(roles):
            await self._conn.execute(
                "INSERT INTO user_roles (user_id, role) VALUES ($1, $2)", user_id, role
            )


class SqlIdentityRepository(_Repository):
    _COLUMNS = Columns(
        Identity, "id, user_id, provider, subject, email, email_verified, created_at"
    )

    async def add(self, identity: Identity) -> None:
        await self._conn.execute(
            self._COLUMNS.insert("identities"), *self._COLUMNS.values(identity)
        )

    async def get_by_subject(self, provider: str, subject: str) -> Identity | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM identities WHERE provider = $1 AND subject = $2",
            provider,
            subject,
        )
        return self._COLUMNS.record(row) if row else None

    async def list_for_user(self, user_id: str) -> Sequence[Identity]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM identities WHERE user_id = $1 ORDER BY created_at, id",
            user_id,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def delete(self, identity_id: str) -> bool:
        return bool(await self._conn.execute("DELETE FROM identities WHERE id = $1", identity_id))


class SqlOneTimeTokenRepository(_Repository):
    _COLUMNS = Columns(
        OneTimeToken,
        "token_hash, purpose, user_id, data, created_at, expires_at, used_at",
        json=("data",),
    )

    async def add(self, token: OneTimeToken) -> None:
        await self._conn.execute(
            self._COLUMNS.insert("one_time_tokens"), *self._COLUMNS.values(token)
        )

    async def consume(self, token_hash: str, purpose: str, now: datetime) -> OneTimeToken | None:
        row = await self._conn.fetchrow(
            "UPDATE one_time_tokens SET used_at = $3 "
            "WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 "
            f"RETURNING {self._COLUMNS}",
            token_hash,
            purpose,
            now,
        )
        return self._COLUMNS.record(row) if row else None

    async def revoke_for_user(self, user_id: str, purpose: str, now: datetime) -> int:
        return await self._conn.execute(
            "UPDATE one_time_tokens SET used_at = $3 "
            "WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
            user_id,
            purpose,
            now,
        )

    async def delete_expired(self, now: datetime) -> int:
        return await self._conn.execute("DELETE FROM one_time_tokens WHERE expires_at <= $1", now)


class SqlSessionRepository(_Repository):
    _COLUMNS = Columns(
        AuthSession, "id, user_id, created_at, last_used_at, expires_at, revoked_at, user_agent, ip"
    )

    async def add(self, session: AuthSession) -> None:
        await self._conn.execute(
            self._COLUMNS.insert("auth_sessions"), *self._COLUMNS.values(session)
        )

    async def get(self, session_id: str) -> AuthSession | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM auth_sessions WHERE id = $1", session_id
        )
        return self._COLUMNS.record(row) if row else None

    async def list_active(self, user_id: str, now: datetime) -> Sequence[AuthSession]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM auth_sessions "
            "WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 "
            "ORDER BY last_used_at DESC, id",
            user_id,
            now,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def touch(self, session_id: str, now: datetime) -> None:
        await self._conn.execute(
            "UPDATE auth_sessions SET last_used_at = $2 WHERE id = $1", session_id, now
        )

    async def revoke(self, session_id: str, now: datetime) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE auth_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                session_id,
                now,
            )
        )

    async def revoke_all(self, user_id: str, now: datetime) -> int:
        return await self._conn.execute(
            "UPDATE auth_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
            now,
        )


class SqlRefreshTokenRepository(_Repository):
    _COLUMNS = Columns(RefreshToken, "token_hash, session_id, created_at, expires_at, used_at")

    async def add(self, token: RefreshToken) -> None:
        await self._conn.execute(
            self._COLUMNS.insert("refresh_tokens"), *self._COLUMNS.values(token)
        )

    async def get(self, token_hash: str) -> RefreshToken | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM refresh_tokens WHERE token_hash = $1", token_hash
        )
        return self._COLUMNS.record(row) if row else None

    async def use(self, token_hash: str, now: datetime) -> RefreshToken | None:
        row = await self._conn.fetchrow(
            "UPDATE refresh_tokens SET used_at = $2 "
            "WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 "
            f"RETURNING {self._COLUMNS}",
            token_hash,
            now,
        )
        return self._COLUMNS.record(row) if row else None

    async def delete_expired(self, now: datetime) -> int:
        return await self._conn.execute("DELETE FROM refresh_tokens WHERE expires_at <= $1", now)


class SqlRateLimitRepository(_Repository):
    async def hit(self, key: str, window_start: datetime) -> int:
        row = await self._conn.fetchrow(
            "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) "
            "ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1 "
            "RETURNING hits",
            key,
            window_start,
        )
        assert row is not None
        return int(row["hits"])

    async def count(self, key: str, window_start: datetime) -> int:
        row = await self._conn.fetchrow(
            "SELECT hits FROM rate_limits WHERE key = $1 AND window_start = $2", key, window_start
        )
        return int(row["hits"]) if row is not None else 0

    async def purge(self, before: datetime) -> int:
        return await self._conn.execute("DELETE FROM rate_limits WHERE window_start < $1", before)


class SqlAuditRepository(_Repository):
    _COLUMNS = "id, action, actor_id, subject_id, ip, data, created_at"

    async def append(self, event: AuditEvent) -> AuditEvent:
        row = await self._conn.fetchrow(
            "INSERT INTO audit_events (action, actor_id, subject_id, ip, data, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            event.action,
            event.actor_id,
            event.subject_id,
            event.ip,
            _dump(event.data),
            event.created_at,
        )
        assert row is not None
        return event.model_copy(update={"id": int(row["id"])})

    async def list(
        self, *, limit: int = 50, before_id: int | None = None, subject_id: str | None = None
    ) -> Sequence[AuditEvent]:
        clauses: list[str] = []
        args: list[Any] = []
        if before_id is not None:
            args.append(before_id)
            clauses.append(f"id < ${len(args)}")
        if subject_id is not None:
            args.append(subject_id)
            clauses.append(f"subject_id = ${len(args)}")
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        args.append(limit)
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM audit_events {where}ORDER BY id DESC LIMIT ${len(args)}",
            *args,
        )
        return [_model(AuditEvent, row, ("data",)) for row in rows]
