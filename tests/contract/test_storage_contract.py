"""The storage contract: every adapter (memory, SQLite, PostgreSQL, PostgreSQL behind PgBouncer)
must pass every test here. The ``storage`` fixture (tests/conftest.py) is parametrized over them.

Times are fixed aware UTC datetimes so results never depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from avatarstack.adapters.memory.storage import shipped_migrations
from avatarstack.adapters.sql import load_migrations
from avatarstack.ports.errors import ConflictError, DuplicateError, NotFoundError
from avatarstack.ports.storage import (
    AuditEvent,
    AuthSession,
    AvatarSession,
    Conversation,
    Document,
    DocumentVersion,
    Identity,
    IndexGeneration,
    Job,
    OneTimeToken,
    RefreshToken,
    Storage,
    StoredChunk,
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


# --------------------------------------------------------------------------- schema & health


async def test_migrate_is_idempotent(storage: Storage) -> None:
    assert await storage.migrate() == []
    assert await storage.migrate() == []


async def test_no_migrations_are_pending_after_migrate(storage: Storage) -> None:
    assert await storage.pending_migrations() == []


async def test_schema_version_is_the_newest_migration(storage: Storage) -> None:
    newest = load_migrations("avatarstack.adapters.sqlite")[-1].version
    assert await storage.schema_version() == newest


def test_every_dialect_ships_the_same_migration_versions() -> None:
    """A migration has a file in both dialect folders; the in-memory storage records them."""
    sqlite = [m.version for m in load_migrations("avatarstack.adapters.sqlite")]
    postgres = [m.version for m in load_migrations("avatarstack.adapters.postgres")]
    assert sqlite == postgres == shipped_migrations()


async def test_ping_returns_when_the_database_answers(storage: Storage) -> None:
    assert await storage.ping() is None


async def test_timings_count_each_connection_taken_and_whether_it_waited(
    storage: Storage,
) -> None:
    before = storage.timings.acquisitions, storage.timings.waited
    async with storage.unit_of_work() as uow:
        await uow.users.count()
    assert storage.timings.acquisitions == before[0] + 1
    assert storage.timings.waited == before[1]  # nobody else held a connection
    assert sum(storage.timings.wait_buckets) == storage.timings.acquisitions

    size = storage.pool_stats().max_size
    entered: list[None] = []
    all_in = asyncio.Event()

    async def hold(release: asyncio.Event) -> None:
        async with storage.unit_of_work() as uow:
            await uow.users.count()
            entered.append(None)
            if len(entered) == size:
                all_in.set()
            await release.wait()

    # one more unit of work than the pool holds connections: the last one must wait
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(release)) for _ in range(size)]
    await asyncio.wait_for(all_in.wait(), 10)
    waiter = asyncio.create_task(hold(asyncio.Event()))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(*holders)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert storage.timings.waited >= before[1] + 1


async def test_timings_time_every_statement_of_the_sql_backends(storage: Storage) -> None:
    before = storage.timings.queries
    async with storage.unit_of_work() as uow:
        await uow.users.count()
        await uow.documents.count()
    if storage.name == "memory":  # sends no statements
        assert storage.timings.queries == 0
    else:
        assert storage.timings.queries >= before + 2
        assert sum(storage.timings.query_buckets) == storage.timings.queries
        assert storage.timings.query_seconds > 0


async def test_pool_stats_are_consistent(storage: Storage) -> None:
    stats = storage.pool_stats()
    assert stats.max_size >= 1
    assert 0 <= stats.idle <= stats.size <= stats.max_size


# --------------------------------------------------------------------------- unit of work


async def test_a_unit_of_work_satisfies_the_protocol(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        assert isinstance(uow, UnitOfWork)


async def test_commit_persists_changes(storage: Storage) -> None:
    user = make_user()
    async with storage.unit_of_work() as uow:
        await uow.users.add(user)
        await uow.commit()
    async with storage.unit_of_work() as uow:
        assert await uow.users.get(user.id) == user


async def test_changes_are_visible_inside_the_same_unit_of_work(storage: Storage) -> None:
    user = make_user()
    async with storage.unit_of_work() as uow:
        await uow.users.add(user)
        assert await uow.users.get(user.id) == user
        assert await uow.users.count() == 1


async def test_leaving_the_block_without_commit_rolls_back(storage: Storage) -> None:
    user = make_user()
    async with storage.unit_of_work() as uow:
        await uow.users.add(user)
    async with storage.unit_of_work() as uow:
        assert await uow.users.get(user.id) is None
        assert await uow.users.count() == 0


async def test_an_exception_inside_the_block_rolls_back_and_propagates(storage: Storage) -> None:
    user = make_user()

    class Boom(Exception):
        pass

    async def add_then_fail() -> None:
        async with storage.unit_of_work() as uow:
            await uow.users.add(user)
            raise Boom

    with pytest.raises(Boom):
        await add_then_fail()
    async with storage.unit_of_work() as uow:
        assert await uow.users.get(user.id) is None


async def test_explicit_rollback_discards_changes(storage: Storage) -> None:
    user = make_user()
    async with storage.unit_of_work() as uow:
        await uow.users.add(user)
        await uow.rollback()
    async with storage.unit_of_work() as uow:
        assert await uow.users.get(user.id) is None


async def test_a_committed_unit_of_work_cannot_commit_again(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.commit()
        with pytest.raises(RuntimeError):
            await uow.commit()


async def test_a_failed_statement_does_not_leak_into_the_next_unit_of_work(
    storage: Storage,
) -> None:
    user = await add_user(storage)
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            await uow.users.add(make_user(id=user.id))
    async with committed(storage) as uow:
        await uow.users.add(make_user())
    async with storage.unit_of_work() as uow:
        assert await uow.users.count() == 2


# --------------------------------------------------------------------------- users


async def test_a_user_round_trips_every_field(storage: Storage) -> None:
    user = make_user(
        email="ada@example.com",
        display_name="Ada",
        password_hash=None,
        email_verified=True,
        is_active=False,
        created_at=at(1.5),
        updated_at=at(2.25),
    )
    async with committed(storage) as uow:
        await uow.users.add(user)
    async with storage.unit_of_work() as uow:
        assert await uow.users.get(user.id) == user
        assert await uow.users.get_by_email("ada@example.com") == user


async def test_unknown_users_are_none(storage: Storage) -> None:
    await add_user(storage, email="ada@example.com")
    async with storage.unit_of_work() as uow:
        assert await uow.users.get("missing") is None
        assert await uow.users.get_by_email("nobody@example.com") is None


async def test_adding_a_user_with_an_existing_id_raises_duplicate_error(storage: Storage) -> None:
    user = await add_user(storage)
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            await uow.users.add(make_user(id=user.id, email="other@example.com"))


async def test_adding_a_user_with_an_existing_email_raises_duplicate_error(
    storage: Storage,
) -> None:
    await add_user(storage, email="ada@example.com")
    with pytest.raises(DuplicateError) as caught:
        async with storage.unit_of_work() as uow:
            await uow.users.add(make_user(email="ada@example.com"))
    assert isinstance(caught.value, ConflictError)


async def test_update_replaces_the_mutable_fields_of_a_user(storage: Storage) -> None:
    user = await add_user(storage, email="ada@example.com")
    changed = user.model_copy(
        update={
            "email": "lovelace@example.com",
            "display_name": "Countess",
            "password_hash": "new-hash",
            "email_verified": True,
            "is_active": False,
            "updated_at": at(60),
        }
    )
    async with committed(storage) as uow:
        await uow.users.update(changed)
    async with storage.unit_of_work() as uow:
        assert await uow.users.get(user.id) == changed
        assert await uow.users.get_by_email("ada@example.com") is None
        assert await uow.users.get_by_email("lovelace@example.com") == changed


async def test_update_of_a_missing_user_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.users.update(make_user())


async def test_update_to_another_users_email_raises_duplicate_error(storage: Storage) -> None:
    await add_user(storage, email="ada@example.com")
    grace = await add_user(storage, email="grace@example.com")
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            await uow.users.update(grace.model_copy(update={"email": "ada@example.com"}))


async def test_users_are_listed_oldest_first_with_limit_and_offset(storage: Storage) -> None:
    second = await add_user(storage, created_at=at(2))
    first = await add_user(storage, created_at=at(1))
    third = await add_user(storage, created_at=at(3))
    async with storage.unit_of_work() as uow:
        assert [u.id for u in await uow.users.list()] == [first.id, second.id, third.id]
        assert [u.id for u in await uow.users.list(limit=2)] == [first.id, second.id]
        assert [u.id for u in await uow.users.list(limit=2, offset=1)] == [second.id, third.id]
        assert await uow.users.list(offset=3) == []
        assert await uow.users.count() == 3


# --------------------------------------------------------------------------- roles


async def test_roles_are_empty_for_a_user_without_roles(storage: Storage) -> None:
    user = await add_user(storage)
    async with storage.unit_of_work() as uow:
        assert await uow.roles.get(user.id) == frozenset()


async def test_setting_roles_replaces_them(storage: Storage) -> None:
    user = await add_user(storage)
    other = await add_user(storage)
    async with committed(storage) as uow:
        await uow.roles.set(user.id, frozenset({"admin", "editor"}))
        await uow.roles.set(other.id, frozenset({"viewer"}))
    async with committed(storage) as uow:
        assert await uow.roles.get(user.id) == frozenset({"admin", "editor"})
        await uow.roles.set(user.id, frozenset({"editor", "owner"}))
    async with committed(storage) as uow:
        assert await uow.roles.get(user.id) == frozenset({"editor", "owner"})
        await uow.roles.set(user.id, frozenset())
    async with storage.unit_of_work() as uow:
        assert await uow.roles.get(user.id) == frozenset()
        assert await uow.roles.get(other.id) == frozenset({"viewer"})


# --------------------------------------------------------------------------- identities


async def test_an_identity_is_found_by_provider_and_subject(storage: Storage) -> None:
    user = await add_user(storage)
    identity = make_identity(user.id, provider="google", subject="g-1")
    async with committed(storage) as uow:
        await uow.identities.add(identity)
    async with storage.unit_of_work() as uow:
        assert await uow.identities.get_by_subject("google", "g-1") == identity
        assert await uow.identities.get_by_subject("github", "g-1") is None
        assert await uow.identities.get_by_subject("google", "g-2") is None


async def test_linking_the_same_provider_subject_twice_raises_duplicate_error(
    storage: Storage,
) -> None:
    user = await add_user(storage)
    other = await add_user(storage)
    async with committed(storage) as uow:
        await uow.identities.add(make_identity(user.id, provider="google", subject="s"))
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            await uow.identities.add(make_identity(other.id, provider="google", subject="s"))


async def test_the_same_subject_may_be_linked_at_different_providers(storage: Storage) -> None:
    user = await add_user(storage)
    google = make_identity(user.id, provider="google", subject="s", created_at=at(2))
    github = make_identity(user.id, provider="github", subject="s", created_at=at(1))
    async with committed(storage) as uow:
        await uow.identities.add(google)
        await uow.identities.add(github)
    async with storage.unit_of_work() as uow:
        assert await uow.identities.list_for_user(user.id) == [github, google]


async def test_deleting_an_identity_reports_whether_it_existed(storage: Storage) -> None:
    user = await add_user(storage)
    identity = make_identity(user.id)
    async with committed(storage) as uow:
        await uow.identities.add(identity)
    async with committed(storage) as uow:
        assert await uow.identities.delete(identity.id) is True
    async with committed(storage) as uow:
        assert await uow.identities.delete(identity.id) is False
        assert await uow.identities.list_for_user(user.id) == []


# --------------------------------------------------------------------------- one-time tokens


async def test_a_token_can_be_consumed_exactly_once(storage: Storage) -> None:
    user = await add_user(storage)
    token = make_token(user_id=user.id, data={"email": "ada@example.com"})
    async with committed(storage) as uow:
        await uow.tokens.add(token)
    async with committed(storage) as uow:
        used = await uow.tokens.consume(token.token_hash, "verify_email", at(60))
    assert used == token.model_copy(update={"used_at": at(60)})
    async with committed(storage) as uow:
        assert await uow.tokens.consume(token.token_hash, "verify_email", at(61)) is None


async def test_a_token_of_another_purpose_is_not_consumed(storage: Storage) -> None:
    token = make_token(purpose="password_reset")
    async with committed(storage) as uow:
        await uow.tokens.add(token)
    async with committed(storage) as uow:
        assert await uow.tokens.consume(token.token_hash, "verify_email", at(1)) is None
    async with committed(storage) as uow:
        used = await uow.tokens.consume(token.token_hash, "password_reset", at(2))
    assert used is not None
    assert used.used_at == at(2)


async def test_an_expired_token_is_not_consumed(storage: Storage) -> None:
    token = make_token(expires_at=at(10))
    async with committed(storage) as uow:
        await uow.tokens.add(token)
    async with committed(storage) as uow:
        assert await uow.tokens.consume(token.token_hash, "verify_email", at(10)) is None
        assert await uow.tokens.consume(token.token_hash, "verify_email", at(11)) is None
        assert await uow.tokens.consume(token.token_hash, "verify_email", at(9)) is not None


async def test_an_unknown_token_is_not_consumed(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        assert await uow.tokens.consume("unknown", "verify_email", T0) is None


async def test_concurrent_consumes_of_one_token_succeed_exactly_once(storage: Storage) -> None:
    token = make_token()
    async with committed(storage) as uow:
        await uow.tokens.add(token)

    async def consume() -> OneTimeToken | None:
        async with committed(storage) as uow:
            return await uow.tokens.consume(token.token_hash, "verify_email", at(5))

    results = await asyncio.gather(*(consume() for _ in range(2)))
    assert sum(result is not None for result in results) == 1


async def test_revoking_a_users_tokens_of_one_purpose_uses_them_up(storage: Storage) -> None:
    user = await add_user(storage)
    other = await add_user(storage)
    async with committed(storage) as uow:
        await uow.tokens.add(make_token(token_hash="r1", purpose="reset", user_id=user.id))
        await uow.tokens.add(make_token(token_hash="r2", purpose="reset", user_id=user.id))
        await uow.tokens.add(make_token(token_hash="v1", user_id=user.id))
        await uow.tokens.add(make_token(token_hash="o1", purpose="reset", user_id=other.id))
    async with committed(storage) as uow:
        assert await uow.tokens.consume("r1", "reset", at(1)) is not None
        assert await uow.tokens.revoke_for_user(user.id, "reset", at(2)) == 1
    async with committed(storage) as uow:
        assert await uow.tokens.consume("r2", "reset", at(3)) is None
        assert await uow.tokens.consume("v1", "verify_email", at(3)) is not None
        assert await uow.tokens.consume("o1", "reset", at(3)) is not None


async def test_delete_expired_removes_only_expired_tokens(storage: Storage) -> None:
    tokens = [make_token(expires_at=at(seconds)) for seconds in (10, 20, 30)]
    async with committed(storage) as uow:
        for token in tokens:
            await uow.tokens.add(token)
    async with committed(storage) as uow:
        assert await uow.tokens.delete_expired(at(20)) == 2
    async with committed(storage) as uow:
        assert await uow.tokens.consume(tokens[1].token_hash, "verify_email", at(15)) is None
        assert await uow.tokens.consume(tokens[2].token_hash, "verify_email", at(15)) is not None


# --------------------------------------------------------------------------- auth sessions


async def test_active_sessions_are_listed_most_recently_used_first(storage: Storage) -> None:
    user = await add_user(storage)
    other = await add_user(storage)
    first = make_session(user.id, last_used_at=at(1))
    second = make_session(user.id, last_used_at=at(3))
    third = make_session(user.id, last_used_at=at(2))
    revoked = make_session(user.id, last_used_at=at(4), revoked_at=at(4))
    expired = make_session(user.id, last_used_at=at(5), expires_at=at(9))
    foreign = make_session(other.id, last_used_at=at(6))
    async with committed(storage) as uow:
        for session in (first, second, third, revoked, expired, foreign):
            await uow.sessions.add(session)
    async with committed(storage) as uow:
        assert await uow.sessions.list_active(user.id, at(10)) == [second, third, first]
        await uow.sessions.touch(first.id, at(7))
    async with storage.unit_of_work() as uow:
        active = await uow.sessions.list_active(user.id, at(10))
        assert [s.id for s in active] == [first.id, second.id, third.id]
        assert active[0].last_used_at == at(7)
        assert await uow.sessions.get(first.id) == first.model_copy(update={"last_used_at": at(7)})


async def test_revoking_a_session_succeeds_once(storage: Storage) -> None:
    user = await add_user(storage)
    session = make_session(user.id)
    async with committed(storage) as uow:
        await uow.sessions.add(session)
    async with committed(storage) as uow:
        assert await uow.sessions.revoke(session.id, at(5)) is True
    async with committed(storage) as uow:
        assert await uow.sessions.revoke(session.id, at(6)) is False
        assert await uow.sessions.revoke("missing", at(6)) is False
        stored = await uow.sessions.get(session.id)
        assert stored is not None
        assert stored.revoked_at == at(5)
        assert await uow.sessions.list_active(user.id, at(7)) == []


async def test_revoke_all_revokes_every_session_of_one_user(storage: Storage) -> None:
    user = await add_user(storage)
    other = await add_user(storage)
    mine = [make_session(user.id, last_used_at=at(i)) for i in range(3)]
    already = make_session(user.id, revoked_at=at(1))
    theirs = make_session(other.id)
    async with committed(storage) as uow:
        for session in (*mine, already, theirs):
            await uow.sessions.add(session)
    async with committed(storage) as uow:
        assert await uow.sessions.revoke_all(user.id, at(10)) == 3
    async with storage.unit_of_work() as uow:
        assert await uow.sessions.list_active(user.id, at(11)) == []
        assert await uow.sessions.list_active(other.id, at(11)) == [theirs]
        kept = await uow.sessions.get(already.id)
        assert kept is not None
        assert kept.revoked_at == at(1)


# --------------------------------------------------------------------------- audit


async def test_audit_append_assigns_increasing_ids(storage: Storage) -> None:
    async with committed(storage) as uow:
        first = await uow.audit.append(AuditEvent(action="login", created_at=at(1)))
        second = await uow.audit.append(AuditEvent(action="logout", created_at=at(2)))
    async with committed(storage) as uow:
        third = await uow.audit.append(AuditEvent(action="login", created_at=at(3)))
    assert first.id is not None
    assert second.id is not None
    assert third.id is not None
    assert first.id < second.id < third.id
    assert second == AuditEvent(id=second.id, action="logout", created_at=at(2))


async def test_audit_list_pages_newest_first_and_filters_by_subject(storage: Storage) -> None:
    async with committed(storage) as uow:
        events = [
            await uow.audit.append(
                AuditEvent(
                    action=f"action-{i}",
                    actor_id="admin",
                    subject_id="alice" if i % 2 == 0 else "bob",
                    ip="192.0.2.7",
                    data={"i": i},
                    created_at=at(i),
                )
            )
            for i in range(6)
        ]
    newest_first = list(reversed(events))
    async with storage.unit_of_work() as uow:
        assert await uow.audit.list() == newest_first
        page = await uow.audit.list(limit=2)
        assert page == newest_first[:2]
        assert await uow.audit.list(limit=2, before_id=page[-1].id) == newest_first[2:4]
        alice = [e for e in newest_first if e.subject_id == "alice"]
        assert await uow.audit.list(subject_id="alice") == alice
        assert await uow.audit.list(subject_id="alice", before_id=alice[0].id) == alice[1:]
        assert await uow.audit.list(subject_id="nobody") == []


# --------------------------------------------------------------------------- documents


async def test_a_document_round_trips_and_is_listed_oldest_first(storage: Storage) -> None:
    owner = await add_user(storage)
    later = make_document(title="Later", owner_id=owner.id, created_at=at(2), updated_at=at(2))
    earlier = make_document(title="Earlier", created_at=at(1), updated_at=at(1))
    async with committed(storage) as uow:
        await uow.documents.add(later)
        await uow.documents.add(earlier)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.get(later.id) == later
        assert await uow.documents.list() == [earlier, later]
        assert await uow.documents.list(limit=1, offset=1) == [later]
        assert await uow.documents.get("missing") is None


async def test_soft_deleting_a_document_hides_it(storage: Storage) -> None:
    kept = make_document(created_at=at(1))
    gone = make_document(created_at=at(2))
    async with committed(storage) as uow:
        await uow.documents.add(kept)
        await uow.documents.add(gone)
    async with committed(storage) as uow:
        assert await uow.documents.delete(gone.id, at(10)) is True
    async with committed(storage) as uow:
        assert await uow.documents.delete(gone.id, at(11)) is False
        assert await uow.documents.delete("missing", at(11)) is False
        assert await uow.documents.get(gone.id) is None
        assert await uow.documents.list() == [kept]


async def test_document_versions_are_listed_oldest_first(storage: Storage) -> None:
    document = make_document()
    versions = [make_version(document.id, n) for n in (2, 1, 3)]
    async with committed(storage) as uow:
        await uow.documents.add(document)
        for version in versions:
            await uow.documents.add_version(version)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.list_versions(document.id) == sorted(
            versions, key=lambda v: v.version
        )
        assert await uow.documents.get_version(document.id, 2) == versions[0]
        assert await uow.documents.get_version(document.id, 9) is None
        assert await uow.documents.list_versions("missing") == []


async def test_find_version_by_hash_returns_the_newest_match(storage: Storage) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(make_version(document.id, 1, content_hash="h-a"))
        await uow.documents.add_version(make_version(document.id, 2, content_hash="h-b"))
        await uow.documents.add_version(make_version(document.id, 3, content_hash="h-a"))
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_version_by_hash(document.id, "h-a")
        assert found is not None
        assert found.version == 3
        assert await uow.documents.find_version_by_hash(document.id, "h-z") is None
        assert await uow.documents.find_version_by_hash("missing", "h-a") is None


async def test_update_version_status_sets_status_error_and_optionally_meta(
    storage: Storage,
) -> None:
    document = make_document()
    version = make_version(document.id, 1, meta={"pages": 3})
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(version)
    async with committed(storage) as uow:
        await uow.documents.update_version_status(document.id, 1, "failed", error="parse error")
    async with committed(storage) as uow:
        stored = await uow.documents.get_version(document.id, 1)
        assert stored == version.model_copy(update={"status": "failed", "error": "parse error"})
        await uow.documents.update_version_status(document.id, 1, "ready", meta={"chunks": 12})
    async with storage.unit_of_work() as uow:
        stored = await uow.documents.get_version(document.id, 1)
        assert stored == version.model_copy(
            update={"status": "ready", "error": None, "meta": {"chunks": 12}}
        )


async def test_update_version_status_of_a_missing_version_raises_not_found(
    storage: Storage,
) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.documents.update_version_status(document.id, 7, "ready")


async def test_set_current_version_updates_the_document(storage: Storage) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(make_version(document.id, 1))
    async with committed(storage) as uow:
        await uow.documents.set_current_version(document.id, 1, at(30))
    async with storage.unit_of_work() as uow:
        assert await uow.documents.get(document.id) == document.model_copy(
            update={"current_version": 1, "updated_at": at(30)}
        )


async def test_set_current_version_of_a_missing_document_raises_not_found(
    storage: Storage,
) -> None:
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.documents.set_current_version("missing", 1, at(1))


async def test_set_current_version_of_a_deleted_document_raises_not_found(
    storage: Storage,
) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.delete(document.id, at(1))
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.documents.set_current_version(document.id, 1, at(2))


async def test_adding_a_version_for_a_missing_document_raises_conflict(storage: Storage) -> None:
    with pytest.raises(ConflictError):
        async with storage.unit_of_work() as uow:
            await uow.documents.add_version(make_version("missing", 1))


async def test_adding_an_existing_version_raises_duplicate_error(storage: Storage) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(make_version(document.id, 1))
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            await uow.documents.add_version(make_version(document.id, 1, content_hash="x"))


# --------------------------------------------------------------------------- jobs


async def enqueue(storage: Storage, *jobs: Job) -> None:
    async with committed(storage) as uow:
        for job in jobs:
            await uow.jobs.enqueue(job)


async def claim(
    storage: Storage,
    worker_id: str,
    now: datetime,
    lease_seconds: float = 30,
    kinds: list[str] | None = None,
) -> Job | None:
    async with committed(storage) as uow:
        return await uow.jobs.claim(worker_id, now, lease_seconds, kinds)


async def get_job(storage: Storage, job_id: str) -> Job:
    async with storage.unit_of_work() as uow:
        job = await uow.jobs.get(job_id)
    assert job is not None
    return job


async def test_an_enqueued_job_round_trips(storage: Storage) -> None:
    job = make_job(owner_id="user-1", max_attempts=5, run_at=at(5))
    await enqueue(storage, job)
    assert await get_job(storage, job.id) == job
    async with storage.unit_of_work() as uow:
        assert await uow.jobs.get("missing") is None


async def test_claim_takes_the_oldest_due_job_and_leases_it(storage: Storage) -> None:
    late = make_job(run_at=at(10))
    early = make_job(run_at=at(5))
    future = make_job(run_at=at(100))
    await enqueue(storage, late, early, future)

    claimed = await claim(storage, "w1", at(20), lease_seconds=30)
    assert claimed == early.model_copy(
        update={
            "status": "running",
            "worker_id": "w1",
            "lease_expires_at": at(50),
            "attempts": 1,
            "updated_at": at(20),
        }
    )
    assert await get_job(storage, early.id) == claimed
    second = await claim(storage, "w1", at(20))
    assert second is not None
    assert second.id == late.id
    assert await claim(storage, "w1", at(20)) is None


async def test_a_job_that_is_not_yet_due_is_not_claimed(storage: Storage) -> None:
    job = make_job(run_at=at(60))
    await enqueue(storage, job)
    assert await claim(storage, "w1", at(59)) is None
    claimed = await claim(storage, "w1", at(60))
    assert claimed is not None
    assert claimed.id == job.id


async def test_claim_honours_the_kinds_filter(storage: Storage) -> None:
    ingest = make_job(kind="ingest", run_at=at(1))
    email = make_job(kind="email", run_at=at(2))
    await enqueue(storage, ingest, email)
    assert await claim(storage, "w1", at(10), kinds=[]) is None
    assert await claim(storage, "w1", at(10), kinds=["video"]) is None
    claimed = await claim(storage, "w1", at(10), kinds=["email", "video"])
    assert claimed is not None
    assert claimed.id == email.id
    claimed = await claim(storage, "w1", at(10))
    assert claimed is not None
    assert claimed.id == ingest.id


async def test_only_the_holder_can_heartbeat_a_job(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1), lease_seconds=30)
    async with committed(storage) as uow:
        assert await uow.jobs.heartbeat(job.id, "w2", at(10), 30, progress=0.9) is False
        assert await uow.jobs.heartbeat(job.id, "w1", at(10), 30, progress=0.5) is True
    stored = await get_job(storage, job.id)
    assert stored.lease_expires_at == at(40)
    assert stored.progress == 0.5
    assert stored.updated_at == at(10)
    async with committed(storage) as uow:
        assert await uow.jobs.heartbeat(job.id, "w1", at(20), 60) is True
        assert await uow.jobs.heartbeat("missing", "w1", at(20), 60) is False
    stored = await get_job(storage, job.id)
    assert stored.lease_expires_at == at(80)
    assert stored.progress == 0.5


async def test_completing_a_job_records_its_result(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.complete(job.id, "w2", at(5), {"ignored": True}) is False
        assert await uow.jobs.complete(job.id, "w1", at(5), {"chunks": 4}) is True
    stored = await get_job(storage, job.id)
    assert stored.status == "succeeded"
    assert stored.progress == 1.0
    assert stored.result == {"chunks": 4}
    assert stored.lease_expires_at is None
    assert stored.updated_at == at(5)
    async with committed(storage) as uow:
        assert await uow.jobs.complete(job.id, "w1", at(6)) is False
    assert await claim(storage, "w2", at(1000)) is None


async def test_failing_with_a_retry_time_requeues_the_job(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.fail(job.id, "w2", at(2), "not mine", retry_at=at(3)) is False
        assert await uow.jobs.fail(job.id, "w1", at(2), "boom", retry_at=at(60)) is True
    stored = await get_job(storage, job.id)
    assert stored.status == "queued"
    assert stored.error == "boom"
    assert stored.worker_id is None
    assert stored.lease_expires_at is None
    assert stored.run_at == at(60)
    assert stored.attempts == 1
    assert await claim(storage, "w2", at(59)) is None
    retried = await claim(storage, "w2", at(60))
    assert retried is not None
    assert retried.id == job.id
    assert retried.attempts == 2
    assert retried.worker_id == "w2"
    assert retried.error is None


async def test_failing_without_a_retry_time_fails_the_job(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.fail(job.id, "w1", at(2), "fatal", retry_at=None) is True
    stored = await get_job(storage, job.id)
    assert stored.status == "failed"
    assert stored.error == "fatal"
    assert stored.lease_expires_at is None
    assert await claim(storage, "w2", at(1000)) is None


async def test_failing_with_a_retry_time_but_no_attempts_left_fails_the_job(
    storage: Storage,
) -> None:
    job = make_job(max_attempts=1)
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.fail(job.id, "w1", at(2), "boom", retry_at=at(3)) is True
    assert (await get_job(storage, job.id)).status == "failed"
    assert await claim(storage, "w2", at(1000)) is None


async def test_a_job_with_an_expired_lease_is_reclaimed_by_another_worker(
    storage: Storage,
) -> None:
    job = make_job(max_attempts=3)
    await enqueue(storage, job)
    await claim(storage, "w1", at(0), lease_seconds=30)
    assert await claim(storage, "w2", at(10)) is None
    assert await claim(storage, "w2", at(30)) is None
    reclaimed = await claim(storage, "w2", at(31), lease_seconds=30)
    assert reclaimed is not None
    assert reclaimed.id == job.id
    assert reclaimed.worker_id == "w2"
    assert reclaimed.attempts == 2
    assert reclaimed.lease_expires_at == at(61)
    async with committed(storage) as uow:
        assert await uow.jobs.heartbeat(job.id, "w1", at(32), 30) is False
        assert await uow.jobs.complete(job.id, "w1", at(32)) is False
        assert await uow.jobs.complete(job.id, "w2", at(32)) is True


async def test_exhausted_jobs_are_not_claimed_and_fail_exhausted_marks_them_failed(
    storage: Storage,
) -> None:
    exhausted = make_job(max_attempts=1, run_at=at(0))
    healthy = make_job(max_attempts=1, run_at=at(1))
    await enqueue(storage, exhausted, healthy)
    first = await claim(storage, "w1", at(0), lease_seconds=30)
    assert first is not None
    assert first.id == exhausted.id
    await claim(storage, "w1", at(1), lease_seconds=300)
    async with committed(storage) as uow:
        assert await uow.jobs.fail_exhausted(at(30)) == 0
    assert await claim(storage, "w2", at(31)) is None
    async with committed(storage) as uow:
        assert await uow.jobs.fail_exhausted(at(31)) == 1
    stored = await get_job(storage, exhausted.id)
    assert stored.status == "failed"
    assert stored.error
    assert stored.lease_expires_at is None
    assert stored.updated_at == at(31)
    assert (await get_job(storage, healthy.id)).status == "running"
    async with committed(storage) as uow:
        assert await uow.jobs.fail_exhausted(at(32)) == 0


async def test_concurrent_workers_never_receive_the_same_job(storage: Storage) -> None:
    jobs = [make_job(run_at=at(i)) for i in range(20)]
    await enqueue(storage, *jobs)

    async def worker(name: str) -> list[str]:
        taken: list[str] = []
        while (job := await claim(storage, name, at(100), lease_seconds=600)) is not None:
            assert job.worker_id == name
            taken.append(job.id)
        return taken

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(8)))
    claimed = [job_id for taken in results for job_id in taken]
    assert len(claimed) == len(set(claimed))
    assert sorted(claimed) == sorted(job.id for job in jobs)


async def test_concurrent_single_claims_hand_out_distinct_jobs(storage: Storage) -> None:
    jobs = [make_job(run_at=at(i)) for i in range(5)]
    await enqueue(storage, *jobs)
    results = await asyncio.gather(*(claim(storage, f"w{i}", at(100)) for i in range(8)))
    claimed = [job.id for job in results if job is not None]
    assert sorted(claimed) == sorted(job.id for job in jobs)


# --------------------------------------------------------------------------- avatar sessions


async def test_an_avatar_session_round_trips_and_updates(storage: Storage) -> None:
    session = make_avatar_session("owner-1", provider_session_id="p-1", expires_at=at(600))
    async with committed(storage) as uow:
        await uow.avatar_sessions.add(session)
    async with storage.unit_of_work() as uow:
        assert await uow.avatar_sessions.get(session.id) == session
        assert await uow.avatar_sessions.get("missing") is None
    ended = session.model_copy(
        update={
            "status": "ended",
            "last_activity_at": at(100),
            "ended_at": at(120),
            "cost_seconds": 120.5,
            "data": {"reason": "user_left"},
        }
    )
    async with committed(storage) as uow:
        await uow.avatar_sessions.update(ended)
    async with storage.unit_of_work() as uow:
        assert await uow.avatar_sessions.get(session.id) == ended


async def test_updating_a_missing_avatar_session_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.avatar_sessions.update(make_avatar_session("owner-1"))


async def test_avatar_sessions_are_listed_per_owner_and_by_activity(storage: Storage) -> None:
    second = make_avatar_session("alice", started_at=at(2))
    first = make_avatar_session("alice", started_at=at(1))
    ended = make_avatar_session("alice", started_at=at(0), ended_at=at(5), status="ended")
    bobs = make_avatar_session("bob", started_at=at(3))
    async with committed(storage) as uow:
        for session in (second, first, ended, bobs):
            await uow.avatar_sessions.add(session)
    async with storage.unit_of_work() as uow:
        assert await uow.avatar_sessions.list_for_owner("alice") == [ended, first, second]
        assert await uow.avatar_sessions.list_for_owner("alice", active_only=True) == [
            first,
            second,
        ]
        assert await uow.avatar_sessions.list_for_owner("carol") == []
        assert await uow.avatar_sessions.list_active() == [first, second, bobs]


# --------------------------------------------------------------------------- conversations


async def test_conversations_are_listed_most_recently_updated_first(storage: Storage) -> None:
    old = make_conversation("alice", updated_at=at(1))
    new = make_conversation("alice", updated_at=at(3))
    mid = make_conversation("alice", title=None, updated_at=at(2))
    other = make_conversation("bob")
    async with committed(storage) as uow:
        for conversation in (old, new, mid, other):
            await uow.conversations.add(conversation)
    async with storage.unit_of_work() as uow:
        assert await uow.conversations.get(mid.id) == mid
        assert await uow.conversations.get("missing") is None
        assert await uow.conversations.list_for_user("alice") == [new, mid, old]
        assert await uow.conversations.list_for_user("alice", limit=1, offset=1) == [mid]


async def test_append_event_assigns_gap_free_seq_starting_at_one(storage: Storage) -> None:
    conversation = await add_conversation(storage)
    async with committed(storage) as uow:
        first = await uow.conversations.append_event(conversation.id, "user", {"n": 1}, at(1))
        second = await uow.conversations.append_event(conversation.id, "bot", {"n": 2}, at(2))
    async with committed(storage) as uow:
        third = await uow.conversations.append_event(conversation.id, "user", {"n": 3}, at(3))
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    async with storage.unit_of_work() as uow:
        assert await uow.conversations.list_events(conversation.id) == [first, second, third]
        stored = await uow.conversations.get(conversation.id)
    assert stored == conversation.model_copy(update={"last_seq": 3, "updated_at": at(3)})


async def test_an_event_rolled_back_does_not_consume_a_seq(storage: Storage) -> None:
    conversation = await add_conversation(storage)
    async with storage.unit_of_work() as uow:
        await uow.conversations.append_event(conversation.id, "user", {}, at(1))
    async with committed(storage) as uow:
        event = await uow.conversations.append_event(conversation.id, "user", {}, at(2))
    assert event.seq == 1


async def test_append_event_with_a_known_client_id_returns_the_stored_event(
    storage: Storage,
) -> None:
    conversation = await add_conversation(storage)
    async with committed(storage) as uow:
        original = await uow.conversations.append_event(
            conversation.id, "user", {"text": "hi"}, at(1), client_id="c-1"
        )
        await uow.conversations.append_event(conversation.id, "bot", {"text": "hello"}, at(2))
    async with committed(storage) as uow:
        retried = await uow.conversations.append_event(
            conversation.id, "user", {"text": "hi again"}, at(3), client_id="c-1"
        )
    assert retried == original
    assert retried.seq == 1
    assert retried.data == {"text": "hi"}
    async with storage.unit_of_work() as uow:
        assert [e.seq for e in await uow.conversations.list_events(conversation.id)] == [1, 2]
        stored = await uow.conversations.get(conversation.id)
    assert stored is not None
    assert stored.last_seq == 2


async def test_client_ids_are_scoped_to_their_conversation(storage: Storage) -> None:
    one = await add_conversation(storage)
    two = await add_conversation(storage)
    async with committed(storage) as uow:
        await uow.conversations.append_event(one.id, "user", {}, at(1))
        await uow.conversations.append_event(one.id, "user", {}, at(2), client_id="same")
        event = await uow.conversations.append_event(two.id, "user", {}, at(3), client_id="same")
    assert event.conversation_id == two.id
    assert event.seq == 1


async def test_list_events_returns_events_after_a_seq_ascending(storage: Storage) -> None:
    conversation = await add_conversation(storage)
    async with committed(storage) as uow:
        for n in range(1, 6):
            await uow.conversations.append_event(conversation.id, "user", {"n": n}, at(n))
    async with storage.unit_of_work() as uow:
        events = await uow.conversations.list_events(conversation.id, after_seq=2)
        assert [e.seq for e in events] == [3, 4, 5]
        assert [e.data["n"] for e in events] == [3, 4, 5]
        limited = await uow.conversations.list_events(conversation.id, after_seq=1, limit=2)
        assert [e.seq for e in limited] == [2, 3]
        assert await uow.conversations.list_events(conversation.id, after_seq=5) == []
        assert await uow.conversations.list_events("missing") == []


async def test_append_event_to_an_unknown_conversation_raises_not_found(
    storage: Storage,
) -> None:
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.conversations.append_event("missing", "user", {}, at(1))


async def test_concurrent_appends_yield_gap_free_unique_seqs(storage: Storage) -> None:
    conversation = await add_conversation(storage)

    async def append(n: int) -> int:
        async with committed(storage) as uow:
            event = await uow.conversations.append_event(conversation.id, "user", {"n": n}, at(n))
        return event.seq

    seqs = await asyncio.gather(*(append(n) for n in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    async with storage.unit_of_work() as uow:
        events = await uow.conversations.list_events(conversation.id)
        stored = await uow.conversations.get(conversation.id)
    assert [e.seq for e in events] == list(range(1, 21))
    assert sorted(e.data["n"] for e in events) == list(range(20))
    assert stored is not None
    assert stored.last_seq == 20


async def test_concurrent_retries_with_one_client_id_store_one_event(storage: Storage) -> None:
    conversation = await add_conversation(storage)

    async def append() -> int:
        async with committed(storage) as uow:
            event = await uow.conversations.append_event(
                conversation.id, "user", {}, at(1), client_id="retry"
            )
        return event.seq

    assert await asyncio.gather(*(append() for _ in range(5))) == [1] * 5
    async with storage.unit_of_work() as uow:
        assert len(await uow.conversations.list_events(conversation.id)) == 1


# --------------------------------------------------------------------------- value fidelity


async def test_json_fields_round_trip_nested_values(storage: Storage) -> None:
    document = make_document()
    job = make_job(payload=NESTED)
    avatar = make_avatar_session("owner", data=NESTED)
    conversation = await add_conversation(storage)
    token = make_token(data=NESTED)
    async with committed(storage) as uow:
        await uow.tokens.add(token)
        audit = await uow.audit.append(AuditEvent(action="x", data=NESTED, created_at=T0))
        await uow.documents.add(document)
        await uow.documents.add_version(make_version(document.id, 1, meta=NESTED))
        await uow.jobs.enqueue(job)
        await uow.avatar_sessions.add(avatar)
        await uow.conversations.append_event(conversation.id, "user", NESTED, at(1))
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        await uow.jobs.complete(job.id, "w1", at(2), NESTED)
    async with committed(storage) as uow:
        consumed = await uow.tokens.consume(token.token_hash, "verify_email", at(1))
        assert consumed is not None
        assert consumed.data == NESTED
        assert (await uow.audit.list())[0] == audit
        assert audit.data == NESTED
        version = await uow.documents.get_version(document.id, 1)
        assert version is not None
        assert version.meta == NESTED
        stored_job = await uow.jobs.get(job.id)
        assert stored_job is not None
        assert stored_job.payload == NESTED
        assert stored_job.result == NESTED
        stored_avatar = await uow.avatar_sessions.get(avatar.id)
        assert stored_avatar is not None
        assert stored_avatar.data == NESTED
        [event] = await uow.conversations.list_events(conversation.id)
        assert event.data == NESTED


async def test_datetimes_come_back_timezone_aware_and_equal(storage: Storage) -> None:
    created = datetime(2026, 1, 1, 12, 30, 45, 123456, tzinfo=UTC)
    # the same kind of instant written with another offset must compare equal
    updated = datetime(2026, 1, 1, 14, 30, 45, 654321, tzinfo=timezone(timedelta(hours=2)))
    user = await add_user(storage, created_at=created, updated_at=updated)
    session = make_session(
        user.id,
        created_at=created,
        last_used_at=datetime(2026, 1, 1, 12, 30, 45, 1, tzinfo=UTC),
        expires_at=datetime(2026, 2, 1, 0, 0, 0, 999999, tzinfo=UTC),
    )
    async with committed(storage) as uow:
        await uow.sessions.add(session)
    async with storage.unit_of_work() as uow:
        stored_user = await uow.users.get(user.id)
        stored_session = await uow.sessions.get(session.id)
    assert stored_user is not None
    assert stored_session is not None
    for value, expected in (
        (stored_user.created_at, created),
        (stored_user.updated_at, updated),
        (stored_session.last_used_at, session.last_used_at),
        (stored_session.expires_at, session.expires_at),
    ):
        assert value.tzinfo is not None
        assert value.utcoffset() is not None
        assert value == expected
        assert value.microsecond == expected.astimezone(UTC).microsecond


# --------------------------------------------------------------------------- refresh tokens


async def add_session(storage: Storage) -> AuthSession:
    user = await add_user(storage)
    session = make_session(user.id)
    async with committed(storage) as uow:
        await uow.sessions.add(session)
    return session


def make_refresh(session_id: str, token_hash: str = "rt-hash", **overrides: Any) -> RefreshToken:
    fields: dict[str, Any] = {
        "token_hash": token_hash,
        "session_id": session_id,
        "created_at": T0,
        "expires_at": at(3600),
    }
    fields.update(overrides)
    return RefreshToken(**fields)


async def test_a_refresh_token_can_be_used_once(storage: Storage) -> None:
    session = await add_session(storage)
    async with committed(storage) as uow:
        await uow.refresh_tokens.add(make_refresh(session.id))
    async with committed(storage) as uow:
        used = await uow.refresh_tokens.use("rt-hash", at(10))
    assert used is not None
    assert used.used_at == at(10)
    assert used.session_id == session.id
    async with committed(storage) as uow:
        assert await uow.refresh_tokens.use("rt-hash", at(11)) is None
        stored = await uow.refresh_tokens.get("rt-hash")
    assert stored is not None
    assert stored.used_at == at(10)


async def test_an_expired_or_unknown_refresh_token_cannot_be_used(storage: Storage) -> None:
    session = await add_session(storage)
    async with committed(storage) as uow:
        await uow.refresh_tokens.add(make_refresh(session.id, expires_at=at(5)))
    async with committed(storage) as uow:
        assert await uow.refresh_tokens.use("rt-hash", at(5)) is None
        assert await uow.refresh_tokens.use("unknown", at(1)) is None
        assert await uow.refresh_tokens.get("unknown") is None


async def test_expired_refresh_tokens_are_deleted(storage: Storage) -> None:
    session = await add_session(storage)
    async with committed(storage) as uow:
        await uow.refresh_tokens.add(make_refresh(session.id, "old", expires_at=at(5)))
        await uow.refresh_tokens.add(make_refresh(session.id, "new", expires_at=at(500)))
    async with committed(storage) as uow:
        assert await uow.refresh_tokens.delete_expired(at(5)) == 1
        assert await uow.refresh_tokens.get("old") is None
        assert await uow.refresh_tokens.get("new") is not None


async def test_a_refresh_token_for_a_missing_session_is_refused(storage: Storage) -> None:
    with pytest.raises(ConflictError):
        async with committed(storage) as uow:
            await uow.refresh_tokens.add(make_refresh("no-such-session"))


async def test_concurrent_use_of_one_refresh_token_succeeds_exactly_once(
    storage: Storage,
) -> None:
    session = await add_session(storage)
    async with committed(storage) as uow:
        await uow.refresh_tokens.add(make_refresh(session.id))

    async def use() -> RefreshToken | None:
        async with committed(storage) as uow:
            return await uow.refresh_tokens.use("rt-hash", at(1))

    results = await asyncio.gather(*(use() for _ in range(5)))
    assert sum(result is not None for result in results) == 1


# --------------------------------------------------------------------------- rate limits


async def test_rate_limit_hits_are_counted_per_key_and_window(storage: Storage) -> None:
    async with committed(storage) as uow:
        assert await uow.rate_limits.hit("login:ip:1.2.3.4", T0) == 1
        assert await uow.rate_limits.hit("login:ip:1.2.3.4", T0) == 2
        assert await uow.rate_limits.hit("login:ip:5.6.7.8", T0) == 1
        assert await uow.rate_limits.hit("login:ip:1.2.3.4", at(60)) == 1


async def test_a_rate_limit_window_is_read_without_counting_a_hit(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        assert await uow.rate_limits.count("login:account:x", T0) == 0
        await uow.rate_limits.hit("login:account:x", T0)
        await uow.rate_limits.hit("login:account:x", T0)
        assert await uow.rate_limits.count("login:account:x", T0) == 2
        assert await uow.rate_limits.count("login:account:x", T0) == 2
        assert await uow.rate_limits.count("login:account:x", at(60)) == 0


async def test_concurrent_rate_limit_hits_are_all_counted(storage: Storage) -> None:
    async def hit() -> int:
        async with committed(storage) as uow:
            return await uow.rate_limits.hit("k", T0)

    results = await asyncio.gather(*(hit() for _ in range(10)))
    assert sorted(results) == list(range(1, 11))


async def test_old_rate_limit_windows_are_purged(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.rate_limits.hit("k", T0)
        await uow.rate_limits.hit("k", at(120))
    async with committed(storage) as uow:
        assert await uow.rate_limits.purge(at(60)) == 1
        assert await uow.rate_limits.hit("k", at(120)) == 2
        assert await uow.rate_limits.hit("k", T0) == 1


# --------------------------------------------------------------------------- named locks


async def test_a_named_lock_makes_check_then_write_sequences_take_turns(storage: Storage) -> None:
    """Five concurrent "count, then insert if below the limit" sequences under one lock: the
    limit holds on every backend (PostgreSQL runs them concurrently, the others in turn)."""
    user = await add_user(storage)

    async def start_if_free() -> bool:
        async with storage.unit_of_work() as uow:
            await uow.lock(f"avatar-sessions:{user.id}")
            if await uow.avatar_sessions.list_for_owner(user.id, active_only=True):
                return False
            await uow.avatar_sessions.add(make_avatar_session(user.id))
            await asyncio.sleep(0.01)  # widen the window a race would need
            await uow.commit()
            return True

    results = await asyncio.gather(*(start_if_free() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


async def test_different_lock_names_do_not_wait_for_each_other(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.lock("a")
        await uow.lock("b")
        await uow.lock("a")  # taking a held lock again in the same unit of work is fine


# --------------------------------------------------------------------------- chunks


def make_chunk(document_id: str, version: int, index: int, **overrides: Any) -> StoredChunk:
    fields: dict[str, Any] = {
        "document_id": document_id,
        "version": version,
        "index": index,
        "text": f'chunk {index}: héllo ✓ "quoted"',
        "page_start": index + 1,
        "page_end": index + 2,
        "char_start": index * 100,
        "char_end": index * 100 + 120,
        "heading": f"Section {index}" if index % 2 == 0 else None,
        "hash": f"sha256:chunk-{index}",
    }
    fields.update(overrides)
    return StoredChunk(**fields)


async def add_document_versions(storage: Storage, *versions: int) -> Document:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        for version in versions:
            await uow.documents.add_version(make_version(document.id, version))
    return document


async def test_chunks_round_trip_in_index_order_with_every_field(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    chunks = [make_chunk(document.id, 1, i) for i in (2, 0, 3, 1)]
    async with committed(storage) as uow:
        await uow.chunks.add_many(chunks)
    async with committed(storage) as uow:
        stored = await uow.chunks.list_for_version(document.id, 1)
        assert await uow.chunks.count_for_version(document.id, 1) == 4
    assert list(stored) == sorted(chunks, key=lambda c: c.index)


async def test_many_chunks_are_added_in_one_call(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, i) for i in range(130)])
    async with committed(storage) as uow:
        assert await uow.chunks.count_for_version(document.id, 1) == 130
        stored = await uow.chunks.list_for_version(document.id, 1)
    assert [c.index for c in stored] == list(range(130))


async def test_adding_no_chunks_is_a_no_op(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    async with committed(storage) as uow:
        await uow.chunks.add_many([])
        assert await uow.chunks.count_for_version(document.id, 1) == 0


async def test_a_duplicate_chunk_index_is_refused(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, 0)])
    with pytest.raises(DuplicateError):
        async with committed(storage) as uow:
            await uow.chunks.add_many(
                [make_chunk(document.id, 1, 1), make_chunk(document.id, 1, 0)]
            )
    async with committed(storage) as uow:
        assert await uow.chunks.count_for_version(document.id, 1) == 1


async def test_chunks_of_an_unknown_document_version_are_refused(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    with pytest.raises(ConflictError):
        async with committed(storage) as uow:
            await uow.chunks.add_many([make_chunk(document.id, 2, 0)])


async def test_deleting_chunks_removes_only_that_versions_chunks(storage: Storage) -> None:
    document = await add_document_versions(storage, 1, 2)
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, i) for i in range(3)])
        await uow.chunks.add_many([make_chunk(document.id, 2, i) for i in range(2)])
    async with committed(storage) as uow:
        assert await uow.chunks.delete_for_version(document.id, 1) == 3
        assert await uow.chunks.delete_for_version(document.id, 1) == 0
    async with committed(storage) as uow:
        assert await uow.chunks.list_for_version(document.id, 1) == []
        assert await uow.chunks.count_for_version(document.id, 2) == 2


# --------------------------------------------------------------------------- index generations


def make_generation(**overrides: Any) -> IndexGeneration:
    fields: dict[str, Any] = {
        "id": new_id(),
        "embedder": "hashing-v1",
        "dimensions": 256,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return IndexGeneration(**fields)


async def add_generation(storage: Storage, **overrides: Any) -> IndexGeneration:
    generation = make_generation(**overrides)
    async with committed(storage) as uow:
        await uow.generations.add(generation)
    return generation


async def test_a_generation_round_trips_with_its_json_fields(storage: Storage) -> None:
    generation = make_generation(
        document_versions={"doc-a": 1, "doc-b": 7},
        chunk_count=12,
        metrics=NESTED,
        job_id="job-1",
    )
    async with committed(storage) as uow:
        await uow.generations.add(generation)
    async with committed(storage) as uow:
        assert await uow.generations.get(generation.id) == generation
        assert await uow.generations.get("unknown") is None


async def test_a_duplicate_generation_id_is_refused(storage: Storage) -> None:
    generation = await add_generation(storage)
    with pytest.raises(DuplicateError):
        async with committed(storage) as uow:
            await uow.generations.add(make_generation(id=generation.id))


async def test_generations_are_listed_newest_first(storage: Storage) -> None:
    old = await add_generation(storage, created_at=at(1), updated_at=at(1))
    new = await add_generation(storage, created_at=at(3), updated_at=at(3))
    middle = await add_generation(storage, created_at=at(2), updated_at=at(2))
    async with committed(storage) as uow:
        assert [g.id for g in await uow.generations.list()] == [new.id, middle.id, old.id]
        assert [g.id for g in await uow.generations.list(limit=1)] == [new.id]


async def test_a_generation_is_updated(storage: Storage) -> None:
    generation = await add_generation(storage)
    done = generation.model_copy(
        update={
            "status": "failed",
            "chunk_count": 3,
            "document_versions": {"doc-a": 2},
            "metrics": {"seconds": 1.5},
            "error": "embedder unavailable",
            "updated_at": at(60),
        }
    )
    async with committed(storage) as uow:
        await uow.generations.update(done)
    async with committed(storage) as uow:
        assert await uow.generations.get(generation.id) == done


async def test_updating_an_unknown_generation_is_refused(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        async with committed(storage) as uow:
            await uow.generations.update(make_generation())


async def test_a_generation_is_deleted(storage: Storage) -> None:
    generation = await add_generation(storage)
    async with committed(storage) as uow:
        assert await uow.generations.delete(generation.id) is True
        assert await uow.generations.delete(generation.id) is False
    async with committed(storage) as uow:
        assert await uow.generations.get(generation.id) is None


async def test_there_is_no_active_generation_at_first(storage: Storage) -> None:
    await add_generation(storage, status="ready")
    async with committed(storage) as uow:
        assert await uow.generations.get_active() is None


async def test_activating_a_ready_generation_switches_the_pointer(storage: Storage) -> None:
    first = await add_generation(storage, status="ready")
    second = await add_generation(storage, status="ready", created_at=at(1))
    async with committed(storage) as uow:
        await uow.generations.set_active(first.id, at(10))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == first
        await uow.generations.set_active(second.id, at(20))
        assert await uow.generations.get_active() == second
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == second


async def test_an_uncommitted_switch_leaves_the_active_generation(storage: Storage) -> None:
    first = await add_generation(storage, status="ready")
    second = await add_generation(storage, status="ready")
    async with committed(storage) as uow:
        await uow.generations.set_active(first.id, at(10))
    async with storage.unit_of_work() as uow:
        await uow.generations.set_active(second.id, at(20))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == first


async def test_switching_back_to_an_older_ready_generation_works(storage: Storage) -> None:
    old = await add_generation(storage, status="ready")
    new = await add_generation(storage, status="ready", created_at=at(1))
    async with committed(storage) as uow:
        await uow.generations.set_active(old.id, at(10))
        await uow.generations.set_active(new.id, at(20))
    async with committed(storage) as uow:
        await uow.generations.set_active(old.id, at(30))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == old


@pytest.mark.parametrize("status", ["building", "failed"])
async def test_a_generation_that_is_not_ready_cannot_be_activated(
    storage: Storage, status: str
) -> None:
    ready = await add_generation(storage, status="ready")
    unready = await add_generation(storage, status=status)
    async with committed(storage) as uow:
        await uow.generations.set_active(ready.id, at(10))
    with pytest.raises(ConflictError):
        async with committed(storage) as uow:
            await uow.generations.set_active(unready.id, at(20))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == ready


async def test_an_unknown_generation_cannot_be_activated(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        async with committed(storage) as uow:
            await uow.generations.set_active("no-such-generation", at(10))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() is None


async def test_the_active_generation_cannot_be_deleted(storage: Storage) -> None:
    generation = await add_generation(storage, status="ready")
    async with committed(storage) as uow:
        await uow.generations.set_active(generation.id, at(10))
    with pytest.raises(ConflictError):
        async with committed(storage) as uow:
            await uow.generations.delete(generation.id)
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == generation


async def test_concurrent_activations_leave_exactly_one_active_generation(
    storage: Storage,
) -> None:
    generations = [
        await add_generation(storage, status="ready", created_at=at(i)) for i in range(5)
    ]

    async def activate(generation: IndexGeneration) -> None:
        async with committed(storage) as uow:
            await uow.generations.set_active(generation.id, at(100))

    await asyncio.gather(*(activate(g) for g in generations))
    async with committed(storage) as uow:
        active = await uow.generations.get_active()
    assert active is not None
    assert active in generations
