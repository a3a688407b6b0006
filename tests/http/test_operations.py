"""The operational routes: liveness, readiness (with recovery), metrics, OpenAPI, info."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from avatarstack.adapters.memory import MemoryStorage
from avatarstack.adapters.sql import load_migrations
from avatarstack.bootstrap.app import CONTAINER
from avatarstack.ports.storage import OneTimeToken, utcnow


async def test_healthz_answers_ok(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_reports_each_check(client: Any) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["checks"]["storage"]["status"] == "ok"


async def test_a_database_outage_makes_readyz_503_and_recovers_without_restart(
    avatarstack_client: Any,
) -> None:
    client = await avatarstack_client(database_url="memory://")
    storage = client.server.app[CONTAINER].storage()
    assert isinstance(storage, MemoryStorage)

    storage.unavailable = True
    response = await client.get("/readyz")
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["checks"]["storage"]["status"] == "unavailable"
    assert body["checks"]["storage"]["detail"]
    assert response.headers["Retry-After"]

    info = await client.get("/api/v1/info")
    assert info.status == 503
    assert (await info.json())["type"].endswith("storage-unavailable")

    storage.unavailable = False
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/api/v1/info")).status == 200


async def test_info_reads_the_schema_version_from_the_database(client: Any) -> None:
    response = await client.get("/api/v1/info")
    assert response.status == 200
    body = await response.json()
    assert body["storage"] == "sqlite"
    assert body["schema_version"] == load_migrations("avatarstack.adapters.sqlite")[-1].version
    assert body["api_version"] == "v1"


async def test_metrics_count_requests_by_route_template_and_show_the_pool(client: Any) -> None:
    await client.get("/healthz")
    await client.get("/no/such/page/12345")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'avatarstack_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="(unmatched)",status="404"' in text
    assert "12345" not in text  # raw paths never become labels
    assert "avatarstack_http_request_duration_seconds_bucket" in text
    assert 'avatarstack_db_pool_connections{backend="sqlite",state="max"} 1.0' in text
    assert 'avatarstack_build_info{version="' in text


async def test_two_apps_in_one_process_keep_separate_metrics(avatarstack_client: Any) -> None:
    first = await avatarstack_client()
    second = await avatarstack_client()
    await first.get("/healthz")
    text = await (await second.get("/metrics")).text()
    assert 'route="/healthz"' not in text


async def test_openapi_document_is_valid_and_lists_every_route_with_its_access(
    client: Any,
) -> None:
    from openapi_spec_validator import validate

    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate(document)
    app: web.Application = client.server.app
    declared = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "*"  # the 404/405 fallback is not part of the API
    }
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert declared == documented
    assert document["paths"]["/healthz"]["get"]["x-access"] == "public"
    assert "Problem" in document["components"]["schemas"]


async def test_maintenance_purges_expired_tokens_while_the_app_runs(
    avatarstack_client: Any,
) -> None:
    client = await avatarstack_client(maintenance_interval=0.05)
    storage = client.server.app[CONTAINER].storage()
    past = utcnow()
    async with storage.unit_of_work() as uow:
        await uow.tokens.add(
            OneTimeToken(token_hash="gone", purpose="x", created_at=past, expires_at=past)
        )
        await uow.commit()

    async def expired_left() -> int:
        async with storage.unit_of_work() as uow:  # never committed: only counts
            return await uow.tokens.delete_expired(utcnow())

    for _ in range(100):
        if await expired_left() == 0:
            break
        await asyncio.sleep(0.02)
    assert await expired_left() == 0
