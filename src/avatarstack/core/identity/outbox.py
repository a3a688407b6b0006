"""The identity mail outbox: messages go out in the background, after the change that caused
them is committed."""

from __future__ import annotations

import asyncio

import structlog

from avatarstack.ports.mail import Mailer, MailMessage

log = structlog.get_logger("avatarstack.identity")


class MailOutbox:
    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer
        self._pending: set[asyncio.Task[None]] = set()

    async def send(self, message: MailMessage) -> None:
        """Queue a mail after the commit. Delivery runs in the background, so how long a
        response takes never reveals whether a message was sent (known vs unknown e-mails);
        a failure is logged and never undoes the change (the user can ask again)."""
        task = asyncio.create_task(self._deliver(message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, message: MailMessage) -> None:
        try:
            await self._mailer.send(message)
        except Exception as exc:
            log.error("mail_failed", template=message.template, error=str(exc))

    async def flush(self) -> None:
        """Wait (up to 30 s) until queued mail is delivered or failed (shutdown, tests)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=30.0)
