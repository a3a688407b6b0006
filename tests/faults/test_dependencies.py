"""The vector store and the mail server failing under a real ``avatarstack serve``: a Chroma
server killed and restarted (search answers 503, then recovers on its own), and an SMTP server
that refuses (registration still answers 202 and the verification mail is retried until the
server takes it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from fault_kit import (
    API,
    EDITOR,
    PASSWORD,
    PROBLEM,
    bearer,
    job_finishes,
    login,
    upload,
    words_document,
)

from avatarstack.testkit.chroma import ChromaServer, restart_chroma_server, start_chroma_server
from avatarstack.testkit.serve import ServedApp, free_port

#: service must be back this soon after the dependency is (generous on a busy machine)
RECOVERY_CEILING = 30.0

# =========================================================================== Chroma


@pytest.fixture
def chroma() -> Iterator[list[ChromaServer]]:
    """The running Chroma server as the only item of a list (a restart replaces it)."""
    servers = [start_chroma_server()]
    try:
        yield servers
    finally:
        servers[-1].close()


async def test_a_killed_chroma_server_gives_503_then_search_recovers_after_its_restart(
    chroma: list[ChromaServer], tmp_path: Path
) -> None:
    app = ServedApp(tmp_path, settings={"AVATARSTACK_KB__CHROMA_URL": chroma[0].url})
    app.start()
    try:
        app.create_user(EDITOR, PASSWORD, "editor")
        async with aiohttp.ClientSession(app.url) as http:
            token = await login(http)
            document = await upload(http, token, "a.txt", words_document(5, 30, "narwhal"))
            assert (await job_finishes(http, token, document["job_id"], 60))["status"] == (
                "succeeded"
            )
            built = await http.post(
                f"{API}/kb/generations", json={"activate": "yes"}, headers=bearer(token)
            )
            assert (await job_finishes(http, token, (await built.json())["job_id"], 60))[
                "status"
            ] == "succeeded"
            query = {"json": {"query": "narwhal", "k": 3}, "headers": bearer(token)}
            assert (await http.post(f"{API}/kb/search", **query)).status == 200

            chroma[0].process.kill()
            chroma[0].process.wait(timeout=10)
            began = time.monotonic()
            async with http.post(f"{API}/kb/search", **query) as down:
                body = await down.text()
                assert down.status == 503, body
                assert down.content_type == PROBLEM
                assert down.headers.get("Retry-After")
            answered_in = time.monotonic() - began
            assert answered_in < 15, f"the 503 took {answered_in:.1f} s"

            chroma.append(restart_chroma_server(chroma.pop()))
            back = time.monotonic()
            while True:
                async with http.post(f"{API}/kb/search", **query) as response:
                    if response.status == 200:
                        results = (await response.json())["results"]
                        break
                    assert response.status == 503, await response.text()
                assert time.monotonic() - back < RECOVERY_CEILING, "search did not recover"
                await asyncio.sleep(0.2)
            recovery = time.monotonic() - back
            assert results[0]["document_id"] == document["document_id"]
    finally:
        app.stop()
    print(
        f"Chroma killed: 503 in {answered_in:.2f} s; search back {recovery:.2f} s after Chroma "
        "answered its heartbeat again"
    )


# =========================================================================== SMTP


class RefusingHandler:
    """Answers 451 (try again later) to the first ``refusals`` messages, then accepts."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.attempts = 0
        self.delivered: list[str] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.attempts <= self.refusals:
            return "451 4.3.0 mailbox busy, try again later"
        self.delivered.append(envelope.content.decode(errors="replace"))
        self.arrived.set()
        return "250 2.0.0 OK"


def smtp_settings(port: int) -> dict[str, str]:
    return {
        "AVATARSTACK_MAIL__BACKEND": "smtp",
        "AVATARSTACK_MAIL__SMTP_HOST": "127.0.0.1",
        "AVATARSTACK_MAIL__SMTP_PORT": str(port),
        "AVATARSTACK_MAIL__SMTP_STARTTLS": "false",
        "AVATARSTACK_MAIL__SMTP_TIMEOUT": "2",
    }


async def register(app: ServedApp, email: str) -> float:
    """Registers ``email``; the seconds the 202 took."""
    async with aiohttp.ClientSession(app.url) as http:
        began = time.monotonic()
        response = await http.post(
            f"{API}/auth/register", json={"email": email, "password": "a long passphrase here"}
        )
        assert response.status == 202, await response.text()
        return time.monotonic() - began


def delivered_within(handler: RefusingHandler, seconds: float) -> bool:
    return handler.arrived.wait(seconds)


async def test_a_refusing_mail_server_does_not_fail_registration_and_the_mail_is_retried(
    tmp_path: Path,
) -> None:
    refusals = 2
    handler = RefusingHandler(refusals)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    app = ServedApp(tmp_path, settings=smtp_settings(controller.port))
    app.start()
    try:
        took = await register(app, "newcomer@example.com")
        assert took < 5, "the answer does not wait for the mail"
        arrived = await asyncio.to_thread(delivered_within, handler, 30)
        assert arrived, f"no mail after {handler.attempts} attempt(s):\n{app.output()[-2000:]}"
        await asyncio.sleep(1)  # nothing more comes
    finally:
        app.stop()
        controller.stop()
    assert handler.attempts == refusals + 1
    [message] = handler.delivered
    assert "newcomer@example.com" in message
    assert "/auth/verify?token=" in message
    assert "mail_retry" in app.output()


async def test_a_mail_server_that_comes_up_late_still_gets_the_mail(tmp_path: Path) -> None:
    port = free_port()
    handler = RefusingHandler(0)
    app = ServedApp(tmp_path, settings=smtp_settings(port))
    app.start()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    try:
        await register(app, "early@example.com")  # nothing listens on the port yet
        await asyncio.sleep(1.0)
        controller.start()
        arrived = await asyncio.to_thread(delivered_within, handler, 30)
        assert arrived, f"no mail once the server came up:\n{app.output()[-2000:]}"
    finally:
        app.stop()
        controller.stop()
    assert len(handler.delivered) == 1
