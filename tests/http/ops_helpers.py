"""Helpers for the operations tests (backup, restore, copy-data): the application on a given
database and data dir, and one chat turn over the WebSocket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kb_helpers import MANUAL_V1, build, fast_hasher, ingest, login
from ws_helpers import connect

PASSWORD = "correct horse battery"
QUESTION = "how often does the machine need descaling"


async def start(avatarstack_client: Any, data_dir: Path, database: dict[str, Any]) -> Any:
    """The application on the given database and (unless ``kb`` is among the settings)
    embedded Chroma in ``data_dir``."""
    settings = {"kb": {}, **database}
    return await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, data_dir=data_dir, **settings
    )


async def chat(client: Any, headers: dict[str, str]) -> str:
    tab = await connect(client, headers["Authorization"].split(" ", 1)[1])
    opened = await tab.open()
    await tab.send("user.message", {"client_id": "m-1", "text": QUESTION})
    completed = await tab.until("answer.completed", within=20)
    assert "three months" in completed["data"]["text"]
    await tab.ws.close()
    return str(opened["conversation_id"])


async def logged_in(client: Any, email: str) -> dict[str, str]:
    """Log in with the password the test users got: the Authorization header."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def in_use(client: Any) -> tuple[dict[str, str], dict[str, str], str, str]:
    """An editor and a member; a document, an active generation and the member's conversation:
    the editor's and member's headers, the generation id and the conversation id."""
    editor = await login(client, "ed@example.com", "editor")
    member = await login(client, "mo@example.com", "member")
    await ingest(client, editor, MANUAL_V1)
    generation = await build(client, editor)
    conversation = await chat(client, member)
    return editor, member, str(generation["generation_id"]), conversation
