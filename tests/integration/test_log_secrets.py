"""Secrets never reach the logs, in any format or level: a real ``avatarstack serve`` signs a user
in, refuses a wrong password, and (on PostgreSQL) lives through an outage of its database,
while everything it writes is captured. The captured output holds none of: the database
password, the user's plaintext passwords, the access and refresh tokens, the stored password
hash and the stored refresh-token hashes.

PostgreSQL is a throwaway cluster with password authentication that the test starts and stops
itself, never the shared server."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from avatarstack.testkit.postgres import PostgresCluster
from avatarstack.testkit.serve import ServedApp

PASSWORD = "plaintext-Passw0rd-that-must-never-be-logged"
WRONG = "wrong-Passw0rd-that-must-never-be-logged-either"


async def stored_secrets_postgres(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        hashes = await conn.fetch("SELECT password_hash FROM users WHERE password_hash IS NOT NULL")
        tokens = await conn.fetch("SELECT token_hash FROM refresh_tokens")
    finally:
        await conn.close()
    return [r["password_hash"] for r in hashes] + [r["token_hash"] for r in tokens]


def stored_secrets_sqlite(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        hashes = db.execute("SELECT password_hash FROM users WHERE password_hash IS NOT NULL")
        found = [row[0] for row in hashes]
        found += [row[0] for row in db.execute("SELECT token_hash FROM refresh_tokens")]
    return found


async def sign_in_and_fail(url: str, email: str) -> list[str]:
    """A good login, a refresh, a wrong password; the token values the server handed out."""
    async with aiohttp.ClientSession(url) as http:
        good = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert good.status == 200, await good.text()
        tokens = await good.json()
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status == 200, await refreshed.text()
        newer = await refreshed.json()
        bad = await http.post("/api/v1/auth/login", json={"email": email, "password": WRONG})
        assert bad.status == 401
        me = await http.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {newer['access_token']}"}
        )
        assert me.status == 200
    return [tokens[k] for k in ("access_token", "refresh_token")] + [
        newer[k] for k in ("access_token", "refresh_token")
    ]


async def through_an_outage(url: str, email: str, cluster: PostgresCluster) -> None:
    """Stop the database for a few seconds while requests keep coming (a login with the
    plaintext password among them), then start it again."""
    cluster.stop()
    try:
        async with aiohttp.ClientSession(url) as http:
            ends = time.monotonic() + 4
            while time.monotonic() < ends:
                for body in (
                    {"email": email, "password": PASSWORD},
                    {"email": email, "password": WRONG},
                ):
                    response = await http.post("/api/v1/auth/login", json=body)
                    assert response.status == 503, await response.text()
                await asyncio.sleep(0.3)
    finally:
        cluster.start()


def leaks(output: str, secrets: list[str]) -> list[str]:
    """The lines of ``output`` that hold one of ``secrets``."""
    return [line[:300] for line in output.splitlines() if any(s and s in line for s in secrets)]


@pytest.mark.parametrize("log_format", ["console", "json"])
@pytest.mark.parametrize("level", ["debug", "info"])
async def test_no_secret_reaches_the_log_on_postgresql_through_an_outage(
    throwaway_postgres: PostgresCluster, tmp_path: Path, log_format: str, level: str
) -> None:
    app = ServedApp(
        tmp_path,
        settings={
            "AVATARSTACK_DATABASE_URL": throwaway_postgres.url,
            "AVATARSTACK_LOG_FORMAT": log_format,
            "AVATARSTACK_LOG_LEVEL": level,
            "AVATARSTACK_DATABASE__CONNECT_TIMEOUT": "1",
            "AVATARSTACK_DATABASE__ACQUIRE_TIMEOUT": "1",
            "AVATARSTACK_DATABASE__COMMAND_TIMEOUT": "2",
        },
    )
    email = f"owner-{log_format}-{level}@logs.test"
    app.create_user(email, PASSWORD, "member")
    app.start()
    try:
        tokens = await sign_in_and_fail(app.url, email)
        stored = await stored_secrets_postgres(throwaway_postgres.url)
        await through_an_outage(app.url, email, throwaway_postgres)
    finally:
        app.stop()
    output = app.output()
    assert "database" in output  # the outage was logged
    secrets = [throwaway_postgres.password, PASSWORD, WRONG, *tokens, *stored]
    assert leaks(output, secrets) == []


@pytest.mark.parametrize("log_format", ["console", "json"])
async def test_no_secret_reaches_the_log_on_sqlite_at_debug_level(
    tmp_path: Path, log_format: str
) -> None:
    app = ServedApp(
        tmp_path,
        settings={"AVATARSTACK_LOG_FORMAT": log_format, "AVATARSTACK_LOG_LEVEL": "debug"},
    )
    app.create_user("owner@logs.test", PASSWORD, "member")
    app.start()
    try:
        tokens = await sign_in_and_fail(app.url, "owner@logs.test")
    finally:
        app.stop()
    stored = stored_secrets_sqlite(tmp_path / "data" / "avatarstack.db")
    assert len(stored) >= 3
    assert leaks(app.output(), [PASSWORD, WRONG, *tokens, *stored]) == []
