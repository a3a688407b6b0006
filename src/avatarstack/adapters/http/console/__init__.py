"""The web console: its pages and assets, served from this package, and its configuration.

The console is static (plain HTML, CSS and ES modules under ``static/``, no build step). Each
page path of its client-side router answers ``index.html``; assets live under ``/console/``.
Every other path keeps the API's 404 problem. Console responses carry the console's
Content-Security-Policy (see :func:`console_csp`); the security-headers signal gives every
other response the API's strict one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, Field

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.headers import CSP_HEADER
from avatarstack.adapters.http.routing import PUBLIC, Route

STATIC_DIR = Path(__file__).parent / "static"
ASSET_PREFIX = "/console"
VENDORED_LIVEKIT = f"{ASSET_PREFIX}/vendor/livekit-client/livekit-client.esm.mjs"
DEFAULT_LIVEKIT_CONNECT_SRC = ("wss://*.livekit.cloud", "https://*.livekit.cloud")
#: the page paths of the console's router (each answers index.html)
PAGES = (
    "/",
    "/login",
    "/register",
    "/forgot-password",
    "/reset-password",
    "/oauth/complete",
    "/profile",
    "/knowledge",
    "/chat",
    "/chat/{conversation_id}",
    "/admin",
)
#: providers whose video reaches the browser through a LiveKit room
LIVEKIT_PROVIDERS = frozenset({"liveavatar", "heygen"})
#: by extension; mimetypes does not know .mjs everywhere, and the console needs exact types
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, VERSION
}
#: a path segment the console serves: no hidden files, no backslashes, no traversal
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
#: vendored third-party code changes only with its folder's VERSION: browsers may keep it a day
VENDOR_CACHE = "public, max-age=86400"


#: what the upload picker offers when no parser is known
DEFAULT_UPLOAD_TYPES = (".pdf", "application/pdf")


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """What the console routes need (bootstrap fills it from the ``console`` settings)."""

    enabled: bool = True
    avatar_provider: str = "text"
    livekit_client_url: str = VENDORED_LIVEKIT
    livekit_connect_src: tuple[str, ...] = DEFAULT_LIVEKIT_CONNECT_SRC
    version: str = "0.0.0"
    #: what the upload picker offers: the registered parsers' extensions and media types
    upload_types: tuple[str, ...] = DEFAULT_UPLOAD_TYPES
    static_dir: Path = STATIC_DIR
    #: the public URL is https: WebSockets use wss
    secure: bool = False
    _csp_cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def voice_input(self) -> Literal["livekit", "browser"]:
        return "livekit" if self.avatar_provider in LIVEKIT_PROVIDERS else "browser"


CONSOLE = web.AppKey("avatarstack_console", ConsoleConfig)


class ConsoleConfigOut(BaseModel):
    avatar_provider: str
    livekit_client_url: str
    voice_input: Literal["livekit", "browser"]
    version: str
    upload_types: list[str] = Field(
        description="File extensions and media types the registered parsers read"
    )


def _origin(url: str) -> str | None:
    """``https://cdn.example/x.mjs`` → ``https://cdn.example``; None for a same-origin path."""
    parts = urlsplit(url)
    if parts.scheme in {"http", "https"} and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def console_csp(config: ConsoleConfig, host: str, secure: bool) -> str:
    """The console's Content-Security-Policy for a request to ``host``: scripts, styles and
    fonts from this origin only (plus the LiveKit module's origin when it is elsewhere), and
    connections to this origin, its WebSocket and the LiveKit servers."""
    key = f"{host}|{secure}"
    cached = config._csp_cache.get(key)
    if cached is not None:
        return cached
    script = ["'self'"]
    module_origin = _origin(config.livekit_client_url)
    if module_origin:
        script.append(module_origin)
    connect = ["'self'"]
    if _HOST.match(host):
        connect.append(f"{'wss' if secure else 'ws'}://{host}")
    connect.extend(config.livekit_connect_src)
    policy = "; ".join(
        [
            "default-src 'self'",
            "script-src " + " ".join(script),
            "style-src 'self'",
            "img-src 'self' data: blob: https:",
            "media-src 'self' blob: mediastream:",
            "connect-src " + " ".join(connect),
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    if len(config._csp_cache) < 64:  # a handful of host names in practice; never unbounded
        config._csp_cache[key] = policy
    return policy


def _config(request: web.Request) -> ConsoleConfig:
    config = request.app[CONSOLE]
    if not config.enabled:
        raise web.HTTPNotFound()
    return config


def _file_response(request: web.Request, config: ConsoleConfig, path: Path) -> web.FileResponse:
    """``path`` with its exact content type, validators (ETag, Last-Modified: aiohttp answers
    304 to a matching conditional request) and the console's CSP."""
    secure = config.secure or request.secure
    headers = {
        "Content-Type": CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
        "Cache-Control": "no-cache",
        CSP_HEADER: console_csp(config, request.host, secure),
    }
    return web.FileResponse(path, headers=headers)


async def page(request: web.Request) -> web.StreamResponse:
    """A page of the console: always ``index.html``, revalidated on every load."""
    config = _config(request)
    index = config.static_dir / "index.html"
    if not index.is_file():
        raise web.HTTPNotFound(text="The console's files are not installed.")
    return _file_response(request, config, index)


def resolve_asset(static_dir: Path, tail: str) -> Path | None:
    """The file under ``static_dir`` that ``tail`` names, or None: every segment must be a
    plain name (no ``..``, no hidden files, no backslashes or encoded separators) and the
    resolved file must still lie inside ``static_dir`` (symbolic links cannot leave it)."""
    segments = tail.split("/")
    if not tail or any(not _SEGMENT.match(s) for s in segments):
        return None
    root = static_dir.resolve()
    candidate = root.joinpath(*segments).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


async def asset(request: web.Request) -> web.StreamResponse:
    """A console asset under ``/console/``; vendored code may be cached for a day."""
    config = _config(request)
    path = resolve_asset(config.static_dir, request.match_info["tail"])
    if path is None:
        raise web.HTTPNotFound()
    response = _file_response(request, config, path)
    if request.match_info["tail"].startswith("vendor/"):
        response.headers["Cache-Control"] = VENDOR_CACHE
    return response


async def console_config(request: web.Request) -> web.Response:
    config = request.app[CONSOLE]
    body = ConsoleConfigOut(
        avatar_provider=config.avatar_provider,
        livekit_client_url=config.livekit_client_url,
        voice_input=config.voice_input,
        version=config.version or request.app[keys.CONFIG].version,
        upload_types=list(config.upload_types),
    )
    return web.json_response(body.model_dump())


CONSOLE_TAGS = ("console",)

ROUTES = [
    *(
        Route(
            "GET",
            path,
            page,
            PUBLIC,
            "console_page_" + (re.sub(r"\W+", "_", path).strip("_") or "root"),
            "A page of the web console (its index.html).",
            CONSOLE_TAGS,
            response_media_type="text/html",
            responses={404: "The console is disabled"},
            allow_head=True,
        )
        for path in PAGES
    ),
    Route(
        "GET",
        ASSET_PREFIX + "/{tail:.+}",
        asset,
        PUBLIC,
        "console_asset",
        "A static file of the web console.",
        CONSOLE_TAGS,
        responses={404: "No such file (or the console is disabled)"},
        allow_head=True,
    ),
    Route(
        "GET",
        "/api/v1/console/config",
        console_config,
        PUBLIC,
        "console_config",
        "What the web console needs to know: the avatar provider, the LiveKit module URL, the "
        "voice input it offers and the server version.",
        CONSOLE_TAGS,
        response_model=ConsoleConfigOut,
    ),
]
