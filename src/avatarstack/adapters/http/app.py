"""Assembling the aiohttp application from declared routes and the services handlers use."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from avatarstack.adapters.http import keys, middlewares
from avatarstack.adapters.http.metrics import HttpMetrics
from avatarstack.adapters.http.routing import Route, RouteTable
from avatarstack.ports.storage import Storage


def build_http_app(
    *,
    config: keys.HttpConfig,
    routes: Iterable[Route],
    storage: Storage,
    metrics: HttpMetrics,
    readiness: dict[str, keys.ReadinessCheck],
    access_policy: keys.AccessPolicy = middlewares.deny_non_public,
) -> web.Application:
    """An application with the middleware chain, the routes and the typed keys set.

    Starting and stopping resources is the caller's job (``app.cleanup_ctx``).
    """
    routes = list(routes)
    largest_body = max([config.max_body_bytes, *(r.max_body_bytes or 0 for r in routes)])
    app = web.Application(
        middlewares=[middlewares.observe, middlewares.errors, middlewares.access],
        client_max_size=largest_body,
        handler_args={"max_field_size": 8190, "max_line_size": 8190},
    )
    table = RouteTable()
    for route in routes:
        table.add(app, route)
    app[keys.CONFIG] = config
    app[keys.ROUTES] = table
    app[keys.METRICS] = metrics
    app[keys.STORAGE] = storage
    app[keys.READINESS_CHECKS] = dict(readiness)
    app[keys.ACCESS_POLICY] = access_policy
    metrics.watch_pool(storage.pool_stats, storage.name)
    return app
