"""Typed application keys: what the composition root puts on the app for handlers to use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from avatarstack.adapters.http.metrics import HttpMetrics
from avatarstack.adapters.http.pipeline import Pipeline
from avatarstack.adapters.http.routing import RouteTable
from avatarstack.core.avatars import AvatarService
from avatarstack.core.identity import IdentityService
from avatarstack.core.knowledge import KnowledgeService
from avatarstack.ports.storage import Storage


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The settings the HTTP layer needs (adapters do not import bootstrap settings)."""

    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    public_url: str = "http://127.0.0.1:8080"
    version: str = "0.0.0"
    access_log: bool = True
    readiness_timeout: float = 2.0
    #: proxies whose X-Forwarded-For is believed (addresses or networks)
    trusted_proxies: tuple[str, ...] = ()


#: a readiness check: returns when healthy, raises when not
ReadinessCheck = Callable[[], Awaitable[None]]

CONFIG = web.AppKey("avatarstack_http_config", HttpConfig)
ROUTES = web.AppKey("avatarstack_routes", RouteTable)
METRICS = web.AppKey("avatarstack_metrics", HttpMetrics)
STORAGE = web.AppKey("avatarstack_storage", Storage)
PIPELINE = web.AppKey("avatarstack_pipeline", Pipeline)
IDENTITY = web.AppKey("avatarstack_identity", IdentityService)
AVATARS = web.AppKey("avatarstack_avatars", AvatarService)
KNOWLEDGE = web.AppKey("avatarstack_knowledge", KnowledgeService)
READINESS_CHECKS: web.AppKey[dict[str, ReadinessCheck]] = web.AppKey("avatarstack_readiness_checks")
