"""Built-in plugin: every route of the framework, in the order they are added.

The operational routes (health, readiness, metrics, OpenAPI, info), identity (accounts, sessions,
OAuth, admin), the avatar (/api/v1/avatar), the knowledge base (/api/v1/kb), the realtime
WebSocket (/api/v1/ws) and conversation history, and the web console's pages, assets and
configuration route.
"""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.http import console
from avatarstack.adapters.http.routes import (
    avatar,
    conversations,
    identity,
    knowledge,
    ops,
    realtime,
)
from avatarstack.adapters.http.routing import Route
from avatarstack.plugins.markers import hookimpl

#: every built-in route, in the order they are added
ROUTES: tuple[Route, ...] = (
    *ops.ROUTES,
    *identity.ROUTES,
    *avatar.ROUTES,
    *knowledge.ROUTES,
    *realtime.ROUTES,
    *conversations.ROUTES,
    *console.ROUTES,
)


@hookimpl
def register_routes(register: Callable[[Route], None]) -> None:
    for route in ROUTES:
        register(route)
