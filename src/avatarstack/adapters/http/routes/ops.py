"""Operational routes: liveness, readiness, metrics, the OpenAPI document, service info."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from avatarstack.adapters.http import keys, problems
from avatarstack.adapters.http.openapi import build_openapi
from avatarstack.adapters.http.pipeline import REQUEST_ID
from avatarstack.adapters.http.routing import PUBLIC, Route

OPS = ("operations",)


class Health(BaseModel):
    status: Literal["ok"]


class CheckResult(BaseModel):
    status: Literal["ok", "unavailable"]
    latency_ms: float
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ok"]
    checks: dict[str, CheckResult]


class Info(BaseModel):
    name: str
    version: str
    api_version: str
    storage: str
    schema_version: str | None


_HEALTHY = b'{"status":"ok"}'


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_HEALTHY, content_type="application/json")


async def _check(name: str, check: keys.ReadinessCheck, limit: float) -> CheckResult:
    started = time.perf_counter()
    detail: str | None = None
    try:
        async with asyncio.timeout(limit):
            await check()
    except TimeoutError:
        detail = f"{name} did not answer within {limit:g} s"
    except Exception as exc:  # a failing check is reported, never raised
        detail = str(exc) or exc.__class__.__name__
    return CheckResult(
        status="ok" if detail is None else "unavailable",
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        detail=detail,
    )


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[keys.READINESS_CHECKS]
    timeout = request.app[keys.CONFIG].readiness_timeout
    results = await asyncio.gather(*(_check(n, c, timeout) for n, c in checks.items()))
    by_name = dict(zip(checks, results, strict=True))
    metrics = request.app[keys.METRICS]
    for name, result in by_name.items():
        metrics.observe_readiness(name, result.status == "ok", result.latency_ms / 1000)
    failed = sorted(name for name, result in by_name.items() if result.status != "ok")
    body: dict[str, Any] = {
        name: result.model_dump(exclude_none=True) for name, result in by_name.items()
    }
    if failed:
        return problems.problem_response(
            503,
            "not-ready",
            "Not ready",
            f"unavailable: {', '.join(failed)}",
            headers={"Retry-After": "5"},
            request_id=request.get(REQUEST_ID),
            checks=body,
        )
    return web.json_response({"status": "ok", "checks": body})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[keys.METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def openapi(request: web.Request) -> web.Response:
    config = request.app[keys.CONFIG]
    document = build_openapi(
        request.app[keys.ROUTES].routes, version=config.version, server_url=config.public_url
    )
    return web.json_response(document)


async def info(request: web.Request) -> web.Response:
    storage = request.app[keys.STORAGE]
    body = Info(
        name="avatarstack",
        version=request.app[keys.CONFIG].version,
        api_version="v1",
        storage=storage.name,
        schema_version=await storage.schema_version(),
    )
    return web.json_response(body.model_dump())


ROUTES = [
    Route(
        "GET",
        "/healthz",
        healthz,
        PUBLIC,
        "healthz",
        "The process is alive.",
        OPS,
        response_model=Health,
        log_requests=False,
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        PUBLIC,
        "readyz",
        "Every dependency answers (503 with details when one does not).",
        OPS,
        response_model=Readiness,
        responses={503: "A dependency is unavailable"},
        log_requests=False,
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        PUBLIC,
        "metrics",
        "Prometheus metrics.",
        OPS,
        log_requests=False,
        response_media_type="text/plain",
    ),
    Route(
        "GET",
        "/api/v1/openapi.json",
        openapi,
        PUBLIC,
        "openapi",
        "This OpenAPI document.",
        OPS,
    ),
    Route(
        "GET",
        "/api/v1/info",
        info,
        PUBLIC,
        "info",
        "Service name, version and database schema version (reads the database).",
        OPS,
        response_model=Info,
        responses={503: "The database is unavailable"},
    ),
]
