"""Running avatarstack: ``serve``, ``worker``, ``migrate``, ``plugins``, ``config show``."""

from __future__ import annotations

import asyncio
import json

import click
import structlog
from aiohttp import web
from rich.console import Console
from rich.table import Table

from avatarstack.adapters.http import server as http_server
from avatarstack.bootstrap.app import create_app, make_worker
from avatarstack.bootstrap.cli.context import CliContext, cli, install_stop, pass_cli, with_http
from avatarstack.bootstrap.settings import Settings, masked
from avatarstack.plugins.manager import PluginError

log = structlog.get_logger("avatarstack")


def run_server(app: web.Application, settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM: stop accepting, let in-flight requests finish (up to
    ``http.shutdown_timeout``), run the cleanup contexts (close pools), return normally."""
    http_server.run(
        app,
        host=settings.http.host,
        port=settings.http.port,
        shutdown_timeout=settings.http.shutdown_timeout,
        https=settings.resolved_public_url.lower().startswith("https://"),
        on_started=lambda: _announce(settings),
    )


def _announce(settings: Settings) -> None:
    """Log where the server listens, and tell the person at the terminal where to go."""
    log.info("serving", url=f"http://{settings.http.host}:{settings.http.port}")
    if settings.console.enabled:
        console = settings.resolved_public_url.rstrip("/") + "/"
        click.echo(f"avatarstack: open {console} in a browser (Ctrl-C stops the server)", err=True)


@cli.command()
@click.option("--host", default=None, help="Interface to bind (AVATARSTACK_HTTP__HOST).")
@click.option("--port", type=int, default=None, help="Port (AVATARSTACK_HTTP__PORT).")
@click.option(
    "--no-worker",
    is_flag=True,
    help="Do not run background jobs here (separate `avatarstack worker` processes do).",
)
@pass_cli
def serve(ctx: CliContext, host: str | None, port: int | None, no_worker: bool) -> None:
    """Run the HTTP/WebSocket server (migrates automatically in development) and, unless
    --no-worker, the background job worker."""
    settings = with_http(ctx.settings, host=host, port=port)
    app = create_app(settings, setup_logging=False, run_worker=not no_worker)
    run_server(app, settings)


@cli.command()
@pass_cli
def migrate(ctx: CliContext) -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""

    async def run() -> list[str]:
        storage = ctx.container.storage()
        await storage.start()
        try:
            applied: list[str] = await storage.migrate()
            return applied
        finally:
            await storage.close()

    applied = ctx.run(run())
    if applied:
        click.echo(f"applied migrations: {', '.join(applied)}")
    else:
        click.echo("database schema is up to date")


@cli.command()
@pass_cli
def worker(ctx: CliContext) -> None:
    """Run background jobs (ingestion, index builds) until SIGINT/SIGTERM. Start several on
    PostgreSQL: they share the queue. Needs a Chroma server when `serve` runs too."""

    async def run() -> None:
        async with ctx.knowledge(index=True, jobs=True) as container:
            stop = asyncio.Event()
            install_stop(stop)
            await make_worker(container).run(stop)

    ctx.run(run())


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_cli
def plugins_command(ctx: CliContext, as_json: bool) -> None:
    """List loaded plugins with their versions and hooks."""
    try:
        infos = ctx.plugin_manager.describe()
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
@pass_cli
def config_show(ctx: CliContext) -> None:
    """Print the effective settings as JSON, secrets masked."""
    click.echo(json.dumps(masked(ctx.settings), indent=2, default=str))
