"""``avatarstack backup`` and ``restore``: an archive taken while the application serves and
writes (users registering, documents uploaded, an index build) restores into a fresh data dir
and a fresh database as the same deployment — users, documents, versions, generations,
conversations and search results — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from identity_helpers import BACKENDS, database_settings
from kb_helpers import KB, MANUAL_V1, build, fast_hasher, form, ingest, login, search
from ops_helpers import QUESTION, chat, in_use, logged_in, start

from avatarstack.bootstrap import operations
from avatarstack.bootstrap.app import CONTAINER
from avatarstack.bootstrap.cli import cli
from avatarstack.bootstrap.settings import KbSettings
from avatarstack.core.identity import RequestContext
from avatarstack.ports.errors import ConflictError, InvalidInputError
from avatarstack.testkit.pdf import text_pdf


async def state(client: Any, editor: dict[str, str], member: dict[str, str], conv: str) -> dict:
    """What an operator would compare: documents with versions, generations, the member's
    conversation and its events, and the answer to a search."""
    documents = await (await client.get(f"{KB}/documents?limit=100", headers=editor)).json()
    details = [
        await (
            await client.get(f"{KB}/documents/{d['document_id']}/versions", headers=editor)
        ).json()
        for d in documents["documents"]
    ]
    generations = await (await client.get(f"{KB}/generations", headers=editor)).json()
    conversations = await (await client.get("/api/v1/conversations", headers=member)).json()
    events = await (await client.get(f"/api/v1/conversations/{conv}/events", headers=member)).json()
    found = await search(client, member, QUESTION, k=5)
    for timing in ("took_ms", "embed_ms", "search_ms"):
        found.pop(timing, None)
    return {
        "documents": details,
        "generations": generations,
        "conversations": conversations,
        "events": events,
        "search": found,
    }


async def user_emails(client: Any) -> set[str]:
    async with client.server.app[CONTAINER].storage().unit_of_work() as uow:
        rows = await uow.users.list(limit=10_000)
    return {u.email for u in rows}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_backup_taken_under_live_writes_restores_the_same_deployment(
    avatarstack_client: Any, request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    database = await database_settings(request, backend)
    source = await start(avatarstack_client, tmp_path / "source", database)
    editor, member, _, conversation = await in_use(source)
    before = await state(source, editor, member, conversation)

    identity = source.server.app[CONTAINER].identity()
    writers: list[str] = []
    stop = asyncio.Event()

    async def write() -> None:
        """Users register and documents arrive all through the backup; one build runs."""
        i = 0
        while not stop.is_set():
            email = f"writer{i:04d}@example.com"
            await identity.admin.create_user(email, None, frozenset({"member"}), RequestContext())
            writers.append(email)
            if i % 5 == 0:
                pdf = text_pdf(f"Note {i}: the grinder burrs last {i} years.")
                response = await source.post(
                    f"{KB}/documents", data=form(pdf, filename=f"note{i}.pdf"), headers=editor
                )
                assert response.status == 202, await response.text()
            if i == 3:
                response = await source.post(
                    f"{KB}/generations", json={"activate": "no"}, headers=editor
                )
                assert response.status == 202, await response.text()
            i += 1
            await asyncio.sleep(0.01)

    settings = source.server.app[CONTAINER].settings()
    archive = tmp_path / "backup.tar.gz"
    writer = asyncio.create_task(write())
    await asyncio.sleep(0.05)
    try:
        result = await operations.backup(settings, archive, wait=60, poll=0.05)
    finally:
        stop.set()
        await writer
    manifest = result.manifest
    assert manifest["format_version"] == operations.FORMAT_VERSION
    assert manifest["migration_level"] == operations.release_migrations()[-1]
    assert manifest["index"]["kind"] == "embedded-chroma"
    assert manifest["index"]["copied_beside_a_running_server"] is True
    assert all(g["status"] != "building" for g in manifest["generations"].values())
    assert manifest["tables"]["users"]["rows"] >= 2

    target_db: dict[str, Any] = {}
    if backend == "postgres":
        target_db = {"database_url": request.getfixturevalue("empty_postgres_database")}
    target_dir = tmp_path / "restored"
    target_settings = settings.model_copy(
        update={"data_dir": target_dir, "database_url": target_db.get("database_url")}
    )
    restored = await operations.restore(target_settings, archive)
    assert restored.index_copied
    assert restored.rebuilt == []  # the copied Chroma folder agrees with the database

    copy = await start(avatarstack_client, target_dir, target_db)
    # writers are a prefix of the writer's sequence: one moment of the database, no gaps
    emails = await user_emails(copy)
    kept = sorted(e for e in emails if e.startswith("writer"))
    assert kept == writers[: len(kept)]
    assert len(emails) == manifest["tables"]["users"]["rows"]
    member_copy = await logged_in(copy, "mo@example.com")  # the password hash came along
    editor_copy = await logged_in(copy, "ed@example.com")
    after = await state(copy, editor_copy, member_copy, conversation)
    source_now = await state(source, editor, member, conversation)
    # the documents, generations and conversation that existed before the backup are intact
    for key in ("conversations", "events", "search"):
        assert after[key] == before[key]
    assert [d for d in after["documents"] if d in before["documents"]] == before["documents"]
    generations = after["generations"]
    assert {g["generation_id"] for g in generations["generations"]} == set(manifest["generations"])
    assert generations["active_generation_id"] == before["generations"]["active_generation_id"]
    # what the copy holds is what the source held at the archive's moment
    restored_docs = {d["document_id"] for d in after["documents"]}
    assert restored_docs <= {d["document_id"] for d in source_now["documents"]}
    assert len(restored_docs) == manifest["tables"]["documents"]["rows"]
    await chat(copy, member_copy)
    await copy.close()  # before its database is dropped


async def backed_up(avatarstack_client: Any, tmp_path: Path) -> tuple[Any, Path]:
    source = await start(avatarstack_client, tmp_path / "source", {})
    editor = await login(source, "ed@example.com", "editor")
    await ingest(source, editor, MANUAL_V1)
    await build(source, editor)
    archive = tmp_path / "backup.tar.gz"
    await operations.backup(source.server.app[CONTAINER].settings(), archive)
    return source, archive


async def test_restore_refuses_live_data_without_force_and_a_held_data_dir(
    avatarstack_client: Any, tmp_path: Path
) -> None:
    source, archive = await backed_up(avatarstack_client, tmp_path)
    settings = source.server.app[CONTAINER].settings()
    with pytest.raises(ConflictError, match=r"holds .*chroma; stop it before restoring"):
        await operations.restore(settings, archive, force=True)
    await source.close()  # the server stops and releases the data dir
    with pytest.raises(ConflictError, match=r"already holds data \(users 1.*pass --force"):
        await operations.restore(settings, archive)
    result = await operations.restore(settings, archive, force=True)
    assert result.rows["users"] == 1
    with pytest.raises(ConflictError, match="exists; give the backup a new file name"):
        await operations.backup(settings, archive)


def rewritten(archive: Path, target: Path, **changes: Any) -> Path:
    """A copy of ``archive`` whose manifest has ``changes``."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            data = source.extractfile(member)
            content = data.read() if data else b""
            if member.name == operations.MANIFEST:
                manifest = json.loads(content)
                for key, value in changes.items():
                    if key == "migrations":
                        manifest["database"]["migrations"] = value
                    else:
                        manifest[key] = value
                content = json.dumps(manifest).encode()
            member.size = len(content)
            out.addfile(member, io.BytesIO(content))
    return target


async def test_restore_checks_the_format_version_the_migration_level_and_checksums(
    avatarstack_client: Any, tmp_path: Path
) -> None:
    source, archive = await backed_up(avatarstack_client, tmp_path)
    settings = source.server.app[CONTAINER].settings()
    fresh = settings.model_copy(update={"data_dir": tmp_path / "fresh"})
    future = rewritten(archive, tmp_path / "future.tar.gz", format_version=99)
    with pytest.raises(InvalidInputError, match="archive format version 99; this release reads"):
        await operations.restore(fresh, future)
    older = rewritten(archive, tmp_path / "older.tar.gz", migrations=["0001"])
    with pytest.raises(InvalidInputError, match="at migration level"):
        await operations.restore(fresh, older)
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive, "r:gz") as source_tar, tarfile.open(damaged, "w:gz") as out:
        for member in source_tar.getmembers():
            data = source_tar.extractfile(member)
            content = data.read() if data else b""
            if member.name == operations.DATABASE_FILE:
                content = content[:-1] + bytes([content[-1] ^ 1])
            out.addfile(member, io.BytesIO(content))
    with pytest.raises(InvalidInputError, match=r"damaged: database\.sqlite3"):
        await operations.restore(fresh, damaged)
    not_ours = tmp_path / "not-ours.tar.gz"
    not_ours.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(InvalidInputError, match="is not an avatarstack backup"):
        await operations.restore(fresh, not_ours)


def test_the_commands_print_one_line_and_refuse_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("AVATARSTACK_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVATARSTACK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AVATARSTACK_LOAD_PLUGINS", "")
    runner = CliRunner()
    created = runner.invoke(cli, ["users", "create", "a@example.com", "--role", "admin"])
    assert created.exit_code == 0, created.output
    made = runner.invoke(cli, ["backup", str(tmp_path / "b.tar.gz")])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE((tmp_path / "b.tar.gz").stat().st_mode) == 0o600
    assert made.stdout.startswith(f"backup {tmp_path / 'b.tar.gz'}: ")
    refused = runner.invoke(cli, ["restore", str(tmp_path / "b.tar.gz")])
    assert refused.exit_code == 1
    assert refused.output.strip().startswith("Error: ")
    assert "pass --force" in refused.output
    assert "Traceback" not in refused.output
    forced = runner.invoke(cli, ["restore", "--force", str(tmp_path / "b.tar.gz")])
    assert forced.exit_code == 0, forced.output
    missing = runner.invoke(cli, ["restore", str(tmp_path / "nope.tar.gz")])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"Error: {tmp_path / 'nope.tar.gz'} does not exist"


@pytest.mark.postgres
@pytest.mark.parametrize("direction", ["sqlite-to-postgres", "postgres-to-sqlite"])
async def test_an_archive_restores_into_the_other_backend(
    empty_postgres_database: str,
    avatarstack_client: Any,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    direction: str,
) -> None:
    source_db = await database_settings(request, direction.split("-")[0])
    source = await start(avatarstack_client, tmp_path / "source", source_db)
    editor, member, _, conversation = await in_use(source)
    before = await state(source, editor, member, conversation)
    settings = source.server.app[CONTAINER].settings()
    archive = tmp_path / "backup.tar.gz"
    await operations.backup(settings, archive)
    await source.close()

    target_url = empty_postgres_database if direction.endswith("postgres") else None
    target = settings.model_copy(
        update={"data_dir": tmp_path / "restored", "database_url": target_url}
    )
    await operations.restore(target, archive)
    copy = await start(
        avatarstack_client,
        tmp_path / "restored",
        {"database_url": target_url} if target_url else {},
    )
    after = await state(
        copy,
        await logged_in(copy, "ed@example.com"),
        await logged_in(copy, "mo@example.com"),
        conversation,
    )
    assert after == before
    await copy.close()


async def test_without_an_index_copy_restore_rebuilds_the_generations_from_the_database(
    avatarstack_client: Any, tmp_path: Path
) -> None:
    """A deployment whose index lives elsewhere (here the in-process store; in production a
    Chroma server) archives the database only; restore rebuilds every ready generation from
    its chunks and the embedding cache, and searches answer as before."""
    source = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, data_dir=tmp_path / "source"
    )
    _, member, generation, _ = await in_use(source)
    found = await search(source, member, QUESTION, k=5)
    archive = tmp_path / "backup.tar.gz"
    result = await operations.backup(source.server.app[CONTAINER].settings(), archive)
    assert result.manifest["index"]["kind"] == "none"

    target = (
        source.server.app[CONTAINER]
        .settings()
        .model_copy(update={"data_dir": tmp_path / "restored", "kb": KbSettings()})
    )
    restored = await operations.restore(target, archive)
    assert restored.rebuilt == [generation]
    assert not restored.index_copied
    copy = await start(avatarstack_client, tmp_path / "restored", {})
    again = await search(copy, await logged_in(copy, "mo@example.com"), QUESTION, k=5)
    assert again["generation_id"] == found["generation_id"]
    assert [r["chunk_id"] for r in again["results"]] == [r["chunk_id"] for r in found["results"]]
