"""Every route of the assembled application declares who may call it."""

from __future__ import annotations

from typing import Any

from avatarstack.adapters.http import keys


async def test_every_route_in_the_router_has_a_declared_access_rule(client: Any) -> None:
    app = client.server.app
    table = app[keys.ROUTES]
    assert table.undeclared(app) == []
    assert all(table.lookup(route) is not None for route in app.router.routes())
    assert all(route.access for route in table.routes)
