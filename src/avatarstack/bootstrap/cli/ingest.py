"""``avatarstack ingest``: upload documents, ingest them here (or follow a running server's
worker), and optionally build a generation."""

from __future__ import annotations

import asyncio
import mimetypes
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from avatarstack.adapters.parsers import choose_parser, upload_types
from avatarstack.bootstrap.app import make_worker
from avatarstack.bootstrap.cli.context import CliContext, cli, pass_cli
from avatarstack.bootstrap.cli.jobs import Progress, claim_index
from avatarstack.ports.documents import DocumentParser
from avatarstack.ports.errors import AvatarstackError, UnsupportedMediaTypeError
from avatarstack.ports.storage import Job


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--title", default=None, help="Title (only with one file; default: file name).")
@click.option("--build", is_flag=True, help="Build and activate a generation afterwards.")
@pass_cli
def ingest(ctx: CliContext, paths: tuple[Path, ...], title: str | None, build: bool) -> None:
    """Upload documents (files, or folders searched for the types the document parsers read:
    PDF, text and Markdown, and those of parser plugins) and ingest them here, with a progress
    bar and a result table."""
    parsers = ctx.container.parsers()
    files = collect_files(paths, parsers)
    if not files:
        raise click.ClickException(
            f"no files of the types the document parsers read ({', '.join(upload_types(parsers))})"
        )
    if title and len(files) > 1:
        raise click.ClickException("--title works with one file only")
    console = Console()

    async def run() -> list[tuple[str, str, str]]:
        async with ctx.knowledge(index=False, jobs=True) as container:
            service = container.knowledge()
            progress = Progress(service.jobs, console)
            local = await claim_index(container, console)
            rows: list[tuple[str, str, str]] = []
            jobs: dict[str, Job | None] = {}
            for path in files:
                try:
                    upload = await service.documents.upload(
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
                    generation, job = await service.generations.start_build(activate="yes")
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

    rows = ctx.run(run())
    table = Table("file", "result", "details")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if any(r[1] in {"failed", "rejected"} for r in rows):
        sys.exit(1)


def ingestible(path: Path, parsers: Sequence[DocumentParser]) -> bool:
    """Whether a parser reads ``path``: the one an upload of it would choose, by the media
    type its name suggests or by its extension."""
    try:
        choose_parser(parsers, mimetypes.guess_type(path.name)[0], path.name)
    except UnsupportedMediaTypeError:
        return False
    return True


def collect_files(paths: Iterable[Path], parsers: Sequence[DocumentParser]) -> list[Path]:
    """The files named, and in each folder named the files a parser reads (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and ingestible(p, parsers))
            )
        else:
            files.append(path)
    return files
