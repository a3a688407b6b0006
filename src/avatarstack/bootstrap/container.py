"""The dependency-injector container: which adapter serves each port, chosen by settings.

Swap any piece with ``container.<provider>.override(providers.Object(thing))`` before the app
starts — tests and embedding services do exactly that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from dependency_injector import containers, providers

from avatarstack import __version__
from avatarstack.adapters.http.metrics import HttpMetrics
from avatarstack.adapters.memory import MemoryStorage
from avatarstack.adapters.postgres import PostgresOptions, PostgresStorage
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.bootstrap.settings import Settings
from avatarstack.plugins.manager import PluginManager, make_plugin_manager
from avatarstack.ports.storage import Storage


async def _started_storage(storage: Storage) -> AsyncIterator[Storage]:
    """Resource: open the storage's connections for the life of the container."""
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    plugin_manager = providers.Singleton(
        make_plugin_manager, load_plugins=settings.provided.load_plugins
    )

    sqlite_storage = providers.Singleton(
        SqliteStorage,
        path=settings.provided.sqlite_path,
        busy_timeout=settings.provided.database.sqlite_busy_timeout,
    )
    postgres_storage = providers.Singleton(
        PostgresStorage,
        url=settings.provided.resolved_database_url,
        options=providers.Factory(
            PostgresOptions,
            min_size=settings.provided.database.pool_min_size,
            max_size=settings.provided.database.pool_max_size,
            command_timeout=settings.provided.database.command_timeout,
            acquire_timeout=settings.provided.database.acquire_timeout,
            connect_timeout=settings.provided.database.connect_timeout,
            startup_timeout=settings.provided.database.startup_timeout,
            statement_cache_size=settings.provided.database.statement_cache_size,
        ),
    )
    memory_storage = providers.Singleton(MemoryStorage)
    storage = providers.Selector(
        settings.provided.storage_backend,
        sqlite=sqlite_storage,
        postgres=postgres_storage,
        memory=memory_storage,
    )
    storage_resource = providers.Resource(_started_storage, storage=storage)

    metrics = providers.Singleton(HttpMetrics, version=__version__)


def build_container(
    settings: Settings | None = None, *, plugin_manager: PluginManager | None = None
) -> Container:
    """A container for ``settings`` (read from the environment when None). Creates nothing yet:
    adapters are built on first use and resources start with ``init_resources()``."""
    container = Container(settings=settings or Settings())
    if plugin_manager is not None:
        container.plugin_manager.override(providers.Object(plugin_manager))
    return container
