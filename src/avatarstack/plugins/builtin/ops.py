"""Built-in plugin: the operational routes (health, readiness, metrics, OpenAPI, info)."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.http.routes import ops
from avatarstack.adapters.http.routing import Route
from avatarstack.plugins.markers import hookimpl


@hookimpl
def register_routes(register: Callable[[Route], None]) -> None:
    for route in ops.ROUTES:
        register(route)
