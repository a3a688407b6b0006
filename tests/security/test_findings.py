"""One case per finding of issue 13 (an outside attack-and-fault run), against a real server.

Finding 2 (a frozen PostgreSQL) needs a cluster of its own: its case is the ``frozen`` run of
``tests/faults/test_postgres_faults.py::test_a_database_outage_answers_503_within_the_bound_and_recovers``,
which also checks finding 9's driver class names on PostgreSQL.
Every finding's fix is in place; a case marked with ``pending(n)`` (``xfail(strict=True)``)
would document one still being written, and fails the suite the day the fix arrives.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from security_kit import (
    API,
    PROBLEM,
    assert_problem,
    authenticated,
    bearer,
    closed_with,
    email_of,
    login,
    next_error,
    next_frame,
    next_ip,
    password_of,
)

from avatarstack.core import accounts
from avatarstack.testkit.serve import ServedApp


def pending(finding: int) -> pytest.MarkDecorator:
    """A finding whose fix is still being written on this branch."""
    return pytest.mark.xfail(strict=True, reason=f"finding {finding}: fix pending on this branch")


REPO = Path(__file__).resolve().parents[2]


def user(server: ServedApp, name: str, role: str = "member") -> str:
    email = f"{name}@security.example.com"
    server.create_user(email, password_of(email), role)
    return email


# =========================================================================== 1: secrets in logs


async def test_finding_1_debug_logs_hold_no_password_token_or_hash(tmp_path: Path) -> None:
    app = ServedApp(
        tmp_path,
        settings={"AVATARSTACK_LOG_LEVEL": "debug", "AVATARSTACK_LOG_FORMAT": "console"},
    )
    app.start()
    try:
        password = "a plaintext password that must never be logged"
        app.create_user("logged@example.com", password, "member")
        async with aiohttp.ClientSession(app.url) as http:
            tokens = await login(http, "logged@example.com", password)
            wrong = await http.post(
                f"{API}/auth/login",
                json={"email": "logged@example.com", "password": password + " (wrong)"},
            )
            assert wrong.status == 401
            renewed = await http.post(
                f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert renewed.status == 200
    finally:
        app.stop()
    output = app.output()
    secrets = {
        "the plaintext password": password,
        "a refresh token": tokens["refresh_token"],
        "a refresh token's hash": accounts.hash_secret(tokens["refresh_token"]),
        "an argon2 hash": "$argon2",
        "the signing secret": (app.data_dir / "secret_key").read_text().strip(),
    }
    found = [name for name, value in secrets.items() if value and value in output]
    assert found == [], f"the debug log contains {found}"


# =========================================================================== 3: large bodies


async def test_finding_3_a_valid_json_body_under_the_limit_is_accepted(
    http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    questions = [  # ~200 KB
        {"question": f"question {n} " + "q" * 360, "expected_phrase": "q"} for n in range(500)
    ]
    response = await http.put(
        f"{API}/kb/golden-set", json={"questions": questions}, headers=bearer(tokens["editor"])
    )
    assert response.status == 200, (await response.text())[:300]


async def test_finding_3_a_chunked_body_over_the_limit_is_413(
    http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    async def chunks() -> Any:
        yield b'{"questions": [{"question": "'
        for _ in range(24):
            yield b"q" * 65536
        yield b'"}]}'

    response = await http.put(
        f"{API}/kb/golden-set",
        data=chunks(),
        headers={**bearer(tokens["editor"]), "Content-Type": "application/json"},
    )
    await assert_problem(response, 413)


# =========================================================================== 4: lockout


async def test_finding_4_failures_from_many_addresses_do_not_lock_the_owner_out(
    server: ServedApp,
) -> None:
    email = user(server, "lockout-victim")
    # the owner's browser keeps its cookies (aiohttp keeps none for an IP address unless unsafe)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(server.url, cookie_jar=jar) as owner:
        await login(owner, email)  # a sign-in from this client before the attack
        async with aiohttp.ClientSession(server.url) as attacker:
            for _ in range(12):
                response = await attacker.post(
                    f"{API}/auth/login",
                    json={"email": email, "password": "guessing wrong"},
                    headers={"X-Forwarded-For": next_ip()},
                )
                assert response.status in {401, 429}
        response = await owner.post(
            f"{API}/auth/login",
            json={"email": email, "password": password_of(email)},
            headers={"X-Forwarded-For": next_ip()},
        )
        assert response.status == 200, await response.text()


# =========================================================================== 5: pre-account hijack


async def test_finding_5_a_password_set_before_the_address_was_proven_does_not_survive(
    http: aiohttp.ClientSession,
) -> None:
    email = "hijack-victim@security.example.com"
    attacker_password = "the attacker's own password"
    registered = await http.post(
        f"{API}/auth/register",
        json={"email": email, "password": attacker_password},
        headers={"X-Forwarded-For": next_ip()},
    )
    assert registered.status == 202
    # the verification mail goes to the victim's inbox (development answers show its link)
    link = (await registered.json())["verification_url"]
    victim = await http.post(
        f"{API}/auth/register",
        json={"email": email, "password": "the victim's own password"},
        headers={"X-Forwarded-For": next_ip()},
    )
    assert victim.status == 202
    # both mails reach the victim; whichever link the victim follows, the attacker is out
    newest = (await victim.json()).get("verification_url") or link
    for url in (link, newest):
        token = parse_qs(urlsplit(url).query)["token"][0]
        await http.post(f"{API}/auth/verify", json={"token": token})
    response = await http.post(
        f"{API}/auth/login",
        json={"email": email, "password": attacker_password},
        headers={"X-Forwarded-For": next_ip()},
    )
    await assert_problem(response, 401)


# =========================================================================== 6: huge numbers


@pytest.mark.parametrize(
    ("path", "role"),
    [
        (f"{API}/kb/documents?offset=9223372036854775808", "member"),
        (f"{API}/conversations?offset=9223372036854775808", "member"),
        (f"{API}/admin/users?offset=9223372036854775808", "admin"),
        (f"{API}/admin/audit?before_id=9223372036854775808", "admin"),
    ],
)
async def test_finding_6_a_number_beyond_64_bits_is_a_422(
    path: str, role: str, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    await assert_problem(await http.get(path, headers=bearer(tokens[role])), 422)


# =========================================================================== 7: headers


async def test_finding_7_every_response_carries_the_security_headers(
    http: aiohttp.ClientSession,
) -> None:
    for path in ("/healthz", f"{API}/nothing-here"):
        headers = (await http.get(path)).headers
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert "Referrer-Policy" in headers, path
        assert "X-Frame-Options" in headers or "frame-ancestors" in headers.get(
            "Content-Security-Policy", ""
        ), path


async def test_finding_7_token_responses_are_not_cached(
    server: ServedApp, http: aiohttp.ClientSession
) -> None:
    response = await http.post(
        f"{API}/auth/login",
        json={"email": email_of("member"), "password": password_of(email_of("member"))},
        headers={"X-Forwarded-For": next_ip()},
    )
    assert response.status == 200
    assert "no-store" in response.headers.get("Cache-Control", "")


async def test_finding_7_the_server_header_reveals_no_versions(
    http: aiohttp.ClientSession,
) -> None:
    server_header = (await http.get("/healthz")).headers.get("Server", "")
    assert "Python" not in server_header
    assert "aiohttp" not in server_header


async def test_finding_7_a_malformed_request_is_a_problem_that_echoes_nothing(
    server: ServedApp,
) -> None:
    secret = "SECRETBEARERVALUE" * 600  # past aiohttp's 8190-byte header line limit
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"GET {API}/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\r\n".encode()
    )
    await writer.drain()
    answer = (await asyncio.wait_for(reader.read(65536), 10)).decode(errors="replace")
    writer.close()
    head, _, body = answer.partition("\r\n\r\n")
    # the request's version was never parsed: the answer may say HTTP/1.0
    assert re.match(r"HTTP/1\.[01] 4\d\d ", head), head
    assert PROBLEM in head
    assert "SECRETBEARER" not in body


async def test_finding_7_a_path_with_an_encoded_newline_is_a_problem_404(
    http: aiohttp.ClientSession,
) -> None:
    # found by the fuzzer: aiohttp answers these itself, in text/plain, before any middleware
    response = await http.get(f"{API}/kb/jobs/%0A%7B")
    await assert_problem(response, 404)


# =========================================================================== 8: concurrent refresh


async def test_finding_8_concurrent_refreshes_keep_the_session(
    server: ServedApp, http: aiohttp.ClientSession
) -> None:
    email = user(server, "many-tabs")
    first = await login(http, email)
    responses = await asyncio.gather(
        *(
            http.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
            for _ in range(4)
        )
    )
    assert [r.status for r in responses] == [200] * 4
    successors = {(await r.json())["refresh_token"] for r in responses}
    assert len(successors) == 1, "every tab gets the same successor"
    again = await http.post(f"{API}/auth/refresh", json={"refresh_token": successors.pop()})
    assert again.status == 200, await again.text()


# =========================================================================== 9: small ones


async def test_finding_9_a_patch_without_display_name_leaves_it_unchanged(
    server: ServedApp, http: aiohttp.ClientSession
) -> None:
    headers = bearer((await login(http, user(server, "named")))["access_token"])
    assert (
        await http.patch(f"{API}/users/me", json={"display_name": "Ada"}, headers=headers)
    ).status == 200
    response = await http.patch(f"{API}/users/me", json={}, headers=headers)
    assert response.status == 200
    assert (await response.json())["display_name"] == "Ada"


async def test_finding_9_a_user_without_roles_is_refused(
    server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    target = bearer((await login(http, user(server, "roleless")))["access_token"])
    user_id = (await (await http.get(f"{API}/users/me", headers=target)).json())["id"]
    response = await http.put(
        f"{API}/admin/users/{user_id}/roles", json={"roles": []}, headers=bearer(tokens["admin"])
    )
    await assert_problem(response, 422)


async def test_finding_9_after_seq_true_is_not_taken_as_1(
    server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    ws = await authenticated(http, server.ws_url, tokens["member"])
    try:
        await ws.send_json({"type": "conversation.open", "id": "o", "data": {"after_seq": True}})
        frame = await next_frame(ws, "error", "conversation.opened")
        assert frame["type"] == "error", frame
        assert frame["data"]["code"] in {"invalid", "validation-error"}
    finally:
        await ws.close()


def test_finding_9_the_sqlite_file_is_private_to_its_owner(server: ServedApp) -> None:
    mode = stat.S_IMODE(os.stat(server.data_dir / "avatarstack.db").st_mode)
    assert mode & 0o077 == 0, oct(mode)


async def test_finding_9_a_logout_closes_the_sessions_sockets_at_once(
    server: ServedApp, http: aiohttp.ClientSession
) -> None:
    token = (await login(http, user(server, "socket-leaver")))["access_token"]
    ws = await authenticated(http, server.ws_url, token)
    assert (await http.post(f"{API}/auth/logout", headers=bearer(token))).status == 204
    started = asyncio.get_running_loop().time()
    assert await closed_with(ws) in {4401, 4403}
    assert asyncio.get_running_loop().time() - started < 5


def test_finding_9_the_operators_guide_names_the_avatar_capacity_levers() -> None:
    guide = (REPO / "docs" / "operators.md").read_text()
    assert "AVATARSTACK_AVATAR__SESSIONS_TOTAL" in guide
    assert "AVATARSTACK_AVATAR__SESSIONS_PER_USER" in guide


def test_finding_9_a_broken_embedder_setting_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("hello")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    env.update(
        AVATARSTACK_DATA_DIR=str(tmp_path / "data"),
        AVATARSTACK_LOAD_PLUGINS="",
        AVATARSTACK_KB__EMBEDDER=f"st:{tmp_path / 'no-model'}",
    )
    result = subprocess.run(
        [sys.executable, "-m", "avatarstack", "ingest", str(tmp_path / "doc.txt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "AVATARSTACK_KB__" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_finding_9_the_error_frame_of_a_socket_carries_no_driver_names(
    server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    ws = await authenticated(http, server.ws_url, tokens["member"])
    try:
        await ws.send_json(
            {"type": "conversation.open", "id": "o", "data": {"conversation_id": "\x00" * 10}}
        )
        error = await next_error(ws)
        assert "Error" not in error["message"], error
    finally:
        await ws.close()
