"""``create_app``: settings → logging → plugins → container → routes → one cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from avatarstack import __version__
from avatarstack.adapters.http import keys
from avatarstack.adapters.http.app import build_http_app
from avatarstack.adapters.http.auth import bearer_policy
from avatarstack.adapters.http.routing import Route
from avatarstack.bootstrap.container import Container, build_container
from avatarstack.bootstrap.logging import configure_logging
from avatarstack.bootstrap.settings import Settings
from avatarstack.core.avatars import AvatarService
from avatarstack.core.identity import IdentityService
from avatarstack.plugins.manager import PluginError, collect
from avatarstack.ports.errors import AvatarstackError, StorageError

CONTAINER = web.AppKey("avatarstack_container", Container)

log = structlog.get_logger("avatarstack")


class PendingMigrationsError(StorageError):
    code = "pending-migrations"
    title = "Database schema is out of date"


def create_app(
    settings: Settings | None = None,
    *,
    container: Container | None = None,
    setup_logging: bool = True,
    migrate: bool | None = None,
) -> web.Application:
    """Build the avatarstack application; nothing starts until the app runs.

    ``migrate``: apply pending migrations on startup. The default does so in development and
    refuses to start in production while migrations are pending (run ``avatarstack migrate``).
    Pass ``setup_logging=False`` when the embedding service configures logging itself.
    """
    if container is not None:
        settings = container.settings()
    settings = settings or Settings()
    if setup_logging:
        configure_logging(settings)
    container = container or build_container(settings)
    pm = container.plugin_manager()
    routes: dict[str, Route] = collect(pm, "register_routes", key=_route_key, kind="route")
    storage = container.storage()
    identity = container.identity()
    avatars = container.avatars()
    app = build_http_app(
        config=keys.HttpConfig(
            max_body_bytes=settings.http.max_body_bytes,
            public_url=settings.resolved_public_url,
            version=__version__,
            access_log=settings.http.access_log,
            trusted_proxies=tuple(settings.http.trusted_proxies),
        ),
        routes=routes.values(),
        storage=storage,
        metrics=container.metrics(),
        readiness={"storage": storage.ping},
        access_policy=bearer_policy(identity),
    )
    app[keys.IDENTITY] = identity
    app[keys.AVATARS] = avatars
    app[keys.METRICS].watch_avatars(avatars.stats)
    app[CONTAINER] = container
    auto_migrate = (not settings.is_production) if migrate is None else migrate

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await container.init_resources()  # type: ignore[misc]
        try:
            if auto_migrate:
                applied = await storage.migrate()
                if applied:
                    log.info("migrations_applied", versions=applied, storage=storage.name)
            else:
                pending = await storage.pending_migrations()
                if pending:
                    raise PendingMigrationsError(
                        f"migrations {', '.join(pending)} are pending; "
                        "run `avatarstack migrate` before `avatarstack serve`"
                    )
            log.info("app_started", storage=storage.name, version=__version__)
            try:
                await avatars.reconcile()
            except AvatarstackError as exc:  # the vendor may be down; the loop reconciles again
                log.warning("avatar_reconcile_failed", error=exc.code)
            loops = [
                asyncio.create_task(
                    _maintain(identity, settings.maintenance_interval),
                    name="avatarstack-maintenance",
                ),
                asyncio.create_task(
                    _tend_avatars(avatars, settings.avatar.maintenance_seconds),
                    name="avatarstack-avatars",
                ),
            ]
            try:
                yield
            finally:
                for loop in loops:
                    loop.cancel()
                for loop in loops:
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
        finally:
            await container.shutdown_resources()  # type: ignore[misc]
            log.info("app_stopped")

    app.cleanup_ctx.append(lifecycle)
    return app


async def _maintain(identity: IdentityService, interval: float) -> None:
    """Housekeeping while the app runs: expired tokens and old rate-limit windows go. Every
    instance may run it; the deletes are idempotent."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await identity.purge_expired()
            log.info("maintenance_done", removed=removed)
        except Exception as exc:  # a database hiccup must not end the loop
            log.warning("maintenance_failed", error=str(exc))


#: ticks between reconciliations with the vendor (a vendor down at startup is retried)
RECONCILE_EVERY = 30


async def _tend_avatars(avatars: AvatarService, interval: float) -> None:
    """Keep-alive, idle stop and renewal of avatar sessions while the app runs, and every
    RECONCILE_EVERY ticks a reconciliation with the vendor's list of running sessions."""
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        ticks += 1
        try:
            await avatars.tick()
            if ticks % RECONCILE_EVERY == 0:
                await avatars.reconcile()
        except Exception as exc:  # a database or vendor hiccup must not end the loop
            log.warning("avatar_maintenance_failed", error=str(exc))


def _route_key(route: Route) -> str:
    if not isinstance(route, Route):
        raise PluginError(f"register_routes received {route!r}, not a Route")
    return f"{route.method} {route.path}"
