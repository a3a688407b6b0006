"""Route declarations: every HTTP route states who may call it and what it takes and returns.

A :class:`Route` is registered through the ``register_routes`` hook (built-ins included); the
:class:`RouteTable` adds it to the aiohttp router and remembers the declaration, which feeds the
access middleware (deny by default) and the generated OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: anyone, no credentials
PUBLIC = "public"
#: any logged-in user
AUTHENTICATED = "authenticated"


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route and its contract.

    ``access`` is ``"public"``, ``"authenticated"`` or a permission name (``"kb:write"``);
    there is no default, so a route cannot be added without saying who may call it.
    """

    method: str
    path: str
    handler: Handler
    access: str
    name: str
    summary: str
    tags: tuple[str, ...] = ()
    request_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    status: int = 200
    #: extra documented responses: status → description
    responses: dict[int, str] = field(default_factory=dict)
    #: JSON routes accept at most the app-wide limit; upload routes raise it
    max_body_bytes: int | None = None
    #: a multipart file upload (``file`` and optional ``title`` parts): the body may be as
    #: large as the configured upload limit (``http.max_upload_bytes``)
    upload: bool = False
    #: False for high-frequency probes (/healthz, /metrics) to keep logs readable
    log_requests: bool = True
    response_media_type: str = "application/json"
    #: False for internal routes that are not part of the API (the 404/405 fallback)
    include_in_schema: bool = True
    #: a GET route that also answers HEAD (the same headers, no body), as aiohttp's
    #: ``add_get(allow_head=True)`` does; the OpenAPI document lists the GET only
    allow_head: bool = False

    def __post_init__(self) -> None:
        if not self.access:
            raise ValueError(f"route {self.method} {self.path} must declare its access")
        if self.allow_head and self.method != "GET":
            raise ValueError(f"route {self.method} {self.path}: only GET routes answer HEAD")


class RouteTable:
    """The declared routes of one application, by aiohttp route object."""

    def __init__(self) -> None:
        self._by_route: dict[web.AbstractRoute, Route] = {}
        self.routes: list[Route] = []

    def add(self, app: web.Application, route: Route, handler: Handler) -> None:
        """Add ``route`` to the router, served by ``handler`` (its pipeline-wrapped handler)."""
        aio_route = app.router.add_route(route.method, route.path, handler, name=route.name)
        self._by_route[aio_route] = route
        if route.allow_head:
            self._by_route[app.router.add_route("HEAD", route.path, handler)] = route
        self.routes.append(route)

    def undeclared(self, app: web.Application) -> list[str]:
        """Routes added to the router behind the table's back."""
        return [
            f"{r.method} {r.resource.canonical if r.resource else '?'}"
            for r in app.router.routes()
            if r not in self._by_route
        ]

    def lookup(self, aio_route: web.AbstractRoute | None) -> Route | None:
        return self._by_route.get(aio_route) if aio_route is not None else None
