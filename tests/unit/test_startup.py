"""What every process checks when it starts (``avatarstack.bootstrap.startup``): the
migrate-or-refuse rule, and the knowledge store and embedder through their ports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from dependency_injector import providers

from avatarstack.bootstrap.container import build_container
from avatarstack.bootstrap.settings import Settings
from avatarstack.bootstrap.startup import (
    PendingMigrationsError,
    migrate_or_refuse,
    prepare_knowledge,
)
from avatarstack.ports.errors import IndexInUseError


class Schema:
    """The part of a storage the rule uses: two migrations the database lacks."""

    name = "fake"

    def __init__(self) -> None:
        self.pending = ["0007", "0008"]

    async def migrate(self) -> list[str]:
        applied, self.pending = self.pending, []
        return applied

    async def pending_migrations(self) -> list[str]:
        return list(self.pending)


def production(make: Callable[..., Settings]) -> Settings:
    """Only ``env`` matters here (a copy skips the checks of a whole production setup)."""
    return make().model_copy(update={"env": "production"})


async def test_development_migrates(avatarstack_settings: Callable[..., Settings]) -> None:
    schema = Schema()
    applied = await migrate_or_refuse(schema, avatarstack_settings())  # type: ignore[arg-type]
    assert applied == ["0007", "0008"]
    assert schema.pending == []


async def test_production_refuses_and_names_the_command(
    avatarstack_settings: Callable[..., Settings],
) -> None:
    schema = Schema()
    with pytest.raises(PendingMigrationsError) as refused:
        await migrate_or_refuse(
            schema,  # type: ignore[arg-type]
            production(avatarstack_settings),
            command="users create",
        )
    assert refused.value.detail == (
        "migrations 0007, 0008 are pending; run `avatarstack migrate` before "
        "`avatarstack users create`"
    )
    assert schema.pending == ["0007", "0008"]


async def test_an_explicit_choice_wins_over_the_environment(
    avatarstack_settings: Callable[..., Settings],
) -> None:
    schema = Schema()
    with pytest.raises(PendingMigrationsError):
        await migrate_or_refuse(schema, avatarstack_settings(), migrate=False)  # type: ignore[arg-type]
    assert await migrate_or_refuse(
        schema,  # type: ignore[arg-type]
        production(avatarstack_settings),
        migrate=True,
    ) == ["0007", "0008"]


class ModelEmbedder:
    """An embedder with the optional preloading capability: startup loads its model."""

    name = "model"
    dimensions = 4

    def __init__(self) -> None:
        self.loaded = False

    async def ping(self) -> None:
        self.loaded = True

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0, 0.0, 0.0, 0.0] for _ in texts]


class HeldStore:
    """A knowledge store another process holds."""

    async def claim(self) -> None:
        raise IndexInUseError("held", holder="pid 1")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was used")


async def test_startup_loads_a_preloading_embedders_model(
    avatarstack_settings: Callable[..., Settings],
) -> None:
    container = build_container(avatarstack_settings())
    embedder = ModelEmbedder()
    container.embedder.override(providers.Object(embedder))
    await container.storage().start()
    try:
        await container.storage().migrate()
        await prepare_knowledge(container)
    finally:
        await container.storage().close()
    assert embedder.loaded


async def test_a_held_store_stops_the_startup_first(
    avatarstack_settings: Callable[..., Settings],
) -> None:
    container = build_container(avatarstack_settings())
    container.knowledge_store.override(providers.Object(HeldStore()))
    with pytest.raises(IndexInUseError) as held:
        await prepare_knowledge(container)
    assert held.value.holder == "pid 1"
