"""The SMTP mailer.

One connection per message: connect, optionally STARTTLS, optionally AUTH, send, QUIT. Transient
failures (refused or dropped connections, timeouts, 4xx replies) are retried with exponential
backoff and jitter; permanent ones (5xx replies, a server without a required extension, a
certificate that does not verify) are not. Error messages name the server and the SMTP reply
code, never the credentials.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage

import aiosmtplib
import structlog

from avatarstack.ports.errors import InvalidInputError, UnavailableError, UpstreamError
from avatarstack.ports.mail import MailMessage

__all__ = ["SmtpMailer"]

log = structlog.get_logger("avatarstack.mail")

_MAX_REPLY = 200  # characters of a server reply kept in error messages


class _Transient(Exception):
    """One attempt failed in a way that retrying may fix; ``reason`` is safe to show."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SmtpMailer:
    """Sends :class:`MailMessage` objects through an SMTP server.

    ``timeout`` bounds each SMTP operation (connect, each command, the TLS handshake), not the
    whole delivery. ``retries`` is the number of attempts after the first one; the wait before
    retry *n* is ``backoff_seconds * 2**(n-1)`` capped at ``backoff_max_seconds``, with jitter
    of up to half of it. ``tls_context`` (or ``validate_certs=False``, for development only)
    controls how the server certificate is checked after STARTTLS.
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 8.0,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
        local_hostname: str | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be zero or more")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if password is not None and username is None:
            raise ValueError("an SMTP password needs a user name")
        _, sender_address = email.utils.parseaddr(sender)
        if "@" not in sender_address:
            raise ValueError("the sender must be an e-mail address")
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._tls_context = tls_context
        self._validate_certs = validate_certs
        self._local_hostname = local_hostname
        self._envelope_sender = sender_address
        self._domain = sender_address.rpartition("@")[2]
        self._random = random.Random()  # noqa: S311 - backoff jitter, not a secret

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self.host!r}, port={self.port}, username={self.username!r})"

    # ------------------------------------------------------------------ port

    async def send(self, message: MailMessage) -> None:
        mime = self._build(message)
        await self._resolve_local_hostname()
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                await self._deliver(mime, message.to)
            except _Transient as failure:
                if attempt == attempts:
                    raise UnavailableError(
                        f"the message could not be delivered through {self._where} after "
                        f"{attempts} attempt(s): {failure.reason}"
                    ) from failure.__cause__
                delay = self._backoff(attempt)
                log.warning(
                    "mail_retry",
                    mailer=self.name,
                    template=message.template,
                    attempt=attempt,
                    delay=round(delay, 3),
                    reason=failure.reason,
                )
                await asyncio.sleep(delay)
            else:
                log.info(
                    "mail_sent",
                    mailer=self.name,
                    template=message.template,
                    message_id=mime["Message-ID"],
                    attempts=attempt,
                )
                return

    async def ping(self) -> None:
        await self._resolve_local_hostname()
        client = self._client()
        try:
            async with client:
                await client.noop()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise UnavailableError(
                f"the SMTP server {self._where} is not ready ({self._describe(exc)})"
            ) from exc

    # ------------------------------------------------------------------ internals

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        return delay / 2 + self._random.uniform(0, delay / 2)

    def _build(self, message: MailMessage) -> EmailMessage:
        mime = EmailMessage()
        try:
            mime["From"] = self.sender
            mime["To"] = message.to
            mime["Subject"] = message.subject
            mime["Date"] = email.utils.format_datetime(datetime.now(UTC))
            mime["Message-ID"] = email.utils.make_msgid(domain=self._domain)
            mime.set_content(message.text)
            if message.html is not None:
                mime.add_alternative(message.html, subtype="html")
        except (ValueError, TypeError) as exc:
            # header injection (CR/LF in a header) or an address the e-mail package rejects
            raise InvalidInputError("the message cannot be encoded as an e-mail") from exc
        return mime

    async def _resolve_local_hostname(self) -> None:
        """The name for EHLO, looked up once. aiosmtplib would call ``socket.getfqdn()`` for
        every connection, a reverse DNS lookup that can take seconds on a host with slow or no
        DNS, and that time would count against each delivery."""
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn) or "localhost"

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self._password,
            start_tls=self.starttls,
            timeout=self.timeout,
            tls_context=self._tls_context,
            validate_certs=self._validate_certs,
            local_hostname=self._local_hostname,
        )

    async def _deliver(self, mime: EmailMessage, recipient: str) -> None:
        client = self._client()
        try:
            async with client:
                await client.send_message(
                    mime, sender=self._envelope_sender, recipients=[recipient]
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            reason = "; ".join(self._describe(refused) for refused in exc.recipients)
            if codes and all(400 <= code < 500 for code in codes):
                raise _Transient(reason, codes[0]) from exc
            raise UpstreamError(
                f"the SMTP server {self._where} refused the recipient ({reason})"
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise _Transient(self._describe(exc), exc.code) from exc
            what = (
                "refused the credentials"
                if isinstance(exc, aiosmtplib.SMTPAuthenticationError)
                else "rejected the message"
            )
            raise UpstreamError(
                f"the SMTP server {self._where} {what} ({self._describe(exc)})"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamError(
                f"the certificate of the SMTP server {self._where} does not verify"
            ) from exc
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
            OSError,
            TimeoutError,
        ) as exc:
            raise _Transient(self._describe(exc)) from exc
        except aiosmtplib.SMTPException as exc:
            # no STARTTLS or no usable AUTH mechanism: retrying cannot help
            raise UpstreamError(
                f"the SMTP server {self._where} cannot be used ({self._describe(exc)})"
            ) from exc

    def _describe(self, exc: BaseException) -> str:
        """A short, credential-free description of a failure."""
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            text = f"{exc.code} {exc.message}"
        elif isinstance(exc, aiosmtplib.SMTPException):
            text = exc.message
        else:
            text = str(exc) or type(exc).__name__
        text = " ".join(text.split())[:_MAX_REPLY]
        if self._password:
            text = text.replace(self._password, "***")
        return text
