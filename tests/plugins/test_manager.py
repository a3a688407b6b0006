"""Plugin loading: built-ins, entry points, the allow-list, duplicate names, registries."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avatarstack import hookimpl
from avatarstack.adapters.http.routing import PUBLIC, Route
from avatarstack.plugins.manager import (
    BUILTIN_PLUGINS,
    PluginError,
    collect,
    make_plugin_manager,
)


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed distribution (dist-info on sys.path) declaring two entry points."""
    (tmp_path / "greeter_plugin.py").write_text(
        textwrap.dedent(
            """
            import click
            from avatarstack import hookimpl

            @hookimpl
            def register_commands(cli):
                @cli.command()
                def greet():
                    click.echo("hello from a plugin")
            """
        )
    )
    (tmp_path / "other_plugin.py").write_text("")
    dist = tmp_path / "greeter_plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[avatarstack]\ngreeter = greeter_plugin\nother = other_plugin\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def names(pm: Any) -> set[str]:
    return {info.name for info in pm.describe()}


def test_builtins_are_registered_as_plugins() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    (ops,) = [info for info in pm.describe() if info.name == "ops"]
    assert ops.builtin
    assert ops.hooks == ("register_routes",)


def test_installed_entry_points_load_with_their_distribution_version(
    installed_plugin: Path,
) -> None:
    pm = make_plugin_manager()
    greeter = next(info for info in pm.describe() if info.name == "greeter")
    assert greeter.version == "1.2.3"
    assert greeter.hooks == ("register_commands",)
    assert not greeter.builtin


def test_the_allow_list_loads_only_named_plugins(installed_plugin: Path) -> None:
    assert "other" not in names(make_plugin_manager(load_plugins="greeter"))
    assert "greeter" in names(make_plugin_manager(load_plugins="greeter"))
    assert {"greeter", "other"}.isdisjoint(names(make_plugin_manager(load_plugins="")))
    assert {"greeter", "other"} <= names(make_plugin_manager(load_plugins=None))


def test_no_entry_points_are_loaded_when_asked_not_to(installed_plugin: Path) -> None:
    builtins = {module.rsplit(".", 1)[-1] for module in BUILTIN_PLUGINS}
    assert names(make_plugin_manager(load_entrypoints=False)) == builtins


def test_two_plugins_with_one_name_are_refused_naming_both() -> None:
    class First:
        pass

    with pytest.raises(PluginError, match="two plugins are named 'ops'"):
        make_plugin_manager(load_entrypoints=False, plugins=[("ops", First())])


def test_a_plugin_with_an_unknown_hook_is_refused() -> None:
    class Typo:
        @hookimpl
        def register_rutes(self, register: Any) -> None:  # misspelt on purpose
            pass

    with pytest.raises(PluginError, match="register_rutes"):
        make_plugin_manager(load_entrypoints=False, plugins=[("typo", Typo())])


def test_a_plugin_that_fails_to_import_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('missing dependency xyz')\n")
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[avatarstack]\nbroken = broken_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"'broken'.*missing dependency xyz"):
        make_plugin_manager()


async def _noop(request: Any) -> Any:
    raise AssertionError


def _route(path: str) -> Route:
    return Route("GET", path, _noop, PUBLIC, path.strip("/"), "A route.")


def test_a_route_registered_by_two_plugins_is_an_error_naming_both() -> None:
    class A:
        @hookimpl
        def register_routes(self, register: Callable[[Route], None]) -> None:
            register(_route("/same"))

    class B:
        @hookimpl
        def register_routes(self, register: Callable[[Route], None]) -> None:
            register(_route("/same"))

    pm = make_plugin_manager(load_entrypoints=False, plugins=[("a", A()), ("b", B())])
    with pytest.raises(PluginError, match=r"'GET /same' is registered by both 'a' and 'b'"):
        collect(pm, "register_routes", key=lambda r: f"{r.method} {r.path}", kind="route")


def test_collect_returns_things_in_registration_order() -> None:
    class A:
        @hookimpl
        def register_routes(self, register: Callable[[Route], None]) -> None:
            register(_route("/a"))

    pm = make_plugin_manager(load_entrypoints=False, plugins=[("a", A())])
    found = collect(pm, "register_routes", key=lambda r: f"{r.method} {r.path}", kind="route")
    assert list(found)[-1] == "GET /a"
    assert "GET /healthz" in found
