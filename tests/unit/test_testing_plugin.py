"""``avatarstack.testing`` is a ``pytest11`` plugin: it loads into every pytest session of anyone
who installs avatarstack, so importing it must stay cheap. The application, the container and the
fake servers are imported by the fixtures that use them, not by the module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# what importing the application would bring in (about a second, chromadb alone half of it)
HEAVY = (
    "chromadb",
    "numpy",
    "bm25s",
    "aiohttp",
    "dependency_injector",
    "pydantic",
    "pydantic_settings",
    "asyncpg",
    "aiosqlite",
    "structlog",
    "avatarstack.bootstrap",
    "avatarstack.adapters",
    "avatarstack.core",
    "avatarstack.testkit",
)

FIXTURES = (
    "avatarstack_settings",
    "avatarstack_client",
    "fake_google",
    "fake_github",
    "throwaway_postgres",
)


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "import avatarstack.testing\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("name", FIXTURES)
def test_the_plugin_still_offers_its_fixtures(name: str, request: pytest.FixtureRequest) -> None:
    definitions = request._fixturemanager.getfixturedefs(name, request.node)
    assert definitions, f"fixture {name} is not registered"
    assert any(d.func.__module__ == "avatarstack.testing" for d in definitions)


def test_the_settings_fixture_imports_what_it_needs(avatarstack_settings: object) -> None:
    from avatarstack.bootstrap.settings import Settings

    assert callable(avatarstack_settings)
    settings = avatarstack_settings()
    assert isinstance(settings, Settings)
    assert settings.load_plugins == ""
