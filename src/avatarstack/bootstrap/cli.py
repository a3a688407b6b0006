"""The ``avatarstack`` command line: serve, worker, migrate, users, ingest, kb, backup, restore,
copy-data, plugins, config show, --version.

Plugins add commands through the ``register_commands(cli)`` hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import structlog
from aiohttp import web
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table

from avatarstack import __version__
from avatarstack.adapters.http import server as http_server
from avatarstack.bootstrap import operations
from avatarstack.bootstrap.app import create_app, make_worker, prepare_knowledge
from avatarstack.bootstrap.container import Container, build_container
from avatarstack.bootstrap.logging import configure_logging
from avatarstack.bootstrap.settings import Settings, mask_url, masked
from avatarstack.core.accounts import MEMBER, ROLES
from avatarstack.core.identity import Profile, RequestContext
from avatarstack.core.jobs import JobAnnouncer
from avatarstack.core.knowledge import GoldenMetrics, KnowledgeService
from avatarstack.plugins.manager import (
    PluginError,
    PluginManager,
    make_plugin_manager,
    per_plugin,
    settings_view,
)
from avatarstack.ports.errors import (
    AvatarstackError,
    IndexInUseError,
    InvalidInputError,
    StorageUnavailableError,
)
from avatarstack.ports.storage import IndexGeneration, Job

T = TypeVar("T")

log = structlog.get_logger("avatarstack")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, then CLI overrides; a clear message when invalid."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable(e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from exc
    except SettingsError as exc:  # e.g. a list setting that is not valid JSON
        raise click.ClickException(f"invalid settings: {exc}") from exc
    http = {k: v for k, v in overrides.items() if v is not None}
    if http:
        settings = settings.model_copy(update={"http": settings.http.model_copy(update=http)})
    return settings


def _variable(loc: tuple[int | str, ...]) -> str:
    """The variable of a settings field: ("kb", "embedder") → AVATARSTACK_KB__EMBEDDER."""
    return "AVATARSTACK_" + "__".join(str(part).upper() for part in loc)


def _settings_loader(pm: PluginManager, plugin_name: str) -> Callable[[], object]:
    """A plugin command's ``settings()``: the plugin's own settings, read when it runs."""
    return lambda: settings_view(pm, plugin_name, load_settings())


def _one_line(exc: BaseException) -> click.ClickException:
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
            raise _one_line(exc) from exc

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
@click.option(
    "--no-worker",
    is_flag=True,
    help="Do not run background jobs here (separate `avatarstack worker` processes do).",
)
def serve(host: str | None, port: int | None, no_worker: bool) -> None:
    """Run the HTTP/WebSocket server (migrates automatically in development) and, unless
    --no-worker, the background job worker."""
    settings = load_settings(host=host, port=port)
    try:
        app = create_app(settings, run_worker=not no_worker)
        run_server(app, settings)
    except (AvatarstackError, PluginError) as exc:
        raise _one_line(exc) from exc


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

    applied = _run(run())
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
    except (AvatarstackError, PluginError) as exc:
        raise _one_line(exc) from exc


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


# ----------------------------------------------------------------------------- jobs and knowledge


@asynccontextmanager
async def _knowledge(
    settings: Settings, *, index: bool, jobs: bool = False
) -> AsyncIterator[Container]:
    """A started container with the knowledge store opened; ``index`` True means this process
    needs the vector index (embedded Chroma is locked: a running server makes this fail).
    ``jobs`` True starts the broadcaster: the jobs this command queues are announced to the
    workers (its own, and on PostgreSQL every instance's), and its workers hear of theirs."""
    async with _services(settings) as container:
        announcer: JobAnnouncer | None = None
        try:
            if jobs:
                await container.broadcaster().start()
                announcer = JobAnnouncer(container.broadcaster())
                container.knowledge().on_job_queued(announcer)
            if index:
                await prepare_knowledge(container)
            yield container
        finally:
            if announcer is not None:
                await announcer.drain()
                await container.broadcaster().close()
            await container.knowledge_store().close()


async def _claim_index(container: Container, console: Console) -> bool:
    """Open the knowledge index for this process's own worker. False when a running server
    (or worker) holds the embedded index: its worker then runs the jobs this command queues
    (they share the database), and this command only follows them."""
    try:
        await prepare_knowledge(container)
    except IndexInUseError:
        console.print(
            "[yellow]the knowledge index is held by a running server: its worker runs these "
            "jobs; following them here"
        )
        return False
    return True


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


@cli.command()
def worker() -> None:
    """Run background jobs (ingestion, index builds) until SIGINT/SIGTERM. Start several on
    PostgreSQL: they share the queue. Needs a Chroma server when `serve` runs too."""
    settings = load_settings()
    configure_logging(settings)

    async def run() -> None:
        async with _knowledge(settings, index=True, jobs=True) as container:
            stop = asyncio.Event()
            _install_stop(stop)
            await make_worker(container).run(stop)

    _run(run())


class _Progress:
    """Follows jobs in storage with a rich progress bar until each one ends."""

    def __init__(self, service: KnowledgeService, console: Console) -> None:
        self.service = service
        self.console = console
        #: set by a local worker's listener: look at the jobs now rather than at the next tick
        self.changed = asyncio.Event()

    def tell(self, job: Job, status: str, progress: float, error: str | None) -> None:
        """A job listener for this process's worker."""
        self.changed.set()

    async def follow(
        self, jobs: Mapping[str, Job | None], labels: Mapping[str, str]
    ) -> dict[str, Job]:
        done: dict[str, Job] = {}
        with RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as bar:
            tasks = {key: bar.add_task(labels[key], total=1.0) for key in jobs}
            while len(done) < len(jobs):
                for key, job in jobs.items():
                    if key in done:
                        continue
                    if job is None:
                        bar.update(tasks[key], completed=1.0)
                        continue
                    current = await self.service.get_job(job.id)
                    bar.update(tasks[key], completed=current.progress)
                    if current.status in {"succeeded", "failed"}:
                        bar.update(tasks[key], completed=1.0)
                        done[key] = current
                if all(j is None for k, j in jobs.items() if k not in done):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)
                self.changed.clear()
        return done


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--title", default=None, help="Title (only with one file; default: file name).")
@click.option("--build", is_flag=True, help="Build and activate a generation afterwards.")
def ingest(paths: tuple[Path, ...], title: str | None, build: bool) -> None:
    """Upload documents (files, or folders searched for PDF, text and Markdown files) and
    ingest them here, with a progress bar and a result table."""
    settings = load_settings()
    configure_logging(settings)
    files = _collect_files(paths)
    if not files:
        raise click.ClickException("no PDF, text or Markdown files found")
    if title and len(files) > 1:
        raise click.ClickException("--title works with one file only")
    console = Console()

    async def run() -> list[tuple[str, str, str]]:
        async with _knowledge(settings, index=False, jobs=True) as container:
            service = container.knowledge()
            progress = _Progress(service, console)
            local = await _claim_index(container, console)
            rows: list[tuple[str, str, str]] = []
            jobs: dict[str, Job | None] = {}
            for path in files:
                try:
                    upload = await service.upload(
                        await asyncio.to_thread(path.read_bytes),
                        filename=path.name,
                        media_type=mimetypes.guess_type(path.name)[0],
                        title=title,
                    )
                except AvatarstackError as exc:
                    rows.append((str(path), "rejected", exc.detail))
                    continue
                jobs[str(path)] = upload.job if upload.created else None
                if not upload.created:
                    rows.append(
                        (str(path), "unchanged", f"{upload.document.id} v{upload.version.version}")
                    )
            stop = asyncio.Event()
            worker_task = (
                asyncio.create_task(make_worker(container, listener=progress.tell).run(stop))
                if local
                else None
            )
            try:
                pending = {k: j for k, j in jobs.items() if j is not None}
                finished = await progress.follow(pending, {k: Path(k).name for k in pending})
                for key, job in finished.items():
                    if job.status == "succeeded":
                        r = job.result
                        note = "duplicate of " if r.get("duplicate") else ""
                        rows.append(
                            (
                                key,
                                "ingested" if not r.get("duplicate") else "unchanged",
                                f"{note}{r.get('document_id')} v{r.get('version')}"
                                + (
                                    f", {r['pages']} pages, {r['chunks']} chunks"
                                    if "pages" in r
                                    else ""
                                ),
                            )
                        )
                    else:
                        rows.append((key, "failed", job.error or "unknown error"))
                if build and any(r[1] == "ingested" for r in rows):
                    generation, job = await service.start_build(activate="yes")
                    done = await progress.follow(
                        {"build": job}, {"build": f"generation {generation.id}"}
                    )
                    outcome = done["build"]
                    rows.append(
                        (
                            f"generation {generation.id}",
                            "active" if outcome.status == "succeeded" else "failed",
                            outcome.error or f"{outcome.result.get('chunks', 0)} chunks",
                        )
                    )
            finally:
                stop.set()
                if worker_task is not None:
                    await worker_task
            return rows

    rows = _run(run())
    table = Table("file", "result", "details")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if any(r[1] in {"failed", "rejected"} for r in rows):
        sys.exit(1)


_INGESTIBLE = {".pdf", ".txt", ".text", ".md", ".markdown"}


def _collect_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _INGESTIBLE
                )
            )
        else:
            files.append(path)
    return files


@cli.group()
def kb() -> None:
    """Knowledge base: index generations and evaluation."""


def _generation_rows(generations: list[IndexGeneration], active: str | None) -> Table:
    table = Table(
        "id", "status", "active", "documents", "chunks", "embedder", "hit@k", "MRR", "created"
    )
    for g in generations:
        golden = g.metrics.get("golden") or {}
        table.add_row(
            g.id,
            g.status,
            "yes" if g.id == active else "",
            str(len(g.document_versions)),
            str(g.chunk_count),
            g.embedder,
            f"{golden['hit_at_k']:.2f}" if golden else "",
            f"{golden['mrr']:.2f}" if golden else "",
            g.created_at.isoformat(timespec="seconds"),
        )
    return table


@kb.command("generations")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def kb_generations(as_json: bool) -> None:
    """List index generations, newest first."""
    settings = load_settings()
    configure_logging(settings)

    async def run() -> tuple[list[IndexGeneration], str | None]:
        async with _knowledge(settings, index=False) as container:
            return await container.knowledge().list_generations()

    generations, active = _run(run())
    if as_json:
        click.echo(
            json.dumps(
                [{**g.model_dump(mode="json"), "active": g.id == active} for g in generations],
                indent=2,
            )
        )
        return
    Console().print(_generation_rows(generations, active))


@kb.command("build")
@click.option(
    "--activate",
    type=click.Choice(["no", "yes", "if_better"]),
    default="no",
    show_default=True,
    help="Activate when built: never, always, or when the golden set does not regress.",
)
def kb_build(activate: str) -> None:
    """Build an index generation from the current version of every document ("training").
    Runs here when the index is free; with a running server on embedded Chroma, the server's
    worker builds it and this command follows the job."""
    settings = load_settings()
    configure_logging(settings)
    console = Console()

    async def run() -> Job:
        async with _knowledge(settings, index=False, jobs=True) as container:
            service = container.knowledge()
            progress = _Progress(service, console)
            local = await _claim_index(container, console)
            generation, job = await service.start_build(activate=activate)
            stop = asyncio.Event()
            worker = make_worker(container, listener=progress.tell) if local else None
            task = asyncio.create_task(worker.run(stop)) if worker is not None else None
            try:
                done = await progress.follow(
                    {"build": job}, {"build": f"generation {generation.id}"}
                )
            finally:
                stop.set()
                if task is not None:
                    await task
            return done["build"]

    job = _run(run())
    if job.status != "succeeded":
        raise click.ClickException(f"build failed: {job.error}")
    result = job.result
    click.echo(
        f"generation {result.get('generation_id')}: {result.get('chunks')} chunks"
        + (", active" if result.get("activated") else "")
    )


@kb.command("activate")
@click.argument("generation_id")
def kb_activate(generation_id: str) -> None:
    """Make searches use GENERATION_ID (an older one = rollback)."""
    settings = load_settings()
    configure_logging(settings)

    async def run() -> None:
        async with _knowledge(settings, index=False) as container:
            await container.knowledge().activate(generation_id)

    _run(run())
    click.echo(f"generation {generation_id} is active")


@kb.command("eval")
@click.argument("generation_id", required=False)
@click.option(
    "--golden-set",
    "golden_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file with the questions to store first: "
    '[{"question", "expected_document_id"?, "expected_phrase"?}].',
)
def kb_eval(generation_id: str | None, golden_file: Path | None) -> None:
    """Score a generation (default: the active one) on the golden set."""
    settings = load_settings()
    configure_logging(settings)

    async def run() -> GoldenMetrics:
        async with _knowledge(settings, index=False) as container:
            service = container.knowledge()
            if golden_file is not None:
                try:
                    items = json.loads(await asyncio.to_thread(golden_file.read_text))
                except (ValueError, UnicodeDecodeError) as exc:
                    raise click.ClickException(f"{golden_file} is not JSON: {exc}") from exc
                if isinstance(items, dict):
                    items = items.get("questions", [])
                if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                    raise click.ClickException("the golden set must be a list of objects")
                await service.set_golden_set(items)
            target = generation_id
            if target is None:
                _, target = await service.list_generations(limit=1)
                if target is None:
                    raise click.ClickException("no active generation; name one")
            return await service.evaluate(target)

    metrics = _run(run())
    table = Table("questions", "k", "hit@1", "hit@k", "recall@k", "MRR")
    table.add_row(
        str(metrics.questions),
        str(metrics.k),
        f"{metrics.hit_at_1:.3f}",
        f"{metrics.hit_at_k:.3f}",
        f"{metrics.recall_at_k:.3f}",
        f"{metrics.mrr:.3f}",
    )
    Console().print(table)


# ----------------------------------------------------------------------------- operations


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--wait",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds to wait for an index build in progress before giving up.",
)
def backup(path: Path, wait: float) -> None:
    """Write one consistent archive of the database and the embedded index to PATH (safe
    while `serve` runs)."""
    settings = load_settings()
    configure_logging(settings)
    result = _run(operations.backup(settings, path, wait=wait))
    manifest = result.manifest
    rows = sum(t["rows"] for t in manifest["tables"].values())
    index = manifest["index"]["kind"]
    click.echo(
        f"backup {path}: {rows} rows in {len(manifest['tables'])} tables at migration "
        f"{manifest['migration_level']}, {len(manifest['generations'])} generations, index: "
        f"{'embedded Chroma copied' if index == 'embedded-chroma' else 'not copied'}"
    )


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the data the target already holds.")
def restore(path: Path, force: bool) -> None:
    """Restore an archive made by `avatarstack backup` into the configured database and index
    (refuses to replace data without --force, and while a server holds the data)."""
    settings = load_settings()
    configure_logging(settings)
    result = _run(operations.restore(settings, path, force=force))
    rebuilt = f", rebuilt the index of {', '.join(result.rebuilt)}" if result.rebuilt else ""
    click.echo(
        f"restored {path} ({result.manifest['created_at']}): {sum(result.rows.values())} rows"
        + (", embedded Chroma restored" if result.index_copied else "")
        + rebuilt
    )


@cli.command("copy-data")
@click.option("--to", "to_url", required=True, help="URL of the empty target database.")
@click.option(
    "--chroma-url",
    default=None,
    help="Rebuild the index generations into this Chroma server (from the copied chunks and "
    "embedding cache).",
)
def copy_data(to_url: str, chroma_url: str | None) -> None:
    """Copy every table of the configured database into an empty database (for example from
    SQLite to PostgreSQL), verify row counts and checksums, and optionally move the indexes
    to a Chroma server."""
    settings = load_settings()
    configure_logging(settings)
    result = _run(operations.copy_data(settings, to_url, chroma_url=chroma_url))
    click.echo(
        f"copied {sum(result.rows.values())} rows in {len(result.rows)} tables to "
        f"{mask_url(to_url)}; row counts and checksums match"
    )
    if chroma_url:
        click.echo(f"rebuilt {len(result.rebuilt)} index generations in {mask_url(chroma_url)}")
    else:
        click.echo(
            "indexes: not moved; the embedded Chroma folder keeps serving the same generations "
            "(or run again into an empty database with --chroma-url to use a Chroma server)"
        )


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(cli.main(prog_name="avatarstack"))


if __name__ == "__main__":  # pragma: no cover - ``python -m avatarstack.bootstrap.cli``
    main()
