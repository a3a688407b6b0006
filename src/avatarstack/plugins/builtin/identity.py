"""Built-in plugin: the identity routes (accounts, sessions, OAuth, admin)."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.http.routes import identity
from avatarstack.adapters.http.routing import Route
from avatarstack.plugins.markers import hookimpl


@hookimpl
def register_routes(register: Callable[[Route], None]) -> None:
    for route in identity.ROUTES:
        register(route)
