"""The mailer contract over the console and SMTP adapters, plus SMTP delivery against a real
aiosmtpd server on 127.0.0.1: AUTH, STARTTLS with a self-signed certificate, retries on 4xx,
no retries on 5xx, timeouts, and credentials that never leak into errors or logs.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import email.policy
import io
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from avatarstack.adapters.console import ConsoleMailer
from avatarstack.adapters.smtp import SmtpMailer
from avatarstack.bootstrap.logging import configure_logging
from avatarstack.bootstrap.settings import Settings
from avatarstack.ports.errors import InvalidInputError, UnavailableError, UpstreamError
from avatarstack.ports.mail import Mailer, MailMessage

USERNAME = "mailer"
PASSWORD = "s3cr3t-Pa55w0rd-that-must-not-leak"
SENDER = "Avatarstack <no-reply@avatarstack.test>"
VERIFY_URL = "http://localhost:8080/auth/verify?token=dev-verification-token-123"

MESSAGE = MailMessage(
    to="ada@example.test",
    subject="Confirm your e-mail address",
    text=f"Hello Ada,\n\nconfirm your address: {VERIFY_URL}\n",
    html=f'<p>Hello Ada,</p><p><a href="{VERIFY_URL}">Confirm your address</a></p>',
    links={"verify_email": VERIFY_URL},
    template="verify_email",
)


# =========================================================================== logging capture


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything our code logs (structlog and stdlib) during the test, at debug level."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    server_log = logging.getLogger("mail.log")  # aiosmtpd's logger: the server is not under test
    saved_server_level = server_log.level
    stream = io.StringIO()
    configure_logging(Settings(log_level="debug"), stream=stream)
    server_log.setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers, root.level = saved_handlers, saved_level
        server_log.setLevel(saved_server_level)


# =========================================================================== SMTP server


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: bytes | None


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that records delivered messages.

    ``rcpt_replies``/``data_replies`` are replies to give (one per attempt, in order) before
    accepting; ``attempts`` counts DATA commands that reached the handler.
    """

    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    data_attempts: int = 0

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_attempts += 1
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.data_attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=parsed,
                tls=session.ssl is not None,
                login=session.auth_data if session.authenticated else None,
            )
        )
        return "250 Message accepted"


def authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@dataclass
class SmtpServer:
    port: int
    handler: RecordingHandler


ServerFactory = Callable[..., Awaitable[SmtpServer]]


@pytest.fixture
async def smtp_server() -> AsyncIterator[ServerFactory]:
    """Start aiosmtpd servers on 127.0.0.1 (a free port each) in the test's event loop."""
    servers: list[asyncio.Server] = []

    async def start(handler: RecordingHandler | None = None, **options: Any) -> SmtpServer:
        handler = handler or RecordingHandler()
        options.setdefault("hostname", "localhost")
        server = await asyncio.get_running_loop().create_server(
            lambda: SMTPServer(handler, **options), "127.0.0.1", 0
        )
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return SmtpServer(port=port, handler=handler)

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def smtp_mailer(port: int, **options: Any) -> SmtpMailer:
    options.setdefault("starttls", False)
    options.setdefault("timeout", 2.0)
    options.setdefault("backoff_seconds", 0.01)
    options.setdefault("local_hostname", "client.test")
    return SmtpMailer("127.0.0.1", port, sender=SENDER, **options)


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_pem, directory / "cert.pem", directory / "key.pem")


def server_tls(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    return context


def client_trusting(certificate: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=certificate.cert_pem.decode("ascii"))


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_no_password(*texts: str) -> None:
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    for text in texts:
        assert PASSWORD not in text
        assert encoded not in text


def error_texts(exc: BaseException) -> list[str]:
    """The text of an error and of every error chained to it."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(texts) < 10:
        texts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return texts


# =========================================================================== the contract


@dataclass
class MailerKit:
    """A mailer plus a way to see what it delivered, whatever the medium."""

    mailer: Mailer
    observed: Callable[[], str]


@pytest.fixture(params=["console", "smtp"])
async def kit(
    request: pytest.FixtureRequest, log_output: io.StringIO, smtp_server: ServerFactory
) -> MailerKit:
    if request.param == "console":
        return MailerKit(ConsoleMailer(), log_output.getvalue)
    server = await smtp_server()

    def delivered() -> str:
        return "\n".join(
            f"To: {r.message['To']}\nSubject: {r.message['Subject']}\n"
            + r.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
            for r in server.handler.received
        )

    return MailerKit(smtp_mailer(server.port), delivered)


async def test_a_sent_message_shows_its_recipient_subject_and_links(kit: MailerKit) -> None:
    await kit.mailer.send(MESSAGE)

    observed = kit.observed()
    assert MESSAGE.to in observed
    assert MESSAGE.subject in observed
    assert VERIFY_URL in observed


async def test_ping_returns_when_the_mailer_can_deliver(kit: MailerKit) -> None:
    await kit.mailer.ping()


async def test_every_mailer_has_a_stable_name(kit: MailerKit) -> None:
    assert kit.mailer.name in {"console", "smtp"}


# =========================================================================== console


async def test_console_mailer_logs_one_mail_sent_event_with_the_links(
    log_output: io.StringIO,
) -> None:
    reset = MailMessage(
        to="bob@example.test",
        subject="Reset your password",
        text="Reset it here: http://localhost/reset?token=abc",
        links={"password_reset": "http://localhost/reset?token=abc"},
        template="password_reset",
    )
    await ConsoleMailer().send(reset)

    lines = [line for line in log_output.getvalue().splitlines() if "mail_sent" in line]
    assert len(lines) == 1
    # a link named like a secret is still shown: it is what the developer needs to click
    assert "http://localhost/reset?token=abc" in lines[0]
    assert "password_reset" in lines[0]
    assert "bob@example.test" in lines[0]


async def test_console_mailer_logs_the_text_body_at_debug_level(log_output: io.StringIO) -> None:
    await ConsoleMailer().send(MESSAGE)

    body_lines = [line for line in log_output.getvalue().splitlines() if "mail_body" in line]
    assert body_lines
    assert "debug" in body_lines[0]
    assert "Hello Ada" in log_output.getvalue()


# =========================================================================== SMTP delivery


async def test_smtp_delivers_text_and_html_with_headers(smtp_server: ServerFactory) -> None:
    server = await smtp_server()

    await smtp_mailer(server.port).send(MESSAGE)

    [received] = server.handler.received
    assert received.mail_from == "no-reply@avatarstack.test"
    assert received.rcpt_tos == [MESSAGE.to]
    message = received.message
    assert message["From"] == SENDER
    assert message["To"] == MESSAGE.to
    assert message["Subject"] == MESSAGE.subject
    assert message["Message-ID"].endswith("@avatarstack.test>")
    assert message["Date"]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert VERIFY_URL in plain.get_content()
    assert html is not None
    assert f'href="{VERIFY_URL}"' in html.get_content()
    assert message.get_content_type() == "multipart/alternative"


async def test_smtp_sends_text_only_messages_without_an_html_part(
    smtp_server: ServerFactory,
) -> None:
    server = await smtp_server()

    await smtp_mailer(server.port).send(MESSAGE.model_copy(update={"html": None}))

    [received] = server.handler.received
    assert received.message.get_content_type() == "text/plain"
    assert "Hello Ada" in received.message.get_content()


async def test_smtp_authenticates_with_username_and_password(smtp_server: ServerFactory) -> None:
    server = await smtp_server(authenticator=authenticator, auth_require_tls=False)

    await smtp_mailer(server.port, username=USERNAME, password=PASSWORD).send(MESSAGE)

    [received] = server.handler.received
    assert received.login == USERNAME.encode()


async def test_smtp_upgrades_with_starttls_and_authenticates_over_tls(
    smtp_server: ServerFactory, certificate: Certificate
) -> None:
    server = await smtp_server(
        tls_context=server_tls(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    mailer = smtp_mailer(
        server.port,
        starttls=True,
        tls_context=client_trusting(certificate),
        username=USERNAME,
        password=PASSWORD,
    )

    await mailer.ping()
    await mailer.send(MESSAGE)

    [received] = server.handler.received
    assert received.tls
    assert received.login == USERNAME.encode()


async def test_smtp_refuses_an_untrusted_certificate_without_retrying(
    smtp_server: ServerFactory, certificate: Certificate
) -> None:
    server = await smtp_server(tls_context=server_tls(certificate), require_starttls=True)
    mailer = smtp_mailer(server.port, starttls=True, retries=3, backoff_seconds=1.0)

    started = time.monotonic()
    with pytest.raises(UpstreamError, match="certificate"):
        await mailer.send(MESSAGE)
    assert time.monotonic() - started < 1.0
    assert server.handler.received == []


async def test_smtp_does_not_fall_back_to_plain_text_when_starttls_is_missing(
    smtp_server: ServerFactory,
) -> None:
    server = await smtp_server()

    with pytest.raises(UpstreamError):
        await smtp_mailer(server.port, starttls=True).send(MESSAGE)
    assert server.handler.received == []


async def test_smtp_retries_temporary_rejections_then_delivers(
    smtp_server: ServerFactory, log_output: io.StringIO
) -> None:
    handler = RecordingHandler(data_replies=["451 4.3.0 try again"] * 2)
    server = await smtp_server(handler)

    await smtp_mailer(server.port, retries=3).send(MESSAGE)

    assert handler.data_attempts == 3
    assert len(handler.received) == 1
    assert log_output.getvalue().count("mail_retry") == 2


async def test_smtp_retries_greylisted_recipients(smtp_server: ServerFactory) -> None:
    handler = RecordingHandler(rcpt_replies=["451 4.7.1 greylisted, come back later"])
    server = await smtp_server(handler)

    await smtp_mailer(server.port).send(MESSAGE)

    assert handler.rcpt_attempts == 2
    assert len(handler.received) == 1


async def test_smtp_gives_up_as_unavailable_when_temporary_rejections_persist(
    smtp_server: ServerFactory,
) -> None:
    handler = RecordingHandler(data_replies=["451 4.3.0 try again"] * 10)
    server = await smtp_server(handler)

    with pytest.raises(UnavailableError, match="451"):
        await smtp_mailer(server.port, retries=2).send(MESSAGE)
    assert handler.data_attempts == 3


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_smtp_does_not_retry_permanent_rejections(
    smtp_server: ServerFactory, stage: str
) -> None:
    reply = "550 5.1.1 mailbox unavailable"
    handler = RecordingHandler(
        rcpt_replies=[reply] if stage == "rcpt" else [],
        data_replies=[reply] if stage == "data" else [],
    )
    server = await smtp_server(handler)

    with pytest.raises(UpstreamError, match="550"):
        await smtp_mailer(server.port, retries=3).send(MESSAGE)
    assert handler.rcpt_attempts == 1
    assert handler.received == []


async def test_smtp_reports_an_unreachable_server_as_unavailable(log_output: io.StringIO) -> None:
    mailer = smtp_mailer(closed_port(), retries=2, timeout=1.0)

    started = time.monotonic()
    with pytest.raises(UnavailableError) as raised:
        await mailer.send(MESSAGE)
    assert time.monotonic() - started < 1.0
    assert "3 attempt" in str(raised.value)


async def test_smtp_gives_up_on_a_silent_server_within_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept the connection, never greet
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        mailer = smtp_mailer(port, retries=0, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await mailer.send(MESSAGE)
        assert time.monotonic() - started < 1.0
        with pytest.raises(UnavailableError):
            await mailer.ping()
    finally:
        server.close()
        await server.wait_closed()


async def test_smtp_ping_succeeds_against_a_live_server(smtp_server: ServerFactory) -> None:
    server = await smtp_server(authenticator=authenticator, auth_require_tls=False)

    await smtp_mailer(server.port, username=USERNAME, password=PASSWORD).ping()


async def test_smtp_ping_reports_an_unreachable_server_as_unavailable() -> None:
    with pytest.raises(UnavailableError):
        await smtp_mailer(closed_port(), timeout=0.5).ping()


async def test_smtp_refuses_header_injection(smtp_server: ServerFactory) -> None:
    server = await smtp_server()
    evil = MESSAGE.model_copy(update={"subject": "Hi\r\nBcc: victim@example.test"})

    with pytest.raises(InvalidInputError):
        await smtp_mailer(server.port).send(evil)
    assert server.handler.received == []


async def test_smtp_credentials_never_appear_in_errors_or_logs(
    smtp_server: ServerFactory, log_output: io.StringIO
) -> None:
    server = await smtp_server(authenticator=authenticator, auth_require_tls=False)
    wrong = "wrong-" + PASSWORD
    texts: list[str] = []

    # refused credentials: permanent
    with pytest.raises(UpstreamError) as refused:
        await smtp_mailer(server.port, username=USERNAME, password=wrong).send(MESSAGE)
    texts += error_texts(refused.value)
    # an unreachable server, with retries logged
    mailer = smtp_mailer(closed_port(), username=USERNAME, password=PASSWORD, retries=1)
    with pytest.raises(UnavailableError) as unreachable:
        await mailer.send(MESSAGE)
    texts += error_texts(unreachable.value)
    with pytest.raises(UnavailableError) as ping_failed:
        await mailer.ping()
    texts += error_texts(ping_failed.value)
    texts.append(repr(mailer))

    assert "credentials" in str(refused.value)
    assert server.handler.received == []
    assert_no_password(*texts, log_output.getvalue())
    assert wrong not in log_output.getvalue()
    assert all(wrong not in text for text in texts)
