"""The storage contract of the identity context: users, roles, identities, one-time tokens,
sessions, refresh tokens, rate limits and the audit log (see test_storage_contract.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from storage_support import (
    T0,
    add_user,
    at,
    committed,
    make_identity,
    make_session,
    make_token,
    make_user,
)

from avatarstack.ports.errors import ConflictError, DuplicateError, NotFoundError
from avatarstack.ports.storage import AuditEvent, AuthSession, OneTimeToken, RefreshToken, Storage

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
