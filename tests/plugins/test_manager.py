"""Plugin loading: built-ins, entry points, the allow-list, duplicate names, registries."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pluggy import HookImpl
from pydantic import BaseModel, SecretStr

from avatarstack import hookimpl
from avatarstack.adapters.http.routing import PUBLIC, Route
from avatarstack.bootstrap.cli import cli
from avatarstack.bootstrap.settings import Settings
from avatarstack.plugins.manager import (
    BUILTIN_PLUGINS,
    PluginError,
    collect,
    make_plugin_manager,
    settings_view,
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
    (routes,) = [info for info in pm.describe() if info.name == "routes"]
    assert routes.builtin
    assert routes.hooks == ("register_routes",)


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

    with pytest.raises(PluginError, match="two plugins are named 'routes'"):
        make_plugin_manager(load_entrypoints=False, plugins=[("routes", First())])


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
    found = _routes(pm)
    assert list(found)[-1] == "GET /a"
    assert "GET /healthz" in found


def _routes(pm: Any) -> dict[str, Route]:
    found: dict[str, Route] = collect(
        pm, "register_routes", key=lambda r: f"{r.method} {r.path}", kind="route"
    )
    return found


def _registering(path: str, *, tryfirst: bool = False, trylast: bool = False) -> object:
    class Plugin:
        @hookimpl(tryfirst=tryfirst, trylast=trylast)
        def register_routes(self, register: Callable[[Route], None]) -> None:
            register(_route(path))

    return Plugin()


def test_tryfirst_and_trylast_implementations_are_called_in_pluggy_order() -> None:
    plugins = [
        ("late", _registering("/late", trylast=True)),
        ("plain", _registering("/plain")),
        ("early", _registering("/early", tryfirst=True)),
    ]
    pm = make_plugin_manager(load_entrypoints=False, plugins=plugins)
    found = _routes(pm)
    keys = list(found)
    assert keys[0] == "GET /early"
    assert keys[-1] == "GET /late"
    assert keys.index("GET /healthz") < keys.index("GET /plain")  # built-ins first, then others


def test_a_hook_wrapper_wraps_each_call_and_sees_the_register_callback() -> None:
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def register_routes(self, register: Callable[[Route], None]) -> Any:
            seen.append("before")
            result = yield
            seen.append("after")
            return result

    pm = make_plugin_manager(
        load_entrypoints=False, plugins=[("wrapper", Wrapper()), ("a", _registering("/a"))]
    )
    found = _routes(pm)
    assert "GET /a" in found
    implementing = {i.plugin_name for i in pm.hook.register_routes.get_hookimpls()} - {"wrapper"}
    assert seen == ["before", "after"] * len(implementing)


def test_hook_call_monitoring_and_tracing_see_every_call() -> None:
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("a", _registering("/a"))])
    called: list[tuple[str, list[str]]] = []
    traced: list[str] = []

    def before(hook_name: str, impls: Sequence[HookImpl], kwargs: Mapping[str, Any]) -> None:
        assert callable(kwargs["register"])
        called.append((hook_name, [impl.plugin_name for impl in impls]))

    undo = pm.add_hookcall_monitoring(before, lambda *args: None)
    pm.trace.root.setwriter(traced.append)
    pm.enable_tracing()
    _routes(pm)
    undo()
    assert ("register_routes", ["a"]) in called
    assert ("register_routes", ["routes"]) in called
    assert any("register_routes" in line for line in traced)


# ------------------------------------------------------------------ narrow settings views


class _Seen:
    """A plugin that records the ``settings`` its embedder hook receives."""

    def __init__(self, **attributes: Any) -> None:
        self.seen: list[Any] = []
        for name, value in attributes.items():
            setattr(self, name, value)

    @hookimpl
    def register_embedders(self, register: Callable[[Any], None], settings: Any) -> None:
        self.seen.append(settings)


class AcmeSettings(BaseModel):
    api_key: SecretStr | None = None
    timeout_seconds: float = 10.0


def _embedders(plugin: object, settings: Settings) -> None:
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("acme", plugin)])
    collect(pm, "register_embedders", key=lambda e: e.name, kind="embedder", settings=settings)


def test_a_plugin_gets_its_own_validated_section_and_nothing_else() -> None:
    plugin = _Seen(settings_model=AcmeSettings)
    settings = Settings(
        secret_key=SecretStr("s" * 40),
        plugins={"acme": {"api_key": "k", "timeout_seconds": "2.5"}, "other": {"api_key": "x"}},
    )
    _embedders(plugin, settings)
    (seen,) = plugin.seen
    assert isinstance(seen, AcmeSettings)
    assert seen.api_key is not None
    assert seen.api_key.get_secret_value() == "k"
    assert seen.timeout_seconds == 2.5


def test_an_invalid_plugin_setting_names_its_variable() -> None:
    plugin = _Seen(settings_model=AcmeSettings)
    settings = Settings(plugins={"acme": {"timeout_seconds": "soon"}})
    with pytest.raises(
        PluginError,
        match=r"plugin 'acme' has invalid settings: AVATARSTACK_PLUGINS__ACME__TIMEOUT_SECONDS: ",
    ):
        _embedders(plugin, settings)


def test_a_plugin_may_add_shared_settings_but_not_other_sections() -> None:
    class WithDataDir(BaseModel):
        data_dir: Path
        options: AcmeSettings

    plugin = _Seen(
        settings_model=WithDataDir,
        settings_section={"data_dir": "data_dir", "options": "plugins.acme"},
    )
    _embedders(plugin, Settings(data_dir=Path("/srv/data")))
    assert plugin.seen[0].data_dir == Path("/srv/data")
    for forbidden in ("secret_key", "oauth.github", "plugins.other"):
        greedy = _Seen(settings_model=AcmeSettings, settings_section=forbidden)
        with pytest.raises(PluginError, match=f"may read only its own settings.*{forbidden}"):
            _embedders(greedy, Settings())


def test_a_plugin_without_a_model_gets_its_section_as_a_mapping() -> None:
    plugin = _Seen()
    _embedders(plugin, Settings(plugins={"acme": {"model_dir": "/m"}, "other": {"key": "x"}}))
    (seen,) = plugin.seen
    assert dict(seen) == {"model_dir": "/m"}
    assert seen.plugins == {"acme": seen}  # what plugins reading settings.plugins[...] used
    assert not hasattr(seen, "secret_key")


def test_built_in_plugins_get_only_their_own_section() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    settings = Settings(secret_key=SecretStr("s" * 40))
    assert settings_view(pm, "github", settings) is settings.oauth.github
    assert settings_view(pm, "liveavatar", settings) is settings.avatar.liveavatar
    answers = settings_view(pm, "answers", settings)
    assert set(type(answers).model_fields) == {"engine", "openai"}  # type: ignore[attr-defined]


def test_a_plugin_command_reads_its_own_settings_when_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hello_plugin.py").write_text(
        textwrap.dedent(
            """
            import click
            from pydantic import BaseModel
            from avatarstack import hookimpl

            class HelloSettings(BaseModel):
                greeting: str = "hello"

            settings_model = HelloSettings

            @hookimpl(tryfirst=True)
            def register_commands(cli, settings):
                @cli.command()
                def hello():
                    click.echo(f"{settings().greeting} from a plugin")
            """
        )
    )
    dist = tmp_path / "hello_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[avatarstack]\nhello = hello_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVATARSTACK_PLUGINS__HELLO__GREETING", "bonjour")
    monkeypatch.setattr(cli, "_plugins_added", False)  # load plugins again, into a copy
    monkeypatch.setattr(cli, "commands", dict(cli.commands))
    result = CliRunner().invoke(cli, ["hello"])
    assert result.exit_code == 0, result.output
    assert "bonjour from a plugin" in result.output
