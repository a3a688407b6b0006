"""Building the plugin manager and collecting what plugins register.

Nothing here runs at import time: :func:`make_plugin_manager` is called by the composition root
(or by a test) and returns a fresh manager each time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar

import pluggy
from pydantic import BaseModel, ValidationError

from avatarstack import __version__
from avatarstack.plugins import hookspecs
from avatarstack.plugins.markers import PROJECT

ENTRY_POINT_GROUP = "avatarstack"

#: the framework's own features, registered through the same hooks as third-party plugins
BUILTIN_PLUGINS: tuple[str, ...] = (
    "avatarstack.plugins.builtin.routes",
    "avatarstack.plugins.builtin.textavatar",
    "avatarstack.plugins.builtin.liveavatar",
    "avatarstack.plugins.builtin.heygen",
    "avatarstack.plugins.builtin.parsers",
    "avatarstack.plugins.builtin.pdfium",
    "avatarstack.plugins.builtin.embedders",
    "avatarstack.plugins.builtin.model_embedders",
    "avatarstack.plugins.builtin.answers",
    "avatarstack.plugins.builtin.google",
    "avatarstack.plugins.builtin.github",
)

T = TypeVar("T")


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid."""


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the distribution each plugin came from."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, tuple[str, str]] = {}
        self.builtin_names: set[str] = set()

    def register_plugin(self, plugin: object, name: str, *, builtin: bool = False) -> None:
        """Register ``plugin`` under ``name``; a name already taken is an error naming both."""
        existing = self.get_plugin(name)
        if existing is not None:
            raise PluginError(
                f"two plugins are named {name!r}: {_describe(existing)} and {_describe(plugin)}"
            )
        try:
            self.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc
        if builtin:
            self.builtin_names.add(name)

    def describe(self) -> list[PluginInfo]:
        """Every registered plugin with its version and implemented hooks, sorted by name."""
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.get_hookcallers(plugin) or ()))
            dist = self.distributions.get(name)
            infos.append(
                PluginInfo(
                    name=name,
                    version=dist[1] if dist else __version__,
                    hooks=hooks,
                    builtin=name in self.builtin_names,
                )
            )
        return sorted(infos, key=lambda info: (not info.builtin, info.name))


def _describe(plugin: object) -> str:
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    return str(module)


def _parse_allowlist(load_plugins: str | None) -> set[str] | None:
    if load_plugins is None:
        return None
    return {name.strip() for name in load_plugins.split(",") if name.strip()}


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    load_plugins: str | None = None,
    plugins: Iterable[tuple[str, object]] = (),
) -> PluginManager:
    """A manager with the built-ins, the installed entry points and ``plugins`` registered.

    ``load_plugins`` is ``AVATARSTACK_LOAD_PLUGINS``: None loads every installed plugin, a
    comma-separated list loads only those entry-point names, an empty string loads none.
    ``plugins`` are extra ``(name, plugin)`` pairs, e.g. from a test or an embedding service.
    """
    pm = PluginManager()
    for module_name in BUILTIN_PLUGINS:
        module: ModuleType = importlib.import_module(module_name)
        pm.register_plugin(module, module_name.rsplit(".", 1)[-1], builtin=True)
    if load_entrypoints:
        _load_entrypoints(pm, _parse_allowlist(load_plugins))
    for name, plugin in plugins:
        pm.register_plugin(plugin, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    return pm


def _load_entrypoints(pm: PluginManager, allow: set[str] | None) -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allow is not None and ep.name not in allow:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must say which one it is
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        pm.register_plugin(plugin, ep.name)
        if ep.dist is not None:
            pm.distributions[ep.name] = (ep.dist.name, ep.dist.version)


def per_plugin(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, pluggy.HookCaller]]:
    """One pluggy caller per plugin implementing ``hook_name``, in call order.

    Each caller is :meth:`pluggy.PluginManager.subset_hook_caller` with every *other*
    implementing plugin left out, so calling it is an ordinary pluggy hook call: hook wrappers
    (``wrapper=True`` or ``hookwrapper=True``) wrap it, and hook-call monitoring and tracing
    (``pm.add_hookcall_monitoring``, ``pm.enable_tracing``) see it. Calling plugin by plugin is
    what lets each one get arguments of its own (its ``register`` callback, its settings); a
    wrapper therefore runs once per implementing plugin.

    ``tryfirst`` plugins come first and ``trylast`` ones last, as pluggy orders them; within
    one priority in registration order (built-ins first, then entry points, then extra
    plugins), the documented order in which parsers are tried and routes added.
    """
    hook = getattr(pm.hook, hook_name)
    implementations = [
        impl for impl in hook.get_hookimpls() if not (impl.hookwrapper or impl.wrapper)
    ]
    priority = {impl.plugin_name: _priority(impl) for impl in implementations}
    order = sorted(dict.fromkeys(priority), key=priority.__getitem__)  # stable: registration
    return [
        (
            name,
            pm.subset_hook_caller(
                hook_name, [impl.plugin for impl in implementations if impl.plugin_name != name]
            ),
        )
        for name in order
    ]


def collect(
    pm: PluginManager,
    hook_name: str,
    *,
    key: Callable[[T], str],
    kind: str,
    settings: BaseModel | None = None,
    **kwargs: Any,
) -> dict[str, T]:
    """Call one ``register_<things>(register, …)`` hook through pluggy; the things by name.

    The hook is called plugin by plugin (:func:`per_plugin`: wrappers, monitoring and
    ``tryfirst``/``trylast`` work as in any pluggy call), and each plugin gets its own
    ``register`` callback, so a duplicate name is reported with the two plugins that registered
    it. Things are returned in the order they were registered.

    ``settings`` (the application's settings) is never handed over whole: each plugin gets
    ``settings=`` :func:`settings_view` of it, its own section only.
    """
    found: dict[str, tuple[T, str]] = {}
    for plugin_name, call in per_plugin(pm, hook_name):

        def register(item: T, _plugin: str = plugin_name) -> None:
            name = key(item)
            if name in found:
                raise PluginError(
                    f"{kind} {name!r} is registered by both {found[name][1]!r} and {_plugin!r}"
                )
            found[name] = (item, _plugin)

        if settings is not None:
            kwargs["settings"] = settings_view(pm, plugin_name, settings)
        call(register=register, **kwargs)
    return {name: item for name, (item, _) in found.items()}


def _priority(impl: pluggy.HookImpl) -> int:
    return 0 if impl.tryfirst else 2 if impl.trylast else 1


# ---------------------------------------------------------------------- narrow settings views

#: a plugin's attribute naming the pydantic model of its settings, handed to it as ``settings``
SETTINGS_MODEL = "settings_model"
#: a plugin's attribute saying where its settings are: a dotted path in the application's
#: settings (``"oauth.github"``), or a mapping of its model's fields to such paths. Default: the
#: plugin's own section, ``plugins.<name>``; only built-ins may name other sections
SETTINGS_SECTION = "settings_section"
#: the settings any plugin may read besides its own section: nothing secret
SHARED_SETTINGS: tuple[str, ...] = ("data_dir", "env", "public_url")


class PluginSection(Mapping[str, Any]):
    """The settings of a plugin that declares no ``settings_model``: its own
    ``AVATARSTACK_PLUGINS__<NAME>__<KEY>`` values, keys lower-cased, read-only.

    ``plugins`` holds this section under the plugin's name, so that plugins written when hooks
    received the whole settings (``settings.plugins.get("<name>", {})``) keep working.
    """

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        self._name = name
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def plugins(self) -> Mapping[str, Mapping[str, Any]]:
        return {self._name: self}


def settings_view(pm: PluginManager, plugin_name: str, settings: BaseModel) -> object:
    """What plugin ``plugin_name`` receives as ``settings``: never the whole settings.

    A plugin declares ``settings_model = MyModel`` (a pydantic model) and receives a ``MyModel``
    validated from its section, ``AVATARSTACK_PLUGINS__<NAME>__<FIELD>``; a value that does not
    validate is a :class:`PluginError` naming the variable. ``settings_section`` may map the
    model's fields to other paths: :data:`SHARED_SETTINGS` for any plugin (``{"data_dir":
    "data_dir", "options": "plugins.<name>"}``), any section of the application's settings for
    a built-in. A plugin without a model receives its section as a :class:`PluginSection`.
    """
    plugin = pm.get_plugin(plugin_name)
    model = getattr(plugin, SETTINGS_MODEL, None)
    own = f"plugins.{plugin_name.lower()}"
    section: str | Mapping[str, str] = getattr(plugin, SETTINGS_SECTION, None) or own
    if plugin_name not in pm.builtin_names:
        paths = [section] if isinstance(section, str) else list(section.values())
        refused = [
            p for p in paths if p not in SHARED_SETTINGS and p.split(".")[:2] != own.split(".")
        ]
        if refused:
            raise PluginError(
                f"plugin {plugin_name!r} may read only its own settings ({own}) and "
                f"{', '.join(SHARED_SETTINGS)}, not {', '.join(refused)}"
            )
    if isinstance(section, str):
        data = _lookup(settings, section)
    else:
        data = {field: _lookup(settings, path) for field, path in section.items()}
    if model is None:
        return PluginSection(plugin_name, data if isinstance(data, Mapping) else {})
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"plugin {plugin_name!r}: settings_model must be a pydantic model")
    try:
        return model.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable(section, error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise PluginError(f"plugin {plugin_name!r} has invalid settings: {problems}") from exc


def _lookup(settings: object, path: str) -> Any:
    """``"oauth.github"`` → ``settings.oauth.github``; a missing plugin section is ``{}``."""
    value: Any = settings
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, Mapping) else getattr(value, part)
    return value


def _variable(section: str | Mapping[str, str], loc: tuple[int | str, ...]) -> str:
    """The environment variable of a field: ``AVATARSTACK_PLUGINS__OIDC__CLIENT_ID``."""
    if isinstance(section, str):
        parts = [*section.split("."), *loc]
    elif loc and str(loc[0]) in section:
        parts = [*section[str(loc[0])].split("."), *loc[1:]]
    else:
        parts = list(loc)
    return "AVATARSTACK_" + "__".join(str(part).upper() for part in parts)
