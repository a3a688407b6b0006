"""Several instances on one PostgreSQL database: one user's two tabs on two instances see the
same conversation (LISTEN/NOTIFY), and a server killed mid-answer loses nothing — the client
resumes on the other instance, which finishes the answer, without a gap or a duplicate."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kb_helpers import MANUAL_V1, build, fast_hasher, ingest, login
from ws_helpers import Tab

from avatarstack.testkit.openai import FakeChatCompletions

pytestmark = pytest.mark.postgres

SECRET = "s" * 48
PUBLIC_URL = "http://avatarstack.test"
QUESTION = "how often does the machine need descaling"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _connect(session: aiohttp.ClientSession, url: str, token: str) -> Tab:
    tab = Tab(await session.ws_connect(url))
    await tab.send("auth", {"token": token})
    assert (await tab.next())["type"] == "ready"
    return tab


@pytest.fixture
async def shared(postgres_database: Any, chroma_server: Any) -> dict[str, Any]:
    await postgres_database.truncate()
    return {
        "database_url": postgres_database.url,
        "kb": {"chroma_url": chroma_server.url},
        "secret_key": SECRET,
        # tokens name their issuer (the public URL): instances behind one address share it
        "public_url": PUBLIC_URL,
        "realtime": {"answer_lease_seconds": 2},
        "providers_": {"password_hasher": fast_hasher()},
    }


async def test_two_tabs_on_two_instances_see_one_conversation(
    avatarstack_client: Any, shared: dict[str, Any]
) -> None:
    one = await avatarstack_client(**shared)
    two = await avatarstack_client(**shared)
    editor = await login(one, "ed@example.com", "editor")
    await ingest(one, editor, MANUAL_V1)
    await build(one, editor)
    token = (await login(two, "mo@example.com"))["Authorization"].split(" ", 1)[1]

    a = Tab(await one.ws_connect("/api/v1/ws"))
    await a.send("auth", {"token": token})
    await a.until("ready")
    b = Tab(await two.ws_connect("/api/v1/ws"))
    await b.send("auth", {"token": token})
    await b.until("ready")
    opened = await a.open()
    await b.open(opened["conversation_id"])

    await a.send("user.message", {"client_id": "q1", "text": QUESTION})
    done_a = await a.until("answer.completed")
    done_b = await b.until("answer.completed")
    assert done_a == done_b
    assert "three months" in done_a["data"]["text"]
    assert a.seqs() == b.seqs() == list(range(1, done_a["seq"] + 1))


def _serve(tmp_path: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "avatarstack.bootstrap.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("serve did not start listening")


async def test_a_server_killed_mid_answer_loses_nothing(
    avatarstack_client: Any,
    shared: dict[str, Any],
    postgres_database: Any,
    chroma_server: Any,
    tmp_path: Path,
) -> None:
    survivor = await avatarstack_client(**shared)
    editor = await login(survivor, "ed@example.com", "editor")
    await ingest(survivor, editor, MANUAL_V1)
    await build(survivor, editor)
    token = (await login(survivor, "mo@example.com"))["Authorization"].split(" ", 1)[1]

    async with FakeChatCompletions(
        reply=["The machine needs descaling ", "every three months [1]."]
    ) as chat:
        chat.stall_after = 1  # one delta, then the model hangs: the instance is mid-answer
        port = _free_port()
        doomed = _serve(
            tmp_path,
            port,
            {
                "AVATARSTACK_DATA_DIR": str(tmp_path / "doomed"),
                "AVATARSTACK_LOAD_PLUGINS": "",
                "AVATARSTACK_DATABASE_URL": postgres_database.url,
                "AVATARSTACK_KB__CHROMA_URL": chroma_server.url,
                "AVATARSTACK_SECRET_KEY": SECRET,
                "AVATARSTACK_PUBLIC_URL": PUBLIC_URL,
                "AVATARSTACK_ANSWER__ENGINE": "openai",
                "AVATARSTACK_ANSWER__OPENAI__BASE_URL": chat.api_base_url,
                "AVATARSTACK_ANSWER__OPENAI__API_KEY": chat.api_key,
                "AVATARSTACK_ANSWER__OPENAI__MODEL": chat.model,
                "AVATARSTACK_REALTIME__ANSWER_LEASE_SECONDS": "2",
                "AVATARSTACK_LOG_LEVEL": "warning",
            },
        )
        try:
            async with aiohttp.ClientSession() as http:
                tab = await _connect(http, f"http://127.0.0.1:{port}/api/v1/ws", token)
                opened = await tab.open()
                await tab.send("user.message", {"client_id": "q1", "text": QUESTION})
                first = await tab.until("answer.delta")
                assert first["data"]["text"].startswith("The machine")
                seen = tab.seqs()[-1]
                doomed.send_signal(signal.SIGKILL)  # no goodbye, no cleanup
                doomed.wait(timeout=10)
                await tab.closed(timeout=5)
        finally:
            if doomed.poll() is None:
                doomed.kill()

        resumed = Tab(await survivor.ws_connect("/api/v1/ws"))
        await resumed.send("auth", {"token": token})
        await resumed.until("ready")
        await resumed.open(opened["conversation_id"], after_seq=seen)
        completed = await resumed.until("answer.completed", within=30)
        assert completed["data"]["reply_to"] == 1
        assert resumed.seqs() == list(range(seen + 1, completed["seq"] + 1))
        assert [*tab.seqs()] == list(range(1, seen + 1))
        await asyncio.sleep(0.5)
        history = await survivor.get(
            f"/api/v1/conversations/{opened['conversation_id']}/events",
            headers={"Authorization": f"Bearer {token}"},
        )
        types = [e["type"] for e in (await history.json())["events"]]
        assert types.count("answer.completed") == 1
        assert types.count("message.created") == 1
