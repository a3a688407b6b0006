"""A small protocol-v1 client for the realtime tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

WS = "/api/v1/ws"


class Tab:
    """One browser tab: a socket with the frames it received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.conversation_id: str | None = None

    async def send(self, type_: str, data: dict[str, Any] | None = None, **extra: Any) -> None:
        await self.ws.send_str(json.dumps({"type": type_, "data": data or {}, **extra}))

    async def next(self, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
        message = await self.ws.receive(timeout=timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {message.type} {message.data!r}")
        frame = json.loads(message.data)
        self.frames.append(frame)
        return dict(frame)

    async def until(self, type_: str, within: float = 10, **match: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            frame = await self.next(timeout=max(0.01, deadline - loop.time()))
            if frame["type"] == type_ and all(frame["data"].get(k) == v for k, v in match.items()):
                return frame

    async def closed(self, timeout: float = 10) -> int | None:  # noqa: ASYNC109
        """Read until the server closes; the close code."""
        while True:
            message = await self.ws.receive(timeout=timeout)
            if message.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}:
                return self.ws.close_code
            if message.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))

    async def open(self, conversation_id: str | None = None, after_seq: int | None = None) -> dict:
        data: dict[str, Any] = {}
        if conversation_id is not None:
            data["conversation_id"] = conversation_id
        if after_seq is not None:
            data["after_seq"] = after_seq
        await self.send("conversation.open", data, id="open-1")
        opened = await self.until("conversation.opened")
        self.conversation_id = opened["conversation_id"]
        return opened

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if "seq" in f]


async def connect(client: Any, token: str) -> Tab:
    ws = await client.ws_connect(WS, protocols=("avatarstack.v1",))
    tab = Tab(ws)
    await tab.send("auth", {"token": token})
    ready = await tab.next()
    assert ready["type"] == "ready", ready
    return tab


async def token_of(client: Any, email: str, role: str = "member") -> str:
    from kb_helpers import login

    headers = await login(client, email, role)
    return headers["Authorization"].split(" ", 1)[1]
