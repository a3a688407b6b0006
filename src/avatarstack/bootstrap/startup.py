"""What every process (``serve``, ``worker``, each CLI command) checks when it starts: the
database schema under the migrate-or-refuse rule, and the knowledge index and embedder."""

from __future__ import annotations

import structlog

from avatarstack.bootstrap.container import Container
from avatarstack.bootstrap.settings import Settings
from avatarstack.ports.embeddings import PreloadingEmbedder
from avatarstack.ports.errors import StorageError
from avatarstack.ports.storage import Storage

log = structlog.get_logger("avatarstack")


class PendingMigrationsError(StorageError):
    code = "pending-migrations"
    title = "Database schema is out of date"


async def migrate_or_refuse(
    storage: Storage, settings: Settings, *, migrate: bool | None = None, command: str = "serve"
) -> list[str]:
    """The migrate-or-refuse rule, for a started ``storage``: apply pending migrations (the
    default in development), or refuse with :class:`PendingMigrationsError` while any are
    pending (the default in production, where ``avatarstack migrate`` applies them). Returns
    the versions applied. ``command`` names the command the message says to run it before."""
    if (not settings.is_production) if migrate is None else migrate:
        applied = await storage.migrate()
        if applied:
            log.info("migrations_applied", versions=applied, storage=storage.name)
        return applied
    pending = await storage.pending_migrations()
    if pending:
        raise PendingMigrationsError(
            f"migrations {', '.join(pending)} are pending; "
            f"run `avatarstack migrate` before `avatarstack {command}`"
        )
    return []


async def prepare_knowledge(container: Container) -> None:
    """Startup checks of the knowledge base: an embedded Chroma folder is opened (and locked:
    a second process fails here with :class:`~avatarstack.ports.errors.IndexInUseError`), an
    active generation built by another embedder than the configured one is refused, and a
    model embedder loads its model (a missing one names the fetch step)."""
    await container.knowledge_store().claim()
    await container.knowledge().generations.check_embedder()
    embedder = container.embedder()
    if isinstance(embedder, PreloadingEmbedder):
        await embedder.ping()
