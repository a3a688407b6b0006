"""The moving parts of the browser suite that are not the browser: a background asyncio loop for
the fake vendors, a real SMTP server with a mailbox, the ``avatarstack serve`` subprocess, a small
static server for the LiveKit test double, and a plain HTTP client for API facts.

Playwright's sync API marks the main thread's event loop as running, so nothing here calls
``asyncio.run`` on the main thread: every coroutine runs on :class:`BackgroundLoop`'s thread.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from playwright.sync_api import ConsoleMessage, Page

from avatarstack.testkit._server import LocalServer
from avatarstack.testkit.pdf import text_pdf

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
PASSWORD = "correct horse battery staple"
SECRET_KEY = "e2e-secret-key-" + "x" * 40

# =========================================================================== browser

CHROMIUM_ENV = "AVATARSTACK_E2E_CHROMIUM"
REQUIRED_ENV = "AVATARSTACK_TEST_BROWSER_REQUIRED"
ARTIFACTS_ENV = "AVATARSTACK_E2E_ARTIFACTS"
SCREENSHOTS_ENV = "AVATARSTACK_E2E_SCREENSHOTS"
#: Debian's chromium, headless, without anything that calls home
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: the command line, as ``python -m`` (the venv's interpreter, whatever is on PATH)
CLI = [sys.executable, "-m", "avatarstack.bootstrap.cli"]


def chromium_path() -> str:
    return os.environ.get(CHROMIUM_ENV) or "/usr/bin/chromium"


def browser_required() -> bool:
    return os.environ.get(REQUIRED_ENV, "").strip().lower() in {"1", "true", "yes"}


def artifacts_dir() -> Path:
    configured = os.environ.get(ARTIFACTS_ENV)
    return Path(configured) if configured else HERE / "artifacts"


class ConsoleLog:
    """Console messages and uncaught errors of every page of a context."""

    def __init__(self) -> None:
        self.lines: dict[Page, list[str]] = {}

    def watch(self, page: Page) -> None:
        lines = self.lines.setdefault(page, [])

        def on_console(message: ConsoleMessage) -> None:
            lines.append(f"[{message.type}] {message.text}  ({message.location.get('url', '')})")

        page.on("console", on_console)
        page.on("pageerror", lambda error: lines.append(f"[pageerror] {error}"))
        page.on(
            "requestfailed",
            lambda req: lines.append(f"[requestfailed] {req.method} {req.url}: {req.failure}"),
        )

    def of(self, page: Page) -> list[str]:
        return self.lines.get(page, [])

    def csp_violations(self) -> list[str]:
        return [
            line
            for lines in self.lines.values()
            for line in lines
            if "Content Security Policy" in line or "Content-Security-Policy" in line
        ]


# =========================================================================== background loop


class BackgroundLoop:
    """An asyncio loop on its own thread, for the fake servers the tests talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-fakes", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


# =========================================================================== mail


@dataclass(frozen=True)
class Delivered:
    to: str
    subject: str
    text: str

    def link(self, contains: str) -> str:
        links = [u for u in re.findall(r"https?://\S+", self.text) if contains in u]
        assert len(links) == 1, f"expected one link with {contains!r} in: {self.text}"
        return links[0]


@dataclass
class Mailbox:
    """The aiosmtpd handler: keeps every delivered message, and lets a test wait for one."""

    messages: list[Delivered] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        body = parsed.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        with self._changed:
            for recipient in envelope.rcpt_tos:
                self.messages.append(Delivered(recipient, str(parsed["Subject"]), text))
            self._changed.notify_all()
        return "250 Message accepted"

    def to(self, address: str) -> list[Delivered]:
        with self._changed:
            return [m for m in self.messages if m.to == address]

    def wait(self, address: str, subject: str, *, count: int = 1, timeout: float = 30) -> Delivered:
        """The newest message to ``address`` whose subject contains ``subject`` (any case),
        once at least ``count`` of them arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [
                    m
                    for m in self.messages
                    if m.to == address and subject.lower() in m.subject.lower()
                ]
                if len(found) >= count:
                    return found[-1]
                left = deadline - time.monotonic()
                assert left > 0, f"no mail to {address} about {subject!r}: {self.to(address)}"
                self._changed.wait(left)


async def start_smtp(mailbox: Mailbox) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTPServer(mailbox, hostname="localhost"), "127.0.0.1", 0
    )
    return server, int(server.sockets[0].getsockname()[1])


# =========================================================================== static files


class StaticFiles(LocalServer):
    """Serves files of this folder (the LiveKit double) to pages of another origin."""

    def __init__(self, *names: str) -> None:
        super().__init__()
        self.names = set(names)
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def _build_app(self) -> web.Application:
        async def serve(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            self.requests.append(name)
            cors = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}
            if name not in self.names:
                return web.Response(status=404, headers=cors)
            body = (HERE / name).read_bytes()
            return web.Response(body=body, content_type="text/javascript", headers=cors)

        app = web.Application()
        app.router.add_get("/{name}", serve)
        return app


# =========================================================================== HTTP client


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else ""


def request(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 15,
) -> Response:
    """One HTTP request with urllib (no event loop): JSON in, JSON (or text) out."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            status, got, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        status, got, raw = error.code, dict(error.headers), error.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Response(status, got, parsed)


def multipart(filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    """A multipart/form-data body with one ``file`` part, and its Content-Type."""
    boundary = "e2e" + uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
        f"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    body = head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# =========================================================================== the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``avatarstack serve`` in a subprocess on a free port, with its own data folder.

    ``kill()`` is SIGKILL (no goodbye); ``start()`` again comes back on the same port and data,
    like an operator restarting a crashed process. Output goes to ``log_path``."""

    def __init__(self, folder: Path, mail: tuple[Mailbox, int], settings: dict[str, str]) -> None:
        self.folder = folder
        self.mailbox, smtp_port = mail
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        base = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
        self.env = {
            **base,
            "AVATARSTACK_DATA_DIR": str(folder / "data"),
            "AVATARSTACK_LOAD_PLUGINS": "",
            "AVATARSTACK_PUBLIC_URL": self.url,
            "AVATARSTACK_SECRET_KEY": SECRET_KEY,
            "AVATARSTACK_LOG_FORMAT": "console",
            "AVATARSTACK_MAIL__BACKEND": "smtp",
            "AVATARSTACK_MAIL__SMTP_HOST": "127.0.0.1",
            "AVATARSTACK_MAIL__SMTP_PORT": str(smtp_port),
            "AVATARSTACK_MAIL__SMTP_STARTTLS": "false",
            "AVATARSTACK_MAIL__FROM": "avatarstack <no-reply@avatarstack.test>",
            # small chunks: each page of the test manual is a passage of its own, so answers
            # and search results cite one page
            "AVATARSTACK_KB__CHUNK_CHARS": "100",
            "AVATARSTACK_KB__CHUNK_OVERLAP_CHARS": "0",
            **settings,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 45) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            log.write(f"--- serve starting at {time.strftime('%H:%M:%S')}\n".encode())
            self.process = subprocess.Popen(
                [*CLI, "serve", "--port", str(self.port)],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log_tail()}")
            try:
                if request("GET", f"{self.url}/readyz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve was not ready within {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, like a crash or the OOM killer."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, as an operator stops it (SIGKILL after 15 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ operator commands

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        """Run ``avatarstack ARGS`` against this server's data, as an operator would."""
        done = subprocess.run(
            [*CLI, *args],
            cwd=self.folder,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"avatarstack {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def create_user(self, email_: str, role: str = "member", password: str = PASSWORD) -> str:
        """An account with a role, as an operator creates it (``users create``, ~1.5 s)."""
        self.cli("users", "create", email_, "--role", role, "--password-stdin", stdin=password)
        return email_

    def member(self, prefix: str = "member", *, email_: str | None = None) -> str:
        """A new verified member, as a person makes one: register over the API, then open the
        mailed link (quick; ``auth`` allows 10 registrations an hour from one address)."""
        email_ = email_ or unique_email(prefix)
        answer = self.api("POST", "/auth/register", {"email": email_, "password": PASSWORD})
        assert answer.status == 202, answer
        link = self.mailbox.wait(email_, "confirm your e-mail").link("/auth/verify?token=")
        assert request("GET", link).status == 200
        return email_

    # ------------------------------------------------------------------ API facts

    def api(self, method: str, path: str, body: Any = None, **options: Any) -> Response:
        return request(method, f"{self.url}/api/v1{path}", body, **options)

    def login(self, email_: str, password: str = PASSWORD) -> str:
        """An access token (JSON-body mode, like an API client)."""
        answer = self.api("POST", "/auth/login", {"email": email_, "password": password})
        assert answer.status == 200, answer
        return str(answer.body["access_token"])

    def events(self, token: str, conversation_id: str) -> list[dict[str, Any]]:
        answer = self.api("GET", f"/conversations/{conversation_id}/events?limit=500", token=token)
        assert answer.status == 200, answer
        return list(answer.body["events"])


def unique_email(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}@example.com"


#: accounts every seeded server has (password PASSWORD)
ADMIN = "admin@example.com"
EDITOR = "editor@example.com"


@dataclass
class Servers:
    """Starts servers for the test modules and stops whatever is left at the end.

    ``new(name, data=...)`` starts from a copy of a data folder made once per session:
    ``"accounts"`` has :data:`ADMIN` and :data:`EDITOR`; ``"manual"`` has them and the
    manual, ingested and indexed (copying is much quicker than seeding every server)."""

    root: Path
    mail: tuple[Mailbox, int]
    started: list[Server] = field(default_factory=list)
    _templates: dict[str, Path] = field(default_factory=dict)

    def new(self, name: str, *, data: str | None = None, **settings: str) -> Server:
        server = Server(self.root / f"{name}-{len(self.started)}", self.mail, settings)
        if data is not None:
            shutil.copytree(self.template(data), server.folder / "data")
        self.started.append(server)
        return server

    def liveavatar(self, name: str, fake: Any, livekit_client_url: str) -> Server:
        """A server with the manual whose avatar provider is ``liveavatar`` pointed at the fake
        LiveAvatar ``fake``, and whose console loads the LiveKit client from the URL given."""
        return self.new(
            name,
            data="manual",
            AVATARSTACK_AVATAR__PROVIDER="liveavatar",
            AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY=fake.api_key,
            AVATARSTACK_AVATAR__LIVEAVATAR__BASE_URL=fake.base_url,
            AVATARSTACK_AVATAR__SESSIONS_TOTAL="50",
            AVATARSTACK_CONSOLE__LIVEKIT_CLIENT_URL=livekit_client_url,
        )

    def template(self, name: str) -> Path:
        if name not in self._templates:
            seeder = Server(self.root / f"template-{name}", self.mail, {})
            if name == "accounts":
                seeder.create_user(ADMIN, "admin")
                seeder.create_user(EDITOR, "editor")
            elif name == "manual":
                shutil.copytree(self.template("accounts"), seeder.folder / "data")
                seed_manual(seeder)
            else:
                raise ValueError(f"no data template {name!r}")
            self._templates[name] = seeder.folder / "data"
        return self._templates[name]

    def __iter__(self) -> Iterator[Server]:
        return iter(self.started)

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


# =========================================================================== knowledge

#: the manual every knowledge-backed test asks about: one sentence per page
MANUAL_PAGES = (
    "The espresso machine needs descaling every three months.",
    "Warranty claims are handled by the Oslo service centre.",
    "The milk frother must be rinsed with warm water after every use.",
)
MANUAL_TITLE = "Espresso machine manual"


def manual_pdf(*pages: str) -> bytes:
    return text_pdf(*(pages or MANUAL_PAGES))


def seed_manual(server: Server) -> None:
    """Ingest the manual and build an active generation, with the CLI, before ``start()``
    (embedded Chroma belongs to one process at a time)."""
    path = server.folder / "manual.pdf"
    path.write_bytes(manual_pdf())
    server.cli("ingest", str(path), "--title", MANUAL_TITLE, "--build")


def wait_until(condition: Callable[[], T], timeout: float = 30, what: str = "") -> T:
    """Poll ``condition`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.1)
    return value
