"""The container picks adapters from settings and lets embedders swap any of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import providers

from avatarstack.adapters.memory import MemoryStorage
from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.bootstrap import Settings, build_container, create_app
from avatarstack.plugins.manager import PluginError, make_plugin_manager


def test_the_storage_backend_follows_the_database_url(tmp_path: Path) -> None:
    sqlite = build_container(Settings(data_dir=tmp_path)).storage()
    assert isinstance(sqlite, SqliteStorage)
    assert sqlite.path == f"{tmp_path.as_posix()}/avatarstack.db"
    postgres = build_container(
        Settings(
            database_url="postgresql://app@db.example/app?sslmode=require",
            database={"pool_max_size": 3},
        )
    ).storage()
    assert isinstance(postgres, PostgresStorage)
    assert postgres.options.max_size == 3
    assert isinstance(build_container(Settings(database_url="memory://")).storage(), MemoryStorage)


def test_building_an_app_opens_no_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", load_plugins="")
    create_app(settings, setup_logging=False)
    assert not (tmp_path / "data" / "avatarstack.db").exists()


def test_an_embedding_service_can_override_the_storage(tmp_path: Path) -> None:
    container = build_container(Settings(data_dir=tmp_path, load_plugins=""))
    mine = MemoryStorage()
    container.storage.override(providers.Object(mine))
    assert container.storage() is mine
    create_app(container=container, setup_logging=False)


def test_an_unknown_preferred_parser_is_refused_naming_what_is_available(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, load_plugins="", kb={"parsers": ["pdfuim"]})
    container = build_container(
        settings, plugin_manager=make_plugin_manager(load_entrypoints=False)
    )
    with pytest.raises(PluginError, match=r"pdfuim.*available: markdown, pdfium, pypdf, text"):
        container.parsing()
