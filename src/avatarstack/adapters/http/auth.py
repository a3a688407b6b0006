"""Who is calling: bearer-token authentication, permission checks and the client address."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.pipeline import AccessPolicy
from avatarstack.adapters.http.routing import AUTHENTICATED, Route
from avatarstack.core.identity import IdentityService, Principal, RequestContext
from avatarstack.ports.errors import AuthenticationError, PermissionDeniedError

PRINCIPAL = web.RequestKey("avatarstack_principal", Principal)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("send an access token: Authorization: Bearer <token>")
    return token.strip()


def bearer_policy(identity: IdentityService) -> AccessPolicy:
    """Authenticate the bearer token (its session must still be active) and check the route's
    permission against the caller's roles."""

    async def check(request: web.Request, route: Route) -> None:
        principal = await identity.authentication.authenticate(bearer_token(request))
        request[PRINCIPAL] = principal
        if route.access != AUTHENTICATED and not principal.can(route.access):
            raise PermissionDeniedError(f"this needs the {route.access!r} permission")

    return check


def principal(request: web.Request) -> Principal:
    """The caller of an authenticated route (set by the access policy)."""
    return request[PRINCIPAL]


@lru_cache(maxsize=64)
def _networks(
    trusted: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _is_trusted(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(trusted))


def client_ip(request: web.Request) -> str:
    """The peer address, or — only when the peer is a trusted proxy — the nearest address in
    ``X-Forwarded-For`` that is not itself a trusted proxy."""
    peer = request.remote or "unknown"
    trusted = request.app[keys.CONFIG].trusted_proxies
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def request_context(request: web.Request) -> RequestContext:
    agent = request.headers.get("User-Agent")
    return RequestContext(ip=client_ip(request), user_agent=agent[:300] if agent else None)
