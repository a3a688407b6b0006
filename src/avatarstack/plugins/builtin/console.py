"""Built-in plugin: the web console's pages, assets and configuration route."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.http import console
from avatarstack.adapters.http.routing import Route
from avatarstack.plugins.markers import hookimpl


@hookimpl
def register_routes(register: Callable[[Route], None]) -> None:
    for route in console.ROUTES:
        register(route)
