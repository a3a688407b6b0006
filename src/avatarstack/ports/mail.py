"""The mailer port: sends one e-mail. Adapters: console (development), SMTP."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class MailMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    to: str
    subject: str
    text: str
    html: str | None = None
    #: links the message carries (verification, reset); the console mailer prints them
    links: dict[str, str] = Field(default_factory=dict)
    #: a stable name for the kind of message (``verify_email``, ``password_reset`` …)
    template: str = "message"


class Mailer(Protocol):
    name: str

    async def send(self, message: MailMessage) -> None:
        """Deliver or raise :class:`~avatarstack.ports.errors.UnavailableError`."""

    async def ping(self) -> None:
        """Return when the mailer can deliver; raise UnavailableError otherwise."""
