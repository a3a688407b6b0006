"""``avatarstack kb``: index generations ("training"), activation and evaluation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from avatarstack.bootstrap.app import make_worker
from avatarstack.bootstrap.cli.context import CliContext, cli, pass_cli
from avatarstack.bootstrap.cli.jobs import Progress, claim_index
from avatarstack.core.knowledge import GoldenMetrics, GoldenQuestionInput
from avatarstack.ports.storage import IndexGeneration, Job


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
@pass_cli
def kb_generations(ctx: CliContext, as_json: bool) -> None:
    """List index generations, newest first."""

    async def run() -> tuple[list[IndexGeneration], str | None]:
        async with ctx.knowledge(index=False) as container:
            return await container.knowledge().generations.list_generations()

    generations, active = ctx.run(run())
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
@pass_cli
def kb_build(ctx: CliContext, activate: str) -> None:
    """Build an index generation from the current version of every document ("training").
    Runs here when the index is free; with a running server on embedded Chroma, the server's
    worker builds it and this command follows the job."""
    console = Console()

    async def run() -> Job:
        async with ctx.knowledge(index=False, jobs=True) as container:
            service = container.knowledge()
            progress = Progress(service.jobs, console)
            local = await claim_index(container, console)
            generation, job = await service.generations.start_build(activate=activate)
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

    job = ctx.run(run())
    if job.status != "succeeded":
        raise click.ClickException(f"build failed: {job.error}")
    result = job.result
    click.echo(
        f"generation {result.get('generation_id')}: {result.get('chunks')} chunks"
        + (", active" if result.get("activated") else "")
    )


@kb.command("activate")
@click.argument("generation_id")
@pass_cli
def kb_activate(ctx: CliContext, generation_id: str) -> None:
    """Make searches use GENERATION_ID (an older one = rollback)."""

    async def run() -> None:
        async with ctx.knowledge(index=False) as container:
            await container.knowledge().generations.activate(generation_id)

    ctx.run(run())
    click.echo(f"generation {generation_id} is active")


def _golden_question(item: dict[str, Any]) -> GoldenQuestionInput:
    """One object of a ``--golden-set`` file as the service takes it (it checks the rest)."""

    def text(key: str) -> str | None:
        value = item.get(key)
        return str(value) if value else None

    return GoldenQuestionInput(
        question=text("question") or "",
        expected_document_id=text("expected_document_id"),
        expected_phrase=text("expected_phrase"),
        id=text("id"),
    )


@kb.command("eval")
@click.argument("generation_id", required=False)
@click.option(
    "--golden-set",
    "golden_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file with the questions to store first: "
    '[{"question", "expected_document_id"?, "expected_phrase"?}].',
)
@pass_cli
def kb_eval(ctx: CliContext, generation_id: str | None, golden_file: Path | None) -> None:
    """Score a generation (default: the active one) on the golden set."""

    async def run() -> GoldenMetrics:
        async with ctx.knowledge(index=False) as container:
            service = container.knowledge().evaluation
            if golden_file is not None:
                try:
                    items = json.loads(await asyncio.to_thread(golden_file.read_text))
                except (ValueError, UnicodeDecodeError) as exc:
                    raise click.ClickException(f"{golden_file} is not JSON: {exc}") from exc
                if isinstance(items, dict):
                    items = items.get("questions", [])
                if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                    raise click.ClickException("the golden set must be a list of objects")
                await service.set_golden_set([_golden_question(i) for i in items])
            target = generation_id
            if target is None:
                _, target = await container.knowledge().generations.list_generations(limit=1)
                if target is None:
                    raise click.ClickException("no active generation; name one")
            return await service.evaluate(target)

    metrics = ctx.run(run())
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
