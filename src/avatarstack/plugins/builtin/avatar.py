"""Built-in plugin: the avatar routes (/api/v1/avatar)."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.http.routes import avatar
from avatarstack.adapters.http.routing import Route
from avatarstack.plugins.markers import hookimpl


@hookimpl
def register_routes(register: Callable[[Route], None]) -> None:
    for route in avatar.ROUTES:
        register(route)
