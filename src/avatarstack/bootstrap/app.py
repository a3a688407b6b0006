"""``create_app``: settings → logging → plugins → container → routes → one cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog
from aiohttp import web

from avatarstack import __version__
from avatarstack.adapters.http import keys
from avatarstack.adapters.http.app import build_http_app
from avatarstack.adapters.http.auth import bearer_policy
from avatarstack.adapters.http.console import CONSOLE, DEFAULT_UPLOAD_TYPES, ConsoleConfig
from avatarstack.adapters.http.realtime.hub import REALTIME, RealtimeConfig, RealtimeHub
from avatarstack.adapters.http.routing import Route
from avatarstack.adapters.parsers import upload_types
from avatarstack.bootstrap.container import Container, build_container
from avatarstack.bootstrap.logging import configure_logging
from avatarstack.bootstrap.settings import Settings
from avatarstack.bootstrap.startup import migrate_or_refuse, prepare_knowledge
from avatarstack.core.avatars import AvatarMaintenance
from avatarstack.core.conversations import ConversationService, user_topic
from avatarstack.core.identity import IdentityService
from avatarstack.core.jobs import JobAnnouncer, JobListener, Worker
from avatarstack.plugins.manager import PluginError, collect
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.documents import DocumentParser
from avatarstack.ports.errors import AvatarstackError
from avatarstack.ports.storage import Job, new_id

CONTAINER = web.AppKey("avatarstack_container", Container)

log = structlog.get_logger("avatarstack")


def create_app(
    settings: Settings | None = None,
    *,
    container: Container | None = None,
    setup_logging: bool = True,
    migrate: bool | None = None,
    run_worker: bool = True,
) -> web.Application:
    """Build the avatarstack application; nothing starts until the app runs.

    ``migrate``: apply pending migrations on startup. The default does so in development and
    refuses to start in production while migrations are pending (run ``avatarstack migrate``).
    Pass ``setup_logging=False`` when the embedding service configures logging itself.
    ``run_worker``: run background jobs (ingestion, index builds) in this process
    (``serve --no-worker`` turns it off when separate ``avatarstack worker`` processes do).
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
    avatar_maintenance = container.avatar_maintenance()
    knowledge = container.knowledge()
    store = container.knowledge_store()
    conversations = container.conversations()
    broadcaster = container.broadcaster()
    app = build_http_app(
        config=keys.HttpConfig(
            max_body_bytes=settings.http.max_body_bytes,
            max_upload_bytes=settings.http.max_upload_bytes,
            public_url=settings.resolved_public_url,
            version=__version__,
            access_log=settings.http.access_log,
            trusted_proxies=tuple(settings.http.trusted_proxies),
        ),
        routes=routes.values(),
        storage=storage,
        metrics=container.metrics(),
        readiness={
            "storage": storage.ping,
            "knowledge": store.ping,
            "broadcast": broadcaster.ping,
        },
        access_policy=bearer_policy(identity),
    )
    app[keys.IDENTITY] = identity
    app[CONSOLE] = make_console_config(settings, container.parsers())
    app[keys.AVATARS] = avatars
    app[keys.KNOWLEDGE] = knowledge
    hub = RealtimeHub(
        conversations=conversations,
        identity=identity,
        config=make_realtime_config(settings),
        avatars=avatars,
        commands=container.avatar_commands(),
    )
    app[REALTIME] = hub
    app.on_shutdown.append(lambda _app: hub.close_all())
    app[keys.METRICS].watch_avatars(avatars.stats)
    app[keys.METRICS].watch_realtime(hub.stats)
    app[CONTAINER] = container

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await container.init_resources()  # type: ignore[misc]
        try:
            await migrate_or_refuse(storage, settings, migrate=migrate)
            await prepare_knowledge(container)
            # the objects made while starting live as long as the app: leave them out of the
            # collector's full passes, which otherwise pause the loop for 60-80 ms each
            gc.collect()
            gc.freeze()
            log.info("app_started", storage=storage.name, version=__version__)
            try:
                await avatar_maintenance.reconcile()
            except AvatarstackError as exc:  # the vendor may be down; the loop reconciles again
                log.warning("avatar_reconcile_failed", error=exc.code)
            housekeeping = [
                asyncio.create_task(
                    _maintain(identity, settings.maintenance_interval),
                    name="avatarstack-maintenance",
                ),
                asyncio.create_task(
                    _tend_avatars(
                        avatar_maintenance, conversations, settings.avatar.maintenance_seconds
                    ),
                    name="avatarstack-avatars",
                ),
            ]
            # committed jobs wake the workers of every instance (this one included)
            announcer = JobAnnouncer(broadcaster)
            conversations.log.on_job_queued(announcer)
            knowledge.jobs.on_job_queued(announcer)
            # workers finish their current jobs when told to stop; the loops above are cancelled
            stop_workers = asyncio.Event()
            answer_worker = make_answer_worker(container)
            job_worker = make_worker(container) if run_worker else None
            workers = [
                asyncio.create_task(answer_worker.run(stop_workers), name="avatarstack-answers"),
            ]
            if job_worker is not None:
                workers.append(
                    asyncio.create_task(job_worker.run(stop_workers), name="avatarstack-worker")
                )
            try:
                yield
            finally:
                stop_workers.set()
                for task in housekeeping:
                    task.cancel()
                for task in (*housekeeping, *workers):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await announcer.drain()
                await conversations.avatar.close()
        finally:
            await container.shutdown_resources()  # type: ignore[misc]
            log.info("app_stopped")

    app.cleanup_ctx.append(lifecycle)
    return app


def make_worker(container: Container, *, listener: JobListener | None = None) -> Worker:
    """The job worker for ingestion and index builds, configured by ``kb`` settings; it claims
    a job as soon as it is announced on the (started) broadcaster. ``listener`` is told about
    every change too, after the owner's sockets."""
    settings = container.settings()
    lease = settings.kb.job_lease_seconds
    progress = job_progress_publisher(container)
    if listener is not None:
        progress = _both(progress, listener)
    return Worker(
        container.storage(),
        container.clock(),
        container.knowledge().job_handlers(),
        concurrency=settings.kb.worker_concurrency,
        lease_seconds=lease,
        heartbeat_seconds=lease / 3,
        grace_seconds=10.0,
        listener=_both(progress, container.metrics().job_listener),
        on_start=container.metrics().job_started,
        # the owner's sockets hear every step; storage (GET /kb/jobs/{id}) once a second
        progress_seconds=1.0,
        broadcaster=container.broadcaster(),
    )


def _both(first: JobListener, second: JobListener) -> JobListener:
    def tell(job: Job, status: str, progress: float, error: str | None) -> None:
        first(job, status, progress, error)
        second(job, status, progress, error)

    return tell


def make_answer_worker(container: Container) -> Worker:
    """Answers run as jobs on every instance that serves sockets: many at once, short leases
    (a killed instance's answer resumes elsewhere within seconds), claimed as soon as they are
    announced, and polled often in case an announcement was lost."""
    settings = container.settings()
    lease = settings.realtime.answer_lease_seconds
    return Worker(
        container.storage(),
        container.clock(),
        container.conversations().answers.job_handlers(),
        worker_id=f"answers-{new_id()}",
        concurrency=settings.realtime.answer_workers,
        lease_seconds=lease,
        heartbeat_seconds=lease / 3,
        poll_seconds=min(0.5, lease / 4),
        sweep_seconds=lease,
        backoff_base=0.5,
        backoff_max=5.0,
        grace_seconds=min(5.0, lease),
        listener=container.metrics().job_listener,
        on_start=container.metrics().job_started,
        broadcaster=container.broadcaster(),
    )


def job_progress_publisher(container: Container) -> JobListener:
    """Tell the job owner's sockets (any instance) how their job is doing (``job.progress``)."""
    broadcaster = container.broadcaster()
    pending: set[asyncio.Task[None]] = set()

    def tell(job: Job, status: str, progress: float, error: str | None) -> None:
        if job.owner_id is None:
            return
        payload = {
            "job": {
                "job_id": job.id,
                "kind": job.kind,
                "status": status,
                "progress": round(progress, 4),
                "error": error,
                "result": job.result if status == "succeeded" else {},
            }
        }
        task = asyncio.create_task(_publish_quietly(broadcaster, user_topic(job.owner_id), payload))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return tell


async def _publish_quietly(broadcaster: Broadcaster, topic: str, payload: dict[str, Any]) -> None:
    try:
        await broadcaster.publish(topic, payload)
    except AvatarstackError as exc:  # progress is best effort; GET /kb/jobs/{id} has it
        log.debug("job_progress_not_published", error=exc.code)


def make_console_config(
    settings: Settings, parsers: Sequence[DocumentParser] = ()
) -> ConsoleConfig:
    console = settings.console
    types = upload_types(parsers)
    return ConsoleConfig(
        enabled=console.enabled,
        avatar_provider=settings.avatar.provider,
        livekit_client_url=console.livekit_client_url,
        livekit_connect_src=tuple(console.livekit_connect_src),
        version=__version__,
        upload_types=tuple(types) or DEFAULT_UPLOAD_TYPES,
        secure=settings.resolved_public_url.lower().startswith("https://"),
    )


def make_realtime_config(settings: Settings) -> RealtimeConfig:
    rt = settings.realtime
    return RealtimeConfig(
        heartbeat_seconds=rt.heartbeat_seconds,
        auth_timeout_seconds=rt.auth_timeout_seconds,
        max_message_bytes=rt.max_message_bytes,
        connections_per_user=rt.connections_per_user,
        queue_size=rt.queue_size,
        rate_per_second=rt.messages_per_second,
        rate_burst=max(1, int(rt.messages_per_second * 3)),
        recheck_seconds=rt.recheck_seconds,
        voice_answers=settings.avatar.liveavatar.voice_answers == "knowledge",
    )


async def _maintain(identity: IdentityService, interval: float) -> None:
    """Housekeeping while the app runs: expired tokens and old rate-limit windows go. Every
    instance may run it; the deletes are idempotent."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await identity.sessions.purge_expired()
            log.info("maintenance_done", removed=removed)
        except Exception as exc:  # a database hiccup must not end the loop
            log.warning("maintenance_failed", error=str(exc))


#: ticks between reconciliations with the vendor (a vendor down at startup is retried)
RECONCILE_EVERY = 30


async def _tend_avatars(
    maintenance: AvatarMaintenance, conversations: ConversationService, interval: float
) -> None:
    """Keep-alive, idle stop and renewal of avatar sessions while the app runs (renewed
    credentials go to the owner's sockets), and every RECONCILE_EVERY ticks a reconciliation
    with the vendor's list of running sessions."""
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        ticks += 1
        try:
            for renewal in await maintenance.tick():
                await conversations.avatar.renewed(renewal)
            if ticks % RECONCILE_EVERY == 0:
                await maintenance.reconcile()
        except Exception as exc:  # a database or vendor hiccup must not end the loop
            log.warning("avatar_maintenance_failed", error=str(exc))


def _route_key(route: Route) -> str:
    if not isinstance(route, Route):
        raise PluginError(f"register_routes received {route!r}, not a Route")
    return f"{route.method} {route.path}"
