"""Following jobs from a command (``ingest``, ``kb build``): a progress bar per job, and this
process's own worker when the knowledge index is free."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress

from avatarstack.bootstrap.container import Container
from avatarstack.bootstrap.startup import prepare_knowledge
from avatarstack.core.knowledge import KnowledgeJobs
from avatarstack.ports.errors import IndexInUseError
from avatarstack.ports.storage import Job


async def claim_index(container: Container, console: Console) -> bool:
    """Open the knowledge index for this process's own worker. False when a running server
    (or worker) holds the embedded index: its worker then runs the jobs this command queues
    (they share the database), and this command only follows them."""
    try:
        await prepare_knowledge(container)
    except IndexInUseError as exc:
        console.print(
            f"[yellow]the knowledge index is held by a running server ({exc.holder}): its "
            "worker runs these jobs; following them here"
        )
        return False
    return True


class Progress:
    """Follows jobs in storage with a rich progress bar until each one ends."""

    def __init__(self, jobs: KnowledgeJobs, console: Console) -> None:
        self.jobs = jobs
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
                    current = await self.jobs.get_job(job.id)
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
