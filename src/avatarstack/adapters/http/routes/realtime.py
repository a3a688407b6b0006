"""The realtime WebSocket route, ``GET /api/v1/ws`` (protocol v1, docs/realtime.md).

The protocol itself lives in :mod:`avatarstack.adapters.http.realtime`: ``protocol`` (frames,
close codes), ``hub`` (per-application state), ``connection`` (one socket's state machine),
``handlers`` (the client frames' handlers and the table that dispatches them) and ``commands``
(the avatar commands a socket carries).
"""

from __future__ import annotations

from aiohttp import web

from avatarstack.adapters.http.realtime.connection import Connection
from avatarstack.adapters.http.realtime.hub import REALTIME
from avatarstack.adapters.http.realtime.protocol import PATH, SUBPROTOCOL
from avatarstack.adapters.http.routing import PUBLIC, Route


async def websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[REALTIME]
    ws = web.WebSocketResponse(
        heartbeat=hub.config.heartbeat_seconds,
        max_msg_size=hub.config.max_message_bytes,
        protocols=(SUBPROTOCOL,),
    )
    await ws.prepare(request)
    await Connection(hub, ws).run()
    return ws


ROUTES = [
    Route(
        "GET",
        PATH,
        websocket,
        PUBLIC,
        "realtime",
        "WebSocket, protocol v1: authenticate with the first frame (see docs/realtime.md).",
        ("realtime",),
        status=101,
        responses={400: "Not a WebSocket upgrade"},
        log_requests=True,
    ),
]
