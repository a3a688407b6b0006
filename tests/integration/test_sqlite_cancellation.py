"""A unit of work cancelled at any point (a WebSocket client that goes away, a request timeout)
leaves the SQLite storage usable: the connection is never left inside a transaction.

Found by the security suite's fuzzer (tests/security/test_fuzz.py): sockets closed right after
``conversation.open`` wedged the server until restart, every request a 500."""

from __future__ import annotations

import asyncio
from pathlib import Path

from avatarstack.adapters.sqlite import SqliteStorage


async def test_units_of_work_cancelled_at_every_step_leave_the_storage_usable(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "avatarstack.db")
    await storage.start()
    try:
        await storage.migrate()

        async def work() -> None:
            async with storage.unit_of_work() as uow:
                await uow.users.get_by_email("nobody@example.com")
                await uow.commit()

        for step in range(60):
            task = asyncio.create_task(work())
            for _ in range(step % 6):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.wait_for(work(), timeout=10)
    finally:
        await storage.close()
