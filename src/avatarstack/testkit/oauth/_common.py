"""What the fake OAuth servers share: PKCE, redirects, grants, and the request log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from avatarstack.testkit._server import LocalServer

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_ok(verifier: str | None, challenge: str | None) -> bool:
    if challenge is None:
        return True
    if verifier is None or not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(_s256(verifier), challenge)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def redirect_to(target: str, params: dict[str, str]) -> web.HTTPFound:
    separator = "&" if urlsplit(target).query else "?"
    return web.HTTPFound(f"{target}{separator}{urlencode(params)}")


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    nonce: str | None
    user: Any
    issued_at: float
    used: bool = False


class OAuthServer(LocalServer):
    """An OAuth fake: records every request and can delay its token endpoint."""

    def __init__(self) -> None:
        super().__init__()
        #: seconds the token endpoint waits before answering (cut short by ``stop()``)
        self.delay_token_seconds = 0.0
        self.requests: list[str] = []  # "METHOD /path" of every request, in order

    def _routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def _build_app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path}")
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[record])
        app.add_routes(self._routes())
        return app

    async def _delay_token(self) -> None:
        await self._sleep(self.delay_token_seconds)
