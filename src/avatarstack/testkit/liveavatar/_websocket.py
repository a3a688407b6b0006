"""The fake LiveAvatar's LITE websocket (``ws_url``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import timedelta
from typing import Any

from aiohttp import WSMsgType, web

from avatarstack.testkit.liveavatar._http import _Http
from avatarstack.testkit.liveavatar._records import (
    FakeSession,
    WebSocketMessage,
)

_LITE_COMMANDS = frozenset(
    {
        "agent.speak",
        "agent.speak_end",
        "agent.interrupt",
        "agent.start_listening",
        "agent.stop_listening",
        "session.keep_alive",
    }
)


class _LiteWebSocket(_Http):
    """The websocket behind a LITE session's ``ws_url``."""

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        secret = request.match_info["secret"]
        session = next((s for s in self.sessions.values() if s._ws_secret == secret), None)
        if session is None or session.status != "active":
            raise self._error(404, "Unknown or closed session websocket")
        ws = web.WebSocketResponse(max_msg_size=4 * self.max_ws_message_bytes)
        await ws.prepare(request)
        session._sockets.append(ws)
        connected = asyncio.Event()
        await ws.send_json({"type": "session.state_updated", "state": "connecting"})
        session.ws_events.append({"type": "session.state_updated", "state": "connecting"})
        announcer = asyncio.create_task(self._announce(session, ws, connected))
        self._background.add(announcer)
        announcer.add_done_callback(self._background.discard)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_ws_text(session, ws, message.data, connected.is_set())
                elif message.type == WSMsgType.BINARY:
                    session.ws_messages.append(
                        WebSocketMessage(
                            session.id, None, None, self.now(), "rejected", len(message.data)
                        )
                    )
        finally:
            announcer.cancel()
            if ws in session._sockets:
                session._sockets.remove(ws)
        return ws

    async def _announce(
        self, session: FakeSession, ws: web.WebSocketResponse, connected: asyncio.Event
    ) -> None:
        await self._sleep(self.ws_connect_delay)
        if not ws.closed and session.status == "active":
            connected.set()
            event = {"type": "session.state_updated", "state": "connected"}
            session.ws_events.append(event)
            await ws.send_json(event)

    async def _on_ws_text(
        self, session: FakeSession, ws: web.WebSocketResponse, data: str, connected: bool
    ) -> None:
        await self._apply_timers()
        now = self.now()
        size = len(data.encode())

        def record(kind: str | None, event_id: Any, outcome: Any) -> None:
            session.ws_messages.append(
                WebSocketMessage(
                    session.id,
                    kind,
                    event_id if isinstance(event_id, str) else None,
                    now,
                    outcome,
                    size,
                )
            )

        if session.status != "active":
            return
        if size > self.max_ws_message_bytes:
            record(None, None, "rejected")
            await ws.close(code=1009, message=b"message too big")
            return
        try:
            payload = json.loads(data)
        except ValueError:
            record(None, None, "rejected")
            return
        if not isinstance(payload, dict):
            record(None, None, "rejected")
            return
        kind, event_id = payload.get("type"), payload.get("event_id")
        kind = kind if isinstance(kind, str) else None
        if not connected:
            record(kind, event_id, "dropped")
            return
        if kind is None or kind.startswith("avatar.") or kind not in _LITE_COMMANDS:
            record(kind, event_id, "rejected")
            return
        session.last_activity_at = now
        if kind == "agent.speak":
            try:
                audio = base64.b64decode(payload.get("audio", ""), validate=True)
            except (binascii.Error, ValueError, TypeError):
                audio = None
            if audio is None or len(audio) % 2 or not isinstance(event_id, str):
                record(kind, event_id, "rejected")
                await ws.close(code=1003, message=b"invalid audio")
                return
            if event_id not in session._lite_audio:
                session._lite_audio[event_id] = 0
                await self._ws_send(
                    session,
                    {"type": "agent.speak_started", "event_id": event_id, "task": {"id": event_id}},
                )
            session._lite_audio[event_id] += len(audio)
        elif kind == "agent.speak_end" and isinstance(event_id, str):
            audio_bytes = session._lite_audio.pop(event_id, None)
            if audio_bytes is not None:
                starts = max(now, session._lite_free_at or now)
                ends = starts + timedelta(seconds=audio_bytes / 48000)
                session._lite_pending.append((event_id, ends))
                session._lite_free_at = ends
        elif kind == "agent.interrupt":
            cut = next(iter(session._lite_pending), None)
            current = cut[0] if cut else next(iter(session._lite_audio), None)
            session._lite_audio.clear()
            session._lite_pending.clear()
            session._lite_free_at = None
            await self._ws_send(
                session, {"type": "agent.speak_interrupted", "event_id": event_id or current}
            )
        elif kind == "session.keep_alive":
            session.keep_alives += 1
        record(kind, event_id, "accepted")
        await self._progress(session, now)
