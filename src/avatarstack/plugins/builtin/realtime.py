"""Built-in plugin: the realtime WebSocket (/api/v1/ws) and conversation history routes."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.http.routes import conversations, realtime
from avatarstack.adapters.http.routing import Route
from avatarstack.plugins.markers import hookimpl


@hookimpl
def register_routes(register: Callable[[Route], None]) -> None:
    for route in (*realtime.ROUTES, *conversations.ROUTES):
        register(route)
