"""Every route of the assembled application declares who may call it."""

from __future__ import annotations

from typing import Any

from avatarstack.adapters.http import keys


async def test_every_route_in_the_router_has_a_declared_access_rule(client: Any) -> None:
    app = client.server.app
    table = app[keys.ROUTES]
    undeclared = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.method != "HEAD" and table.lookup(route) is None
    ]
    assert undeclared == []
    assert all(route.access for route in table.routes)
