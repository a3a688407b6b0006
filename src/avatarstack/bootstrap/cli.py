"""The ``avatarstack`` command line: serve, migrate, plugins, config show, --version.

Plugins add commands through the ``register_commands(cli)`` hook.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click
import structlog
from aiohttp import web
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.table import Table

from avatarstack import __version__
from avatarstack.bootstrap.app import create_app
from avatarstack.bootstrap.container import Container, build_container
from avatarstack.bootstrap.logging import configure_logging
from avatarstack.bootstrap.settings import Settings, masked
from avatarstack.core.accounts import MEMBER, ROLES
from avatarstack.core.identity import Profile, RequestContext
from avatarstack.plugins.manager import PluginError, make_plugin_manager
from avatarstack.ports.errors import AvatarstackError, InvalidInputError

T = TypeVar("T")

log = structlog.get_logger("avatarstack")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, then CLI overrides; a clear message when invalid."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from exc
    except SettingsError as exc:  # e.g. a list setting that is not valid JSON
        raise click.ClickException(f"invalid settings: {exc}") from exc
    http = {k: v for k, v in overrides.items() if v is not None}
    if http:
        settings = settings.model_copy(update={"http": settings.http.model_copy(update=http)})
    return settings


def run_server(app: web.Application, settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM: stop accepting, let in-flight requests finish (up to
    ``http.shutdown_timeout``), run the cleanup contexts (close pools), return normally."""
    web.run_app(
        app,
        host=settings.http.host,
        port=settings.http.port,
        shutdown_timeout=settings.http.shutdown_timeout,
        access_log=None,
        print=lambda _msg: log.info(
            "serving", url=f"http://{settings.http.host}:{settings.http.port}"
        ),
        handle_signals=True,
    )


class _Cli(click.Group):
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
        for impl in pm.hook.register_commands.get_hookimpls():
            before = dict(self.commands)
            impl.function(cli=self)
            replaced = sorted(n for n, c in before.items() if self.commands.get(n) is not c)
            if replaced:
                self.commands.update(before)
                click.echo(
                    f"warning: plugin {impl.plugin_name!r} tried to replace the command(s) "
                    f"{', '.join(replaced)}; its version is ignored",
                    err=True,
                )

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=_Cli)
@click.version_option(__version__, prog_name="avatarstack")
def cli() -> None:
    """avatarstack: interactive AI avatars that know things."""


@cli.command()
@click.option("--host", default=None, help="Interface to bind (AVATARSTACK_HTTP__HOST).")
@click.option("--port", type=int, default=None, help="Port (AVATARSTACK_HTTP__PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP/WebSocket server (migrates automatically in development)."""
    settings = load_settings(host=host, port=port)
    try:
        app = create_app(settings)
        run_server(app, settings)
    except (AvatarstackError, PluginError) as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
def migrate() -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    settings = load_settings()
    configure_logging(settings)

    async def run() -> list[str]:
        storage = build_container(settings).storage()
        await storage.start()
        try:
            applied: list[str] = await storage.migrate()
            return applied
        finally:
            await storage.close()

    try:
        applied: list[str] = asyncio.run(run())
    except AvatarstackError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        click.echo(f"applied migrations: {', '.join(applied)}")
    else:
        click.echo("database schema is up to date")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List loaded plugins with their versions and hooks."""
    settings = load_settings()
    try:
        infos = make_plugin_manager(load_plugins=settings.load_plugins).describe()
    except PluginError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "version": i.version,
                        "hooks": list(i.hooks),
                        "builtin": i.builtin,
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return
    table = Table("name", "version", "hooks", "source")
    for i in infos:
        table.add_row(
            i.name, i.version, ", ".join(i.hooks), "built-in" if i.builtin else "entry point"
        )
    Console().print(table)


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
def config_show() -> None:
    """Print the effective settings as JSON, secrets masked."""
    click.echo(json.dumps(masked(load_settings()), indent=2, default=str))


@asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[Container]:
    """A started container for one CLI command (migrates in development, like ``serve``)."""
    container = build_container(settings)
    storage = container.storage()
    await storage.start()
    try:
        if not settings.is_production:
            await storage.migrate()
        elif pending := await storage.pending_migrations():
            raise click.ClickException(
                f"migrations {', '.join(pending)} are pending; run `avatarstack migrate`"
            )
        yield container
    finally:
        await storage.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except AvatarstackError as exc:
        detail = exc.detail
        if isinstance(exc, InvalidInputError) and exc.errors:
            detail += ": " + "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        raise click.ClickException(detail) from exc


@cli.group()
def users() -> None:
    """Manage user accounts."""


@users.command("create")
@click.argument("email")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="Role to grant (repeat for several; default member).",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input.",
)
def users_create(email: str, roles: tuple[str, ...], password_stdin: bool) -> None:
    """Create a verified user. Without a password the user signs in through a password
    reset or an external provider; a default password is never set."""
    settings = load_settings()
    configure_logging(settings)
    password: str | None = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def create() -> Profile:
        async with _services(settings) as container:
            return await container.identity().create_user(
                email, password, frozenset(roles or (MEMBER,)), RequestContext(ip="cli")
            )

    profile = _run(create())
    click.echo(
        f"created {profile.user.email} ({profile.user.id}) with roles "
        f"{', '.join(sorted(profile.roles))}" + ("" if password else "; no password set")
    )


@users.command("set-roles")
@click.argument("email")
@click.argument("roles", nargs=-1, required=True, type=click.Choice(ROLES))
def users_set_roles(email: str, roles: tuple[str, ...]) -> None:
    """Replace a user's roles (the last admin cannot lose the admin role)."""
    settings = load_settings()
    configure_logging(settings)

    async def update() -> Profile:
        async with _services(settings) as container:
            identity = container.identity()
            user = await identity.find_user(email)
            return await identity.set_roles(
                None, user.id, frozenset(roles), RequestContext(ip="cli")
            )

    profile = _run(update())
    click.echo(f"{profile.user.email}: {', '.join(sorted(profile.roles))}")


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(cli.main(prog_name="avatarstack"))


if __name__ == "__main__":  # pragma: no cover - ``python -m avatarstack.bootstrap.cli``
    main()
