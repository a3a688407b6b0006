"""What every command shares: the ``avatarstack`` group, the settings (read once, with logging
configured) and the container of one command line, started under the migrate-or-refuse rule,
and the one-line error a command ends with.

A command takes the :class:`CliContext` with ``@pass_cli``; a test or an embedding service may
pass its own (``cli.main(obj=CliContext(plugin_manager=pm))``) to bring plugins along.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError

from avatarstack import __version__
from avatarstack.bootstrap.container import Container, build_container
from avatarstack.bootstrap.logging import configure_logging, drain_logs
from avatarstack.bootstrap.settings import Settings
from avatarstack.bootstrap.startup import migrate_or_refuse, prepare_knowledge
from avatarstack.core.jobs import JobAnnouncer
from avatarstack.plugins.manager import (
    PluginError,
    PluginManager,
    make_plugin_manager,
    per_plugin,
    settings_view,
)
from avatarstack.ports.errors import (
    AvatarstackError,
    InvalidInputError,
    StorageUnavailableError,
)

T = TypeVar("T")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, then ``http`` overrides (``host``, ``port``; None keeps
    the setting); a clear message when invalid."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable(e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from exc
    except SettingsError as exc:  # e.g. a list setting that is not valid JSON
        raise click.ClickException(f"invalid settings: {exc}") from exc
    return with_http(settings, **overrides)


def with_http(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with the given ``http`` settings replaced (None keeps one)."""
    http = {k: v for k, v in overrides.items() if v is not None}
    if not http:
        return settings
    return settings.model_copy(update={"http": settings.http.model_copy(update=http)})


def _variable(loc: tuple[int | str, ...]) -> str:
    """The variable of a settings field: ("kb", "embedder") → AVATARSTACK_KB__EMBEDDER."""
    return "AVATARSTACK_" + "__".join(str(part).upper() for part in loc)


def one_line(exc: BaseException) -> click.ClickException:
    """The message a CLI user sees for a settings, plugin or service error: one line that says
    which variable to set, never a traceback."""
    if isinstance(exc, AvatarstackError):
        detail = exc.detail
        if isinstance(exc, InvalidInputError) and exc.errors:
            detail += ": " + "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        if isinstance(exc, StorageUnavailableError):
            detail += " (check AVATARSTACK_DATABASE_URL, and that the database is running)"
    else:
        detail = str(exc) or exc.__class__.__name__
    return click.ClickException(" ".join(detail.split()))


class CliContext:
    """One command line's settings and container, made on first use.

    ``plugin_manager`` replaces the one ``AVATARSTACK_LOAD_PLUGINS`` selects (tests, embedding
    services); ``settings`` replaces the environment's.
    """

    def __init__(
        self, *, settings: Settings | None = None, plugin_manager: PluginManager | None = None
    ) -> None:
        self._settings = settings
        self._plugin_manager = plugin_manager
        self._container: Container | None = None
        self._logging = False

    @property
    def settings(self) -> Settings:
        """The settings (read from the environment once), with logging configured."""
        if self._settings is None:
            self._settings = load_settings()
        if not self._logging:
            self._logging = True
            configure_logging(self._settings)
        return self._settings

    @property
    def container(self) -> Container:
        """The container for :attr:`settings`; nothing in it is started."""
        if self._container is None:
            self._container = build_container(self.settings, plugin_manager=self._plugin_manager)
        return self._container

    @property
    def plugin_manager(self) -> PluginManager:
        if self._plugin_manager is None:
            return make_plugin_manager(load_plugins=self.settings.load_plugins)
        return self._plugin_manager

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a command's coroutine; a service or plugin error ends it in one line."""
        return run(coro)

    @asynccontextmanager
    async def services(self) -> AsyncIterator[Container]:
        """The container with its storage started under the migrate-or-refuse rule (migrates
        in development, like ``serve``; refuses while migrations are pending in production)."""
        container = self.container
        storage = container.storage()
        await storage.start()
        try:
            await migrate_or_refuse(storage, self.settings, command=_command_path())
            yield container
        finally:
            await storage.close()

    @asynccontextmanager
    async def knowledge(self, *, index: bool, jobs: bool = False) -> AsyncIterator[Container]:
        """:meth:`services` with the knowledge store opened; ``index`` True means this process
        needs the vector index (embedded Chroma is locked: a running server makes this fail).
        ``jobs`` True starts the broadcaster: the jobs this command queues are announced to the
        workers (its own, and on PostgreSQL every instance's), and its workers hear of
        theirs."""
        # a broken embedder setting ends the command before it touches the database
        self.container.embedder()
        async with self.services() as container:
            announcer: JobAnnouncer | None = None
            try:
                if jobs:
                    await container.broadcaster().start()
                    announcer = JobAnnouncer(container.broadcaster())
                    container.knowledge().jobs.on_job_queued(announcer)
                if index:
                    await prepare_knowledge(container)
                yield container
            finally:
                if announcer is not None:
                    await announcer.drain()
                    await container.broadcaster().close()
                await container.knowledge_store().close()


#: gives a command the :class:`CliContext` of its command line (made when none was passed)
pass_cli = click.make_pass_decorator(CliContext, ensure=True)


def _command_path() -> str:
    """The running command without the program name: ``users create``."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return "serve"
    return ctx.command_path.partition(" ")[2] or ctx.command_path


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except (AvatarstackError, PluginError) as exc:
        raise one_line(exc) from exc


def install_stop(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop``."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def _settings_loader(pm: PluginManager, plugin_name: str) -> Callable[[], object]:
    """A plugin command's ``settings()``: the plugin's own settings, read when it runs."""
    return lambda: settings_view(pm, plugin_name, load_settings())


class AvatarstackGroup(click.Group):
    """Adds plugin commands lazily, when the command line is actually parsed."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        try:
            pm = make_plugin_manager(load_plugins=load_settings().load_plugins)
        except (PluginError, click.ClickException) as exc:
            message = exc.message if isinstance(exc, click.ClickException) else str(exc)
            click.echo(f"warning: plugin commands are unavailable: {message}", err=True)
            return
        for plugin_name, call in per_plugin(pm, "register_commands"):
            before = dict(self.commands)
            call(cli=self, settings=_settings_loader(pm, plugin_name))
            replaced = sorted(n for n, c in before.items() if self.commands.get(n) is not c)
            if replaced:
                self.commands.update(before)
                click.echo(
                    f"warning: plugin {plugin_name!r} tried to replace the command(s) "
                    f"{', '.join(replaced)}; its version is ignored",
                    err=True,
                )

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PluginError, AvatarstackError) as exc:
            drain_logs()
            raise one_line(exc) from exc
        except click.ClickException:
            # log lines are written by a thread: the error line must come after them
            drain_logs()
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=AvatarstackGroup)
@click.version_option(__version__, prog_name="avatarstack")
def cli() -> None:
    """avatarstack: interactive AI avatars that know things."""
