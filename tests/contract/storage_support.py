"""Record factories and small helpers shared by the storage contract files
(``test_storage_*contract.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from avatarstack.ports.storage import (
    AuthSession,
    AvatarSession,
    Conversation,
    Document,
    DocumentVersion,
    Identity,
    Job,
    OneTimeToken,
    Storage,
    UnitOfWork,
    User,
    new_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)

NESTED: dict[str, Any] = {
    "text": 'héllo ✓ "quoted" \\ back',
    "int": 42,
    "big": 2**53,
    "float": 2.5,
    "negative": -7,
    "bool": True,
    "none": None,
    "list": [1, "two", {"three": [3.5, False]}],
    "nested": {"deep": {"deeper": {"empty_list": [], "empty_dict": {}}}},
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@asynccontextmanager
async def committed(storage: Storage) -> AsyncIterator[UnitOfWork]:
    """A unit of work that commits when its block completes without an exception."""
    async with storage.unit_of_work() as uow:
        yield uow
        await uow.commit()


# --------------------------------------------------------------------------- factories


def make_user(**overrides: Any) -> User:
    uid = overrides.pop("id", None) or new_id()
    fields: dict[str, Any] = {
        "id": uid,
        "email": f"{uid}@example.com",
        "display_name": "Ada Lovelace",
        "password_hash": "argon2$hash",
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return User(**fields)


def make_identity(user_id: str, **overrides: Any) -> Identity:
    fields: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "provider": "google",
        "subject": new_id(),
        "email": "ada@example.com",
        "email_verified": True,
        "created_at": T0,
    }
    fields.update(overrides)
    return Identity(**fields)


def make_token(**overrides: Any) -> OneTimeToken:
    fields: dict[str, Any] = {
        "token_hash": new_id(),
        "purpose": "verify_email",
        "created_at": T0,
        "expires_at": at(3600),
    }
    fields.update(overrides)
    return OneTimeToken(**fields)


def make_session(user_id: str, **overrides: Any) -> AuthSession:
    fields: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "created_at": T0,
        "last_used_at": T0,
        "expires_at": at(86400),
        "user_agent": "pytest",
        "ip": "192.0.2.1",
    }
    fields.update(overrides)
    return AuthSession(**fields)


def make_document(**overrides: Any) -> Document:
    fields: dict[str, Any] = {
        "id": new_id(),
        "title": "Handbook",
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Document(**fields)


def make_version(document_id: str, version: int, **overrides: Any) -> DocumentVersion:
    fields: dict[str, Any] = {
        "document_id": document_id,
        "version": version,
        "content_hash": f"sha256:{version}",
        "filename": "handbook.md",
        "media_type": "text/markdown",
        "size_bytes": 1024 * version,
        "created_at": at(version),
    }
    fields.update(overrides)
    return DocumentVersion(**fields)


def make_job(**overrides: Any) -> Job:
    fields: dict[str, Any] = {
        "id": new_id(),
        "kind": "ingest",
        "payload": {"document_id": "d-1"},
        "run_at": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Job(**fields)


def make_avatar_session(owner_id: str, **overrides: Any) -> AvatarSession:
    fields: dict[str, Any] = {
        "id": new_id(),
        "owner_id": owner_id,
        "provider": "fake",
        "started_at": T0,
        "last_activity_at": T0,
    }
    fields.update(overrides)
    return AvatarSession(**fields)


def make_conversation(user_id: str = "user-1", **overrides: Any) -> Conversation:
    fields: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "title": "Chat",
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Conversation(**fields)


async def add_user(storage: Storage, **overrides: Any) -> User:
    user = make_user(**overrides)
    async with committed(storage) as uow:
        await uow.users.add(user)
    return user


async def add_conversation(storage: Storage, **overrides: Any) -> Conversation:
    conversation = make_conversation(**overrides)
    async with committed(storage) as uow:
        await uow.conversations.add(conversation)
    return conversation


async def claim(
    storage: Storage,
    worker_id: str,
    now: datetime,
    lease_seconds: float = 30,
    kinds: list[str] | None = None,
) -> Job | None:
    async with committed(storage) as uow:
        return await uow.jobs.claim(worker_id, now, lease_seconds, kinds)
