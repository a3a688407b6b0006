"""Assembling the aiohttp application from declared routes and the services handlers use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.headers import security_headers
from avatarstack.adapters.http.metrics import HttpMetrics
from avatarstack.adapters.http.pipeline import (
    FALLBACK,
    UNMATCHED,
    AccessPolicy,
    Pipeline,
    deny_non_public,
)
from avatarstack.adapters.http.routing import Route, RouteTable
from avatarstack.ports.storage import Storage


def build_http_app(
    *,
    config: keys.HttpConfig,
    routes: Iterable[Route],
    storage: Storage,
    metrics: HttpMetrics,
    readiness: dict[str, keys.ReadinessCheck],
    access_policy: AccessPolicy = deny_non_public,
) -> web.Application:
    """An application serving ``routes`` (each wrapped in the request pipeline) and the
    fallback route, with the typed keys set.

    Every route must come through here: the app refuses to start when the router holds a
    route nobody declared. Starting and stopping resources is the caller's job
    (``app.cleanup_ctx``).
    """
    routes = list(routes)
    largest_body = max([config.max_body_bytes, *(r.max_body_bytes or 0 for r in routes)])
    app = web.Application(client_max_size=largest_body)
    pipeline = Pipeline(
        metrics=metrics,
        max_body_bytes=config.max_body_bytes,
        max_upload_bytes=config.max_upload_bytes,
        access_log=config.access_log,
        access_policy=access_policy,
    )
    table = RouteTable()
    for route in routes:
        table.add(app, route, pipeline.wrap(route))
    table.add(app, FALLBACK, pipeline.wrap(FALLBACK, label=UNMATCHED))  # must stay last
    app[keys.CONFIG] = config
    app[keys.ROUTES] = table
    app[keys.PIPELINE] = pipeline
    app[keys.METRICS] = metrics
    app[keys.STORAGE] = storage
    app[keys.READINESS_CHECKS] = dict(readiness)
    metrics.watch_pool(storage.pool_stats, storage.name, storage.timings)
    app.on_response_prepare.append(
        security_headers(https=config.public_url.lower().startswith("https://"))
    )
    app.on_startup.insert(0, _refuse_undeclared_routes)  # before any resource starts
    app.cleanup_ctx.append(_loop_lag)
    return app


async def _loop_lag(app: web.Application) -> AsyncIterator[None]:
    """Run the metrics' event-loop lag monitor while the application serves."""
    task = asyncio.create_task(app[keys.METRICS].loop_lag.run(), name="event-loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _refuse_undeclared_routes(app: web.Application) -> None:
    undeclared = app[keys.ROUTES].undeclared(app)
    if undeclared:
        raise RuntimeError(
            "routes must be declared through the register_routes hook (they state who may "
            f"call them); undeclared: {', '.join(undeclared)}"
        )
