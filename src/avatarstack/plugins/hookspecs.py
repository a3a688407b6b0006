"""The extension surface of avatarstack: every hook, one line of documentation each.

Hooks are synchronous and only *register* things; the objects they register carry the async
behaviour. Each ``register_<things>(register)`` hook receives a callback; a plugin calls it once
per thing. Names are unique across all plugins: a duplicate is an error naming both plugins.
A ``settings`` argument is never the application's whole settings: it is the plugin's own, an
instance of the pydantic model the plugin names in its ``settings_model`` attribute
(``AVATARSTACK_PLUGINS__<NAME>__<FIELD>``; see ``avatarstack.plugins.manager.settings_view``).
Hooks evolve by gaining arguments only. ``docs/plugins/hooks.md`` documents each one (a test
keeps it in sync with this module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from avatarstack.plugins.markers import hookspec

if TYPE_CHECKING:
    from collections.abc import Callable

    import click

    from avatarstack.adapters.http.routing import Route
    from avatarstack.ports.answers import AnswerEngine
    from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext
    from avatarstack.ports.documents import DocumentParser
    from avatarstack.ports.embeddings import Embedder
    from avatarstack.ports.oauth import OAuthProvider


@hookspec
def register_routes(register: Callable[[Route], None]) -> None:
    """Register HTTP routes (with their access rule and schemas) on the application."""


@hookspec
def register_commands(cli: click.Group, settings: Callable[[], Any]) -> None:
    """Add sub-commands to the ``avatarstack`` CLI; ``settings()`` reads the plugin's settings."""


@hookspec
def register_oauth_providers(register: Callable[[OAuthProvider], None], settings: Any) -> None:
    """Register external login providers (``OAuthProvider``); read their config from settings."""


@hookspec
def register_avatar_providers(
    register: Callable[[AvatarProvider], None], settings: Any, context: AvatarProviderContext
) -> None:
    """Register streaming-avatar vendors (``AvatarProvider``); read their keys from settings."""


@hookspec
def register_document_parsers(register: Callable[[DocumentParser], None]) -> None:
    """Register document parsers (``DocumentParser``), chosen by media type or extension."""


@hookspec
def register_embedders(register: Callable[[Embedder], None], settings: Any) -> None:
    """Register embedders (``Embedder``); ``AVATARSTACK_KB__EMBEDDER`` picks one by name."""


@hookspec
def register_answer_engines(register: Callable[[AnswerEngine], None], settings: Any) -> None:
    """Register answer engines (``AnswerEngine``); ``AVATARSTACK_ANSWER__ENGINE`` picks one."""
