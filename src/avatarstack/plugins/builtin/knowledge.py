"""Built-in plugin: the knowledge-base routes (/api/v1/kb)."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.http.routes import knowledge
from avatarstack.adapters.http.routing import Route
from avatarstack.plugins.markers import hookimpl


@hookimpl
def register_routes(register: Callable[[Route], None]) -> None:
    for route in knowledge.ROUTES:
        register(route)
