"""The example plugin in docs/plugins/example adds a login provider with no core change."""

from __future__ import annotations

import importlib
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from dependency_injector import providers

from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.bootstrap import build_container, create_app
from avatarstack.plugins.manager import make_plugin_manager
from avatarstack.testkit.oauth import FakeGoogle

EXAMPLE = Path(__file__).parents[2] / "docs" / "plugins" / "example"
PUBLIC_URL = "http://app.test"


@pytest.fixture
def example_plugin() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        yield importlib.import_module("avatarstack_oidc")
    finally:
        sys.path.remove(str(EXAMPLE / "src"))
        sys.modules.pop("avatarstack_oidc", None)


def test_the_example_declares_its_entry_point_in_the_avatarstack_group() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["avatarstack"] == {"oidc": "avatarstack_oidc"}


async def test_a_user_signs_in_through_the_example_oidc_plugin(
    example_plugin: ModuleType, avatarstack_settings: Any, aiohttp_client: Any
) -> None:
    callback = f"{PUBLIC_URL}/api/v1/auth/oauth/oidc/callback"
    async with FakeGoogle(redirect_uris=(callback,)) as issuer:
        settings = avatarstack_settings(
            public_url=PUBLIC_URL,
            plugins={
                "oidc": {
                    "client_id": issuer.client_id,
                    "client_secret": issuer.client_secret,
                    "server_metadata_url": issuer.metadata_url,
                    "display_name": "Company SSO",
                }
            },
        )
        pm = make_plugin_manager(load_entrypoints=False, plugins=[("oidc", example_plugin)])
        container = build_container(settings, plugin_manager=pm)
        container.password_hasher.override(
            providers.Object(Argon2PasswordHasher(memory_cost=1024, time_cost=1))
        )
        client = await aiohttp_client(create_app(container=container, setup_logging=False))

        listed = await (await client.get("/api/v1/auth/providers")).json()
        assert [p["display_name"] for p in listed["oauth"]] == ["Company SSO"]

        start = await client.get("/api/v1/auth/oauth/oidc/authorize", allow_redirects=False)
        assert start.status == 302
        async with aiohttp.ClientSession() as browser:
            at_issuer = await browser.get(start.headers["Location"], allow_redirects=False)
            back = urlsplit(at_issuer.headers["Location"])
        done = await client.get(f"{back.path}?{back.query}", allow_redirects=False)
        fragment = dict(
            part.split("=", 1) for part in urlsplit(done.headers["Location"]).fragment.split("&")
        )
        tokens = await client.post("/api/v1/auth/oauth/exchange", json={"code": fragment["code"]})
        assert tokens.status == 200, await tokens.text()
        access = (await tokens.json())["access_token"]
        me = await (
            await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {access}"})
        ).json()
        assert me["email"] == "ada@example.com"
        assert me["email_verified"] is True
        assert [i["provider"] for i in me["identities"]] == ["oidc"]


def test_the_example_offers_nothing_until_configured(
    example_plugin: ModuleType, avatarstack_settings: Any
) -> None:
    container = build_container(
        avatarstack_settings(),
        plugin_manager=make_plugin_manager(
            load_entrypoints=False, plugins=[("oidc", example_plugin)]
        ),
    )
    assert container.oauth_providers() == {}


def test_the_example_names_missing_settings(
    example_plugin: ModuleType, avatarstack_settings: Any
) -> None:
    container = build_container(
        avatarstack_settings(plugins={"oidc": {"client_id": "x"}}),
        plugin_manager=make_plugin_manager(
            load_entrypoints=False, plugins=[("oidc", example_plugin)]
        ),
    )
    with pytest.raises(ValueError, match="AVATARSTACK_PLUGINS__OIDC__CLIENT_SECRET"):
        container.oauth_providers()
