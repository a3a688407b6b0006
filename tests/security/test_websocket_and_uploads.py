"""WebSocket abuse (no auth, bad token, flood, oversize, garbage frames) and hostile uploads
(path traversal and NUL file names, a decompression bomb) against a real server."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from typing import Any

import aiohttp
import pytest
from security_kit import API, assert_problem, authenticated, bearer, closed_with, next_error

from avatarstack.testkit.pdf import pdf_with_pages
from avatarstack.testkit.serve import ServedApp

# =========================================================================== WebSocket


WS_AUTH_ATTACKS = [
    pytest.param(None, 4408, id="no auth frame within the timeout: 4408"),
    pytest.param({"type": "auth", "data": {"token": "not-a-jwt"}}, 4401, id="bad token: 4401"),
    pytest.param({"type": "auth", "data": {}}, 4401, id="auth without a token: 4401"),
    pytest.param({"type": "ping", "data": {}}, 4401, id="first frame is not auth: 4401"),
    pytest.param("not json", 4401, id="first frame is not JSON: 4401"),
]


@pytest.mark.parametrize(("first", "code"), WS_AUTH_ATTACKS)
async def test_a_socket_that_does_not_authenticate_is_closed(
    first: Any, code: int, server: ServedApp, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(server.ws_url) as ws:
        if isinstance(first, dict):
            await ws.send_json(first)
        elif isinstance(first, str):
            await ws.send_str(first)
        assert await closed_with(ws) == code


async def test_a_flood_of_frames_is_refused_then_closed_with_4429(
    server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    ws = await authenticated(http, server.ws_url, tokens["member"])
    codes: list[str] = []
    try:
        for n in range(400):
            await ws.send_json({"type": "ping", "id": str(n), "data": {}})
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass
    async with asyncio.timeout(15):
        while True:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                if frame["type"] == "error":
                    codes.append(frame["data"]["code"])
            else:
                break
    assert ws.close_code == 4429
    assert "rate-limited" in codes


async def test_an_oversized_frame_closes_the_socket_with_1009(
    server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    ws = await authenticated(http, server.ws_url, tokens["member"])
    await ws.send_str(json.dumps({"type": "ping", "data": {"pad": "x" * (65 * 1024)}}))
    assert await closed_with(ws) == 1009


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b"\x00\x01binary", "binary-frame", id="binary"),
        pytest.param("{not json", "bad-frame", id="not JSON"),
        pytest.param("[1, 2, 3]", "bad-frame", id="not an envelope"),
        pytest.param('{"type": "no.such.type", "data": {}}', "unknown-type", id="unknown type"),
        pytest.param('{"type": "user.message", "data": {"text": 5}}', "invalid", id="bad data"),
    ],
)
async def test_a_garbage_frame_gets_an_error_frame_and_the_socket_stays_open(
    frame: str | bytes,
    code: str,
    server: ServedApp,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
) -> None:
    ws = await authenticated(http, server.ws_url, tokens["member"])
    try:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        assert (await next_error(ws))["code"] == code
        await ws.send_json({"type": "ping", "id": "after", "data": {}})
        assert (await ws.receive_json(timeout=10))["type"] == "pong"
    finally:
        await ws.close()


# =========================================================================== uploads


async def upload(
    http: aiohttp.ClientSession, token: str, data: bytes, filename: str, media_type: str
) -> aiohttp.ClientResponse:
    """A multipart upload written byte by byte (a client library would escape the name)."""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
        b"Content-Type: %s\r\n\r\n%s\r\n--B--\r\n" % (filename.encode(), media_type.encode(), data)
    )
    return await http.post(
        f"{API}/kb/documents",
        data=body,
        headers={**bearer(token), "Content-Type": "multipart/form-data; boundary=B"},
    )


async def finished_job(http: aiohttp.ClientSession, token: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = await (await http.get(f"{API}/kb/jobs/{job_id}", headers=bearer(token))).json()
        if job["status"] in {"succeeded", "failed"}:
            return dict(job)
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.mark.parametrize(
    "filename",
    [
        "../../../../../../tmp/avatarstack-pwned.txt",
        "..\\..\\..\\windows\\avatarstack-pwned.txt",
        "/etc/avatarstack-pwned.txt",
        "%2e%2e%2f%2e%2e%2favatarstack-pwned.txt",
    ],
)
async def test_a_path_traversal_file_name_is_kept_as_a_plain_name(
    filename: str, server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    token = tokens["editor"]
    body = f"traversal attempt {filename}".encode()
    response = await upload(http, token, body, filename, "text/plain")
    assert response.status == 202, await response.text()
    created = await response.json()
    await finished_job(http, token, created["job_id"])
    document = await (
        await http.get(f"{API}/kb/documents/{created['document_id']}", headers=bearer(token))
    ).json()
    stored = document["latest"]["filename"]
    # a name of its own, never a path: no separator survives, nothing is written outside
    assert "/" not in stored, stored
    assert "\\" not in stored, stored
    assert stored not in {".", ".."}
    assert not list(server.workdir.parent.glob("**/avatarstack-pwned.txt"))


async def test_a_nul_byte_in_a_file_name_is_a_400_problem(
    server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    response = await upload(http, tokens["editor"], b"hello nul", "a\x00b.txt", "text/plain")
    await assert_problem(response, 400)


async def test_a_decompression_bomb_pdf_fails_its_job_and_the_server_stays_up(
    server: ServedApp, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    token = tokens["editor"]
    packer = zlib.compressobj(9)
    zeros = b"\0" * (1024 * 1024)
    bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MB
    response = await upload(
        http,
        token,
        pdf_with_pages(1, bomb, b"/Filter /FlateDecode "),
        "bomb.pdf",
        "application/pdf",
    )
    assert response.status == 202, await response.text()
    job = await finished_job(http, token, (await response.json())["job_id"])
    assert job["status"] == "failed", job
    assert job["error"]
    assert "Traceback" not in json.dumps(job["error"])
    assert (await http.get("/healthz")).status == 200
