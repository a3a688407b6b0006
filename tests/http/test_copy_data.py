"""``avatarstack copy-data --to …``: a populated SQLite deployment moves to a fresh database on
the real PostgreSQL here, and the application started against it logs in, chats and searches
as before — with the embedded index kept, or with the generations rebuilt into a Chroma server.
A failed copy leaves the target empty, so running it again is safe; a non-empty target is
refused."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kb_helpers import build, ingest, search
from ops_helpers import QUESTION, chat, in_use, logged_in, start
from tests.conftest import create_database, drop_database, with_database

from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.sql import transfer
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.bootstrap import operations
from avatarstack.bootstrap.app import CONTAINER
from avatarstack.ports.errors import ConflictError, InvalidInputError

pytestmark = pytest.mark.postgres


@pytest.fixture
async def copy_target(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty database ``avs_copy_<hex>``; dropped after the test."""
    name = f"avs_copy_{secrets.token_hex(6)}"
    await create_database(postgres_url, name)
    try:
        yield with_database(postgres_url, name)
    finally:
        await drop_database(postgres_url, name)


async def populated(avatarstack_client: Any, data_dir: Path) -> tuple[Any, dict[str, Any]]:
    """A SQLite deployment with users, a document, an active generation and a conversation;
    the application is stopped afterwards (the move happens with the server down)."""
    source = await start(avatarstack_client, data_dir, {})
    _, member, generation, _ = await in_use(source)
    found = await search(source, member, QUESTION, k=5)
    settings = source.server.app[CONTAINER].settings()
    await source.close()
    return settings, {"search": found, "generation": generation}


def same_results(one: dict[str, Any], two: dict[str, Any]) -> None:
    """The same chunks in the same order with the same scores (a Chroma server computes them
    in float32 too, so to six places)."""
    assert one["generation_id"] == two["generation_id"]

    def rounded(found: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**r, "score": round(r["score"], 6)} for r in found["results"]]

    assert rounded(one) == rounded(two)


async def test_a_sqlite_deployment_moves_to_postgres_and_serves_from_it(
    copy_target: str, avatarstack_client: Any, tmp_path: Path
) -> None:
    settings, before = await populated(avatarstack_client, tmp_path / "data")

    result = await operations.copy_data(settings, copy_target, chroma_url=None)
    assert result.rows["users"] == 2
    assert result.rows["documents"] == 1
    assert result.rows["kb_generations"] == 1
    assert result.rows["conversation_events"] >= 2
    assert result.rebuilt == []

    with pytest.raises(ConflictError, match=r"already holds data \(users 2.*nothing was copied"):
        await operations.copy_data(settings, copy_target, chroma_url=None)
    again = await asyncio.to_thread(  # the command as an operator runs it
        subprocess.run,
        [sys.executable, "-m", "avatarstack.bootstrap.cli", "copy-data", "--to", copy_target],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")},
            "AVATARSTACK_DATA_DIR": str(settings.data_dir),
            "AVATARSTACK_LOAD_PLUGINS": "",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 1
    assert again.stderr.startswith("Error: the target database already holds data (users 2")
    assert again.stderr.count("\n") == 1

    # the same data dir: the embedded Chroma folder serves the same generations
    moved = await start(avatarstack_client, tmp_path / "data", {"database_url": copy_target})
    assert moved.server.app[CONTAINER].storage().name == "postgresql"
    member = await logged_in(moved, "mo@example.com")
    same_results(await search(moved, member, QUESTION, k=5), before["search"])
    await chat(moved, member)
    editor = await logged_in(moved, "ed@example.com")
    await ingest(
        moved,
        editor,
        b"Descaling uses citric acid.",
        filename="acid.txt",
        content_type="text/plain",
    )
    await build(moved, editor)  # ids from PostgreSQL's sequences do not collide with copied ones


async def test_the_generations_are_rebuilt_into_a_chroma_server(
    copy_target: str, avatarstack_client: Any, chroma_server: Any, tmp_path: Path
) -> None:
    settings, before = await populated(avatarstack_client, tmp_path / "data")

    result = await operations.copy_data(settings, copy_target, chroma_url=chroma_server.url)
    assert result.rebuilt == [before["generation"]]

    moved = await start(
        avatarstack_client,
        tmp_path / "elsewhere",
        {"database_url": copy_target, "kb": {"chroma_url": chroma_server.url}},
    )
    member = await logged_in(moved, "mo@example.com")
    same_results(await search(moved, member, QUESTION, k=5), before["search"])
    await chat(moved, member)


async def test_a_failed_copy_leaves_the_target_empty_and_runs_again_once_fixed(
    copy_target: str, avatarstack_client: Any, tmp_path: Path
) -> None:
    settings, _ = await populated(avatarstack_client, tmp_path / "data")
    with sqlite3.connect(settings.sqlite_path) as db:  # SQLite keeps a NUL; PostgreSQL cannot
        db.execute("UPDATE users SET display_name = 'Mo' || char(0) WHERE email = 'mo@example.com'")

    with pytest.raises(InvalidInputError, match="cannot be stored"):
        await operations.copy_data(settings, copy_target, chroma_url=None)
    target = PostgresStorage(copy_target)
    await target.start()
    try:
        async with target.sql_transaction(snapshot=True) as conn:
            assert not any((await transfer.row_counts(conn)).values())
    finally:
        await target.close()

    with sqlite3.connect(settings.sqlite_path) as db:
        db.execute("UPDATE users SET display_name = 'Mo' WHERE email = 'mo@example.com'")
    result = await operations.copy_data(settings, copy_target, chroma_url=None)
    assert result.rows["users"] == 2


async def test_copy_data_refuses_its_own_database_and_a_source_behind_on_migrations(
    copy_target: str, avatarstack_client: Any, tmp_path: Path
) -> None:
    settings, _ = await populated(avatarstack_client, tmp_path / "data")
    with pytest.raises(InvalidInputError, match="names the database being copied"):
        await operations.copy_data(settings, settings.resolved_database_url, chroma_url=None)
    with sqlite3.connect(settings.sqlite_path) as db:
        db.execute("DELETE FROM schema_migrations WHERE version = '0004'")
    with pytest.raises(ConflictError, match="run `avatarstack migrate` on it first"):
        await operations.copy_data(settings, copy_target, chroma_url=None)


async def test_the_table_list_matches_the_migrated_schema_of_both_dialects(
    tmp_path: Path, copy_target: str
) -> None:
    """A new migration that adds a table or a column must be reflected in the transfer list."""
    expected = {t.name: set(t.column_names) for t in transfer.TABLES}
    sqlite = SqliteStorage(tmp_path / "schema.db")
    postgres = PostgresStorage(copy_target)
    for storage, tables_sql, columns_sql in (
        (
            sqlite,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            "SELECT name FROM pragma_table_info($1)",
        ),
        (
            postgres,
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'",
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = $1",
        ),
    ):
        await storage.start()
        try:
            await storage.migrate()
            async with storage.sql_transaction(snapshot=True) as conn:
                names = {r["name"] for r in await conn.fetch(tables_sql)} - {"schema_migrations"}
                found = {
                    name: {r["name"] for r in await conn.fetch(columns_sql, name)} for name in names
                }
        finally:
            await storage.close()
        assert found == expected, storage.name
