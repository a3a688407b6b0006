"""A mailer that logs messages instead of sending them (development only).

The links a message carries (e-mail verification, password reset) are logged on purpose so a
developer can follow them; production settings refuse this backend.
"""

from __future__ import annotations

import structlog

from avatarstack.ports.mail import MailMessage

__all__ = ["ConsoleMailer"]

log = structlog.get_logger("avatarstack.mail")


class ConsoleMailer:
    """Logs one ``mail_sent`` event per message; the text body follows at debug level.

    ``links`` is logged as a list of ``"name: url"`` strings rather than a mapping: the log
    redaction masks values under secret-looking keys, and a link named ``password_reset`` would
    otherwise be hidden from the very developer it is meant for.
    """

    name = "console"

    async def send(self, message: MailMessage) -> None:
        log.info(
            "mail_sent",
            mailer=self.name,
            to=message.to,
            subject=message.subject,
            template=message.template,
            links=[f"{name}: {url}" for name, url in message.links.items()],
        )
        log.debug("mail_body", to=message.to, template=message.template, text=message.text)

    async def ping(self) -> None:
        return None
