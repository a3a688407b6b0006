"""Shared pieces of the identity HTTP tests (imported by test_identity_flows/negative).

A real aiosmtpd server on 127.0.0.1 receives the application's mail, so tests read the
verification and reset links out of delivered messages, exactly as a user does. Time is a
ManualClock handed to the container; password hashing is a cheap argon2id.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.bootstrap.app import CONTAINER
from avatarstack.core.identity import RequestContext
from avatarstack.testkit.clock import ManualClock

API = "/api/v1"
PROBLEM = "application/problem+json"
PROBLEM_PREFIX = "urn:avatarstack:problem:"
PUBLIC_URL = "https://app.avatarstack.test"
SECRET_KEY = "identity-tests-secret-key-0123456789-abcdefghijklmnop"
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "an entirely different passphrase"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

_LINK = re.compile(r"https?://\S+")


def fast_hasher() -> Argon2PasswordHasher:
    return Argon2PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1)


async def login_as(
    client: Any, email_: str, role: str = "member", password: str = "correct horse battery"
) -> dict[str, str]:
    """Create a verified user with ``role`` through the app's identity service and log in:
    the Authorization header of its access token."""
    identity = client.server.app[CONTAINER].identity()
    await identity.admin.create_user(email_, password, frozenset({role}), RequestContext())
    response = await client.post("/api/v1/auth/login", json={"email": email_, "password": password})
    assert response.status == 200, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


# =========================================================================== mail


@dataclass(frozen=True)
class Delivered:
    to: str
    subject: str
    text: str

    def links(self) -> list[str]:
        return _LINK.findall(self.text)


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps every delivered message."""

    messages: list[Delivered] = field(default_factory=list)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        body = parsed.get_body(preferencelist=("plain",))
        assert body is not None
        for recipient in envelope.rcpt_tos:
            self.messages.append(
                Delivered(to=recipient, subject=str(parsed["Subject"]), text=body.get_content())
            )
        return "250 Message accepted"

    def to(self, address: str) -> list[Delivered]:
        return [m for m in self.messages if m.to == address]

    def last(self, address: str, subject_contains: str) -> Delivered:
        found = [m for m in self.to(address) if subject_contains.lower() in m.subject.lower()]
        assert found, f"no mail to {address} about {subject_contains!r}: {self.to(address)}"
        return found[-1]

    def verification_link(self, address: str) -> str:
        """The link of the newest "confirm your address" message: a path + query to GET."""
        (link,) = [u for u in self.last(address, "confirm").links() if "/auth/verify?token=" in u]
        assert link.startswith(PUBLIC_URL)
        return link.removeprefix(PUBLIC_URL)

    def verification_token(self, address: str) -> str:
        return parse_qs(urlsplit(self.verification_link(address)).query)["token"][0]

    def reset_token(self, address: str) -> str:
        """The token of the newest reset message (it travels in the link's fragment)."""
        (link,) = [u for u in self.last(address, "reset").links() if "#token=" in u]
        assert link.startswith(f"{PUBLIC_URL}/reset-password#token=")
        return link.partition("#token=")[2]


@asynccontextmanager
async def running_mail_server() -> AsyncIterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 (free port) in the test's event loop."""
    mailbox = Mailbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTPServer(mailbox, hostname="localhost"), "127.0.0.1", 0
    )
    try:
        yield mailbox, int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def smtp_settings(port: int) -> dict[str, Any]:
    return {
        "backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": False,
        "smtp_timeout": 5.0,
        "from": "avatarstack <no-reply@avatarstack.test>",
    }


# =========================================================================== API client


async def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """A problem+json response with ``status`` whose type ends with ``code``."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == PROBLEM, text
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    assert body["type"] == PROBLEM_PREFIX + code, body
    assert body["title"]
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    """The application under test, its mailbox and its clock."""

    client: Any
    mail: Mailbox
    clock: ManualClock

    @property
    def container(self) -> Any:
        return self.client.server.app[CONTAINER]

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = {**(bearer(token) if token else {}), **(headers or {})}
        response = await self.client.post(f"{API}{path}", json=body, headers=sent)
        await self.delivered()
        return response

    async def get(self, path: str, *, token: str | None = None, **options: Any) -> Any:
        response = await self.client.get(
            f"{API}{path}", headers=bearer(token) if token else None, **options
        )
        await self.delivered()
        return response

    async def delivered(self) -> None:
        """Mail goes out in the background (response times reveal nothing); wait for it."""
        await self.container.identity().outbox.flush()

    async def register(
        self, email_: str, password: str = PASSWORD, display_name: str | None = None, **kw: Any
    ) -> Any:
        body: dict[str, Any] = {"email": email_, "password": password}
        if display_name is not None:
            body["display_name"] = display_name
        return await self.post("/auth/register", body, **kw)

    async def login(self, email_: str, password: str = PASSWORD, **kw: Any) -> Any:
        return await self.post("/auth/login", {"email": email_, "password": password}, **kw)

    async def login_ok(self, email_: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.login(email_, password)
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    async def verified(self, email_: str, password: str = PASSWORD) -> None:
        """Register and follow the mailed link (no login: rate limits count logins)."""
        response = await self.register(email_, password)
        assert response.status == 202, await response.text()
        link = await self.client.get(self.mail.verification_link(email_), allow_redirects=False)
        assert link.headers["Location"] == f"{PUBLIC_URL}/?verified=1"

    async def verified_user(self, email_: str, password: str = PASSWORD) -> dict[str, Any]:
        """Register, follow the mailed link, log in: the token pair body."""
        await self.verified(email_, password)
        return await self.login_ok(email_, password)

    async def admin(self, email_: str = "root@avatarstack.test") -> dict[str, Any]:
        """An admin created the operator way (the service, as the CLI does), logged in."""
        await self.container.identity().admin.create_user(
            email_, PASSWORD, frozenset({"admin"}), RequestContext(ip="cli")
        )
        return await self.login_ok(email_)

    async def me(self, token: str) -> Any:
        return await self.get("/users/me", token=token)


async def start_api(
    avatarstack_client: Any, server: tuple[Mailbox, int], clock: ManualClock, /, **settings: Any
) -> Api:
    mailbox, port = server
    settings.setdefault("public_url", PUBLIC_URL)
    settings.setdefault("secret_key", SECRET_KEY)
    settings.setdefault("mail", smtp_settings(port))
    settings.setdefault("http", {})
    settings["http"] = {"access_log": False, **settings["http"]}
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher(), "clock": clock}, **settings
    )
    return Api(client=client, mail=mailbox, clock=clock)


MakeApi = Callable[..., Awaitable[Api]]


def claims_of(access_token: str) -> dict[str, Any]:
    """The payload of an access token, read the way any client can (no signature check)."""
    payload: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return payload


async def database_settings(request: Any, backend: str) -> dict[str, Any]:
    """Settings selecting ``backend``: SQLite (the default) or the session's PostgreSQL
    database from tests/conftest.py, emptied first (skipped or failed by its rule)."""
    if backend == "sqlite":
        return {}
    database = request.getfixturevalue("postgres_database")
    await database.truncate()
    return {"database_url": database.url}


#: parameters of a fixture that runs a test on SQLite and on PostgreSQL
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
