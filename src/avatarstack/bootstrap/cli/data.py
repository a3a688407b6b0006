"""Operations on the data: ``backup``, ``restore``, ``copy-data`` (see
:mod:`avatarstack.bootstrap.operations`)."""

from __future__ import annotations

from pathlib import Path

import click

from avatarstack.bootstrap import operations
from avatarstack.bootstrap.cli.context import CliContext, cli, pass_cli
from avatarstack.bootstrap.settings import mask_url


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--wait",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds to wait for an index build in progress before giving up.",
)
@pass_cli
def backup(ctx: CliContext, path: Path, wait: float) -> None:
    """Write one consistent archive of the database and the embedded index to PATH (safe
    while `serve` runs)."""
    result = ctx.run(operations.backup(ctx.settings, path, wait=wait))
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
@pass_cli
def restore(ctx: CliContext, path: Path, force: bool) -> None:
    """Restore an archive made by `avatarstack backup` into the configured database and index
    (refuses to replace data without --force, and while a server holds the data)."""
    result = ctx.run(operations.restore(ctx.settings, path, force=force))
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
@pass_cli
def copy_data(ctx: CliContext, to_url: str, chroma_url: str | None) -> None:
    """Copy every table of the configured database into an empty database (for example from
    SQLite to PostgreSQL), verify row counts and checksums, and optionally move the indexes
    to a Chroma server."""
    result = ctx.run(operations.copy_data(ctx.settings, to_url, chroma_url=chroma_url))
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
