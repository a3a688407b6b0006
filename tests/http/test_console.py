"""The web console is served from the package: its pages answer index.html, its assets come
from /console/, nothing outside the static folder can be reached, and every response carries
the security headers (the console's CSP on console responses, the API's elsewhere)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avatarstack.adapters.http.console import CONSOLE, PAGES
from avatarstack.adapters.http.headers import API_CSP
from avatarstack.adapters.http.server import ProblemAppRunner
from avatarstack.bootstrap import build_container, create_app
from avatarstack.plugins.manager import make_plugin_manager

INDEX = "<!doctype html><title>avatarstack</title><script type=module src=/console/js/app.js>"


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "js").mkdir(parents=True)
    (root / "vendor" / "livekit-client").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "js" / "app.js").write_text("export const ok = true;\n")
    (root / "vendor" / "livekit-client" / "livekit-client.esm.mjs").write_text("export {};\n")
    (root / ".hidden").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside the static folder")
    (root / "js" / "escape.js").symlink_to(tmp_path / "outside.txt")
    return root


@pytest.fixture
def make_console(
    aiohttp_client: Any, avatarstack_settings: Callable[..., Any], static_dir: Path
) -> Callable[..., Any]:
    async def make(**settings: Any) -> Any:
        container = build_container(
            avatarstack_settings(**settings),
            plugin_manager=make_plugin_manager(load_entrypoints=False),
        )
        app = create_app(container=container, setup_logging=False)
        app[CONSOLE] = dataclasses.replace(app[CONSOLE], static_dir=static_dir)
        return await aiohttp_client(app)

    return make


@pytest.mark.parametrize("path", [p.replace("{conversation_id}", "c-123") for p in PAGES])
async def test_every_page_path_answers_the_index(make_console: Any, path: str) -> None:
    client = await make_console()
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.text() == INDEX


@pytest.mark.parametrize("path", ["/", "/login", "/chat/c-123", "/console/js/app.js"])
async def test_head_answers_a_page_or_asset_with_its_headers_and_no_body(
    make_console: Any, path: str
) -> None:
    client = await make_console()
    got = await client.get(path)

    head = await client.head(path)

    assert head.status == 200
    assert await head.read() == b""
    for name in ("Content-Type", "Content-Length", "ETag", "Content-Security-Policy"):
        assert head.headers[name] == got.headers[name], name


async def test_head_of_a_missing_asset_is_a_404_and_other_methods_still_405(
    make_console: Any,
) -> None:
    client = await make_console()

    assert (await client.head("/console/js/missing.js")).status == 404
    refused = await client.post("/login")
    assert refused.status == 405
    assert {m.strip() for m in refused.headers["Allow"].split(",")} == {"GET", "HEAD"}


async def test_the_index_is_revalidated_with_its_etag(make_console: Any) -> None:
    client = await make_console()
    first = await client.get("/login")
    etag = first.headers["ETag"]
    assert first.headers["Last-Modified"]
    again = await client.get("/login", headers={"If-None-Match": etag})
    assert again.status == 304


async def test_assets_come_from_the_console_folder_with_exact_types(make_console: Any) -> None:
    client = await make_console()
    script = await client.get("/console/js/app.js")
    assert script.status == 200
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    module = await client.get("/console/vendor/livekit-client/livekit-client.esm.mjs")
    assert module.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "max-age" in module.headers["Cache-Control"]


@pytest.mark.parametrize(
    "path",
    [
        "/console/../outside.txt",
        "/console/%2e%2e/outside.txt",
        "/console/js/..%2f..%2foutside.txt",
        "/console/.hidden",
        "/console/js/escape.js",
        "/console/js/missing.js",
        "/console/js",
        "/console/js%5capp.js",
    ],
)
async def test_nothing_outside_the_console_files_is_served(make_console: Any, path: str) -> None:
    client = await make_console()
    response = await client.get(path)
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "outside" not in await response.text()


async def test_unknown_paths_still_answer_the_api_404(make_console: Any) -> None:
    client = await make_console()
    response = await client.get("/nowhere")
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")


async def test_a_disabled_console_answers_404_problems(make_console: Any) -> None:
    client = await make_console(console={"enabled": False})
    for path in ("/", "/console/js/app.js"):
        response = await client.get(path)
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("application/problem+json")


async def test_the_console_config_names_provider_module_and_voice_input(
    make_console: Any,
) -> None:
    client = await make_console()
    response = await client.get("/api/v1/console/config")
    assert response.status == 200
    config = await response.json()
    # the upload picker offers exactly what the registered parsers read
    assert {".pdf", "application/pdf", ".md", ".txt", "text/plain"} <= set(config["upload_types"])
    assert ".docx" not in config["upload_types"]
    assert config | {"upload_types": None} == {
        "avatar_provider": "text",
        "livekit_client_url": "/console/vendor/livekit-client/livekit-client.esm.mjs",
        "voice_input": "browser",
        "version": "0.1.0",
        "upload_types": None,
    }


async def test_console_responses_carry_the_console_csp(make_console: Any) -> None:
    client = await make_console()
    response = await client.get("/chat")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert "style-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert f"ws://{client.host}:{client.port}" in csp
    assert "wss://*.livekit.cloud https://*.livekit.cloud" in csp
    assert "'unsafe-inline'" not in csp


async def test_a_livekit_module_on_another_origin_is_allowed_as_a_script(
    make_console: Any,
) -> None:
    client = await make_console(
        console={
            "livekit_client_url": "https://cdn.example.org/livekit/livekit-client.esm.mjs",
            "livekit_connect_src": ["wss://rooms.example.org"],
        }
    )
    csp = (await client.get("/")).headers["Content-Security-Policy"]
    assert "script-src 'self' https://cdn.example.org;" in csp
    assert "wss://rooms.example.org" in csp
    assert "livekit.cloud" not in csp
    config = await (await client.get("/api/v1/console/config")).json()
    assert config["livekit_client_url"].startswith("https://cdn.example.org/")


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/console/config", "/nowhere", "/login"])
async def test_every_response_carries_the_security_headers(make_console: Any, path: str) -> None:
    client = await make_console()
    response = await client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Server"] == "avatarstack"
    assert "Strict-Transport-Security" not in response.headers
    if path != "/login":
        assert response.headers["Content-Security-Policy"] == API_CSP


async def test_hsts_is_sent_when_the_public_url_is_https(make_console: Any) -> None:
    client = await make_console(public_url="https://avatars.example.org")
    response = await client.get("/healthz")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    page = await client.get("/chat")
    assert "wss://" in page.headers["Content-Security-Policy"]


# ------------------------------------------------------------ aiohttp's own (low-level) errors


@pytest.fixture
async def raw_server(avatarstack_settings: Callable[..., Any]) -> Any:
    """The application behind ProblemAppRunner on a free port (as `serve` runs it)."""
    from aiohttp import web

    container = build_container(
        avatarstack_settings(), plugin_manager=make_plugin_manager(load_entrypoints=False)
    )
    runner = ProblemAppRunner(create_app(container=container, setup_logging=False))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port
    await runner.cleanup()


async def _raw(port: int, request: bytes) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header <script>: y\r\n\r\n", 400),
        (b"GET /" + b"a" * 20000 + b"<script> HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"<script>" * 2000 + b"\r\n\r\n", 400),
        (b"\x16\x03\x01<script>garbage\r\n\r\n", 400),
    ],
)
async def test_requests_aiohttp_cannot_parse_answer_a_problem_without_echo(
    raw_server: int, request_bytes: bytes, status: int
) -> None:
    head, body = await _raw(raw_server, request_bytes)
    assert head.split(" ", 2)[1] == str(status)
    assert "Content-Type: application/problem+json" in head
    assert "X-Content-Type-Options: nosniff" in head
    assert "Server: avatarstack\r\n" in head + "\r\n"
    assert b"<script>" not in body
    assert b'"status": ' + str(status).encode() in body
