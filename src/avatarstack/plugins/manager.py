"""Building the plugin manager and collecting what plugins register.

Nothing here runs at import time: :func:`make_plugin_manager` is called by the composition root
(or by a test) and returns a fresh manager each time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar

import pluggy

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


def collect(
    pm: pluggy.PluginManager,
    hook_name: str,
    *,
    key: Callable[[T], str],
    kind: str,
    **kwargs: Any,
) -> dict[str, T]:
    """Call one ``register_<things>(register, …)`` hook through pluggy; the things by name.

    The hook is called once per implementing plugin, each time through
    :meth:`pluggy.PluginManager.subset_hook_caller` with every *other* implementing plugin left
    out. Each call is therefore an ordinary pluggy hook call: hook wrappers (``wrapper=True`` or
    ``hookwrapper=True``) wrap it, and hook-call monitoring and tracing
    (``pm.add_hookcall_monitoring``, ``pm.enable_tracing``) see it. Calling per plugin is what
    lets each implementation get its own ``register`` callback, so a duplicate name is reported
    with the two plugins that registered it; a wrapper therefore runs once per implementing
    plugin, not once per :func:`collect`.

    Plugins are called, and their things returned, ``tryfirst`` implementations first and
    ``trylast`` ones last, as pluggy orders them; within one priority in registration order
    (built-ins first, then entry points, then extra plugins), the documented order in which
    parsers are tried and routes added.
    """
    found: dict[str, tuple[T, str]] = {}
    hook = getattr(pm.hook, hook_name)
    implementations = [
        impl for impl in hook.get_hookimpls() if not (impl.hookwrapper or impl.wrapper)
    ]
    priority = {impl.plugin_name: _priority(impl) for impl in implementations}
    order = sorted(dict.fromkeys(priority), key=priority.__getitem__)  # stable: registration
    for plugin_name in order:

        def register(item: T, _plugin: str = plugin_name) -> None:
            name = key(item)
            if name in found:
                raise PluginError(
                    f"{kind} {name!r} is registered by both {found[name][1]!r} and {_plugin!r}"
                )
            found[name] = (item, _plugin)

        others = [impl.plugin for impl in implementations if impl.plugin_name != plugin_name]
        caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
        caller(register=register, **kwargs)
    return {name: item for name, (item, _) in found.items()}


def _priority(impl: pluggy.HookImpl) -> int:
    return 0 if impl.tryfirst else 2 if impl.trylast else 1
