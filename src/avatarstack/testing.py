"""pytest fixtures for plugin authors and embedding teams (loaded through ``pytest11``).

``avatarstack_client`` starts the real application (SQLite in a temporary folder, no installed
plugins) with the plugins you pass, so a plugin is tested through the same hooks the server
uses::

    async def test_my_route(avatarstack_client):
        client = await avatarstack_client(plugins=[("my-plugin", my_plugin_module)])
        assert (await client.get("/my/route")).status == 200

``fake_google`` and ``fake_github`` are running fake OAuth servers on 127.0.0.1
(:class:`~avatarstack.testkit.oauth.FakeGoogle`, :class:`~avatarstack.testkit.oauth.FakeGitHub`)
with their default client credentials; register your callback URL before a login
(``fake_google.redirect_uris.append(url)``, ``fake_github.callback_url = url``).

``throwaway_postgres`` is a PostgreSQL cluster of the test's own
(:func:`~avatarstack.testkit.postgres.start_postgres_cluster`: ``initdb`` on a free port, password
authentication), which the test may stop, freeze and thaw; skipped where PostgreSQL is not
installed.

Needs ``pytest-aiohttp`` (the ``test`` extra) for ``aiohttp_client``.

Being a ``pytest11`` plugin, this module loads into every pytest session of anyone who installs
avatarstack, used or not: it imports only pytest (and pytest-asyncio, a pytest plugin itself) at
import time, and each fixture imports the application, the container or the fake servers when a
test asks for it (``tests/unit/test_testing_plugin.py`` holds it to that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest

if TYPE_CHECKING:
    from avatarstack.bootstrap.settings import Settings
    from avatarstack.testkit.oauth import FakeGitHub, FakeGoogle
    from avatarstack.testkit.postgres import PostgresCluster

try:  # pytest-asyncio runs these in its strict mode too; plain pytest.fixture needs auto mode
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - pytest-aiohttp depends on pytest-asyncio
    async_fixture = pytest.fixture  # type: ignore[assignment]

SettingsFactory: TypeAlias = "Callable[..., Settings]"
ClientFactory: TypeAlias = Callable[..., Awaitable[Any]]


@pytest.fixture
def avatarstack_settings(tmp_path: Path) -> SettingsFactory:
    """Build Settings for a test: data in ``tmp_path``, no entry-point plugins, the in-memory
    knowledge index, overrides as keyword arguments
    (``avatarstack_settings(http={"max_body_bytes": 1024})``; ``kb={}`` selects embedded
    Chroma in the data folder)."""

    from avatarstack.bootstrap.settings import Settings

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "avatarstack",
            "load_plugins": "",
            # the in-process vector index: fast to start; pass kb={...} for embedded Chroma
            "kb": {"chroma_url": "memory://"},
        }
        # tests register members: the first account does not become admin unless asked
        auth = {"first_account_admin": False, **overrides.pop("auth", {})}
        values.update(overrides, auth=auth)
        return Settings(**values)

    return make


@pytest.fixture
def avatarstack_client(aiohttp_client: Any, avatarstack_settings: SettingsFactory) -> ClientFactory:
    """Start the application and return an aiohttp test client for it.

    ``plugins`` are extra ``(name, plugin)`` pairs; ``providers_`` replaces container providers
    by name (``{"clock": ManualClock(), "password_hasher": cheap_hasher}``); other keyword
    arguments are settings. ``client.server.app[CONTAINER]`` is the container."""
    from dependency_injector import providers

    from avatarstack.bootstrap import build_container, create_app
    from avatarstack.plugins.manager import make_plugin_manager

    async def make(
        *,
        plugins: Iterable[tuple[str, object]] = (),
        providers_: dict[str, object] | None = None,
        **overrides: Any,
    ) -> Any:
        container = build_container(
            avatarstack_settings(**overrides),
            plugin_manager=make_plugin_manager(load_entrypoints=False, plugins=plugins),
        )
        for name, value in (providers_ or {}).items():
            getattr(container, name).override(providers.Object(value))
        return await aiohttp_client(create_app(container=container, setup_logging=False))

    return make


@async_fixture
async def fake_google() -> AsyncIterator[FakeGoogle]:
    """A running fake Google (OpenID Connect) server; stopped after the test."""
    from avatarstack.testkit.oauth import FakeGoogle

    async with FakeGoogle() as server:
        yield server


@async_fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    """A running fake GitHub (OAuth app + REST API) server; stopped after the test."""
    from avatarstack.testkit.oauth import FakeGitHub

    async with FakeGitHub() as server:
        yield server


@pytest.fixture
def throwaway_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own, which it may stop or freeze; deleted after."""
    from avatarstack.testkit.postgres import postgres_binaries, start_postgres_cluster

    if postgres_binaries() is None:
        pytest.skip("PostgreSQL is not installed (initdb not found)")
    cluster = start_postgres_cluster()
    try:
        yield cluster
    finally:
        cluster.close()
