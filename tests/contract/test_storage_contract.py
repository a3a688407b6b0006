"""The storage contract, shared mechanics: schema and health, the unit of work, value fidelity
and named locks. Every adapter (memory, SQLite, PostgreSQL, PostgreSQL behind PgBouncer) must
pass every test here and in the per-context files ``test_storage_<context>_contract.py``; the
``storage`` fixture (tests/conftest.py) is parametrized over them, and the record factories are in
``storage_support.py``.

Times are fixed aware UTC datetimes so results never depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from storage_support import (
    NESTED,
    T0,
    add_conversation,
    add_user,
    at,
    claim,
    committed,
    make_avatar_session,
    make_document,
    make_job,
    make_session,
    make_token,
    make_user,
    make_version,
)

from avatarstack.adapters.memory.storage import shipped_migrations
from avatarstack.adapters.sql import load_migrations
from avatarstack.ports.errors import DuplicateError
from avatarstack.ports.storage import AuditEvent, Storage, UnitOfWork

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
    """One holder keeps lock "a" while a second holder takes "b" and commits. Where units of
    work run at once (PostgreSQL, with or without PgBouncer) the second finishes while "a" is
    still held, and a third asking for "a" itself waits meanwhile (so the test would see a
    block); where units of work already take turns (memory, SQLite: ``lock`` has nothing left
    to do) all three still finish, one after the other."""
    runs_units_at_once = storage.name == "postgresql"
    events: list[str] = []
    a_held, release = asyncio.Event(), asyncio.Event()

    async def hold(name: str, until: asyncio.Event | None = None) -> None:
        async with committed(storage) as uow:
            await uow.lock(name)
            events.append(f"{name} taken")
            if until is not None:
                a_held.set()
                await until.wait()
        events.append(f"{name} released")

    holder = asyncio.create_task(hold("a", until=release))
    await asyncio.wait_for(a_held.wait(), 10)
    other_name = asyncio.create_task(hold("b"))
    same_name = asyncio.create_task(hold("a"))
    try:
        if runs_units_at_once:
            await asyncio.wait_for(asyncio.shield(other_name), 10)  # not held up by "a"
            await asyncio.sleep(0.2)
            assert not same_name.done()  # "a" itself is still held
            assert events == ["a taken", "b taken", "b released"]
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, other_name, same_name), 10)
    assert sorted(events) == sorted(["a taken", "a released"] * 2 + ["b taken", "b released"])


async def test_taking_a_held_lock_again_in_the_same_unit_of_work_is_fine(
    storage: Storage,
) -> None:
    async with committed(storage) as uow:
        await uow.lock("a")
        await uow.lock("b")
        await uow.lock("a")
