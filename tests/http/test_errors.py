"""Bad input always gets a problem+json body with the right status, never a 500 or a trace."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel, Field

from avatarstack import hookimpl
from avatarstack.adapters.http import keys
from avatarstack.adapters.http.body import read_json
from avatarstack.adapters.http.routing import PUBLIC, Route
from avatarstack.bootstrap import Settings, create_app
from avatarstack.bootstrap.logging import configure_logging

PROBLEM = "application/problem+json"


class Greeting(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    times: int = Field(1, ge=1, le=3)


async def echo(request: web.Request) -> web.Response:
    body = await read_json(request, Greeting, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    return web.json_response({"hello": body.name * body.times})


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals /etc/passwd")


async def private(request: web.Request) -> web.Response:
    return web.json_response({"secret": True})


class TestRoutes:
    @hookimpl
    def register_routes(self, register: Callable[[Route], None]) -> None:
        register(Route("POST", "/test/echo", echo, PUBLIC, "echo", "Echo.", request_model=Greeting))
        register(Route("GET", "/test/crash", crash, PUBLIC, "crash", "Crash."))
        register(Route("GET", "/test/private", private, "kb:write", "private", "Private."))


@pytest.fixture
async def api(avatarstack_client: Any) -> Any:
    return await avatarstack_client(
        plugins=(("test-routes", TestRoutes()),), http={"max_body_bytes": 1024}
    )


async def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["type"].endswith(code)
    assert body["title"]
    assert "Traceback" not in await response.text()
    return body


async def test_a_valid_json_body_reaches_the_handler(api: Any) -> None:
    response = await api.post("/test/echo", json={"name": "ada", "times": 2})
    assert response.status == 200
    assert await response.json() == {"hello": "adaada"}


async def test_malformed_json_is_a_400_problem(api: Any) -> None:
    response = await api.post(
        "/test/echo", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 400, "malformed-request")


async def test_a_wrong_content_type_is_a_415_problem(api: Any) -> None:
    response = await api.post(
        "/test/echo", data=b"name=ada", headers={"Content-Type": "text/plain"}
    )
    await assert_problem(response, 415, "unsupported-media-type")


async def test_invalid_fields_are_a_422_problem_listing_each_field(api: Any) -> None:
    response = await api.post("/test/echo", json={"name": "", "times": 9})
    body = await assert_problem(response, 422, "validation-error")
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"body.name", "body.times"}
    assert all(error["message"] for error in body["errors"])


async def test_a_json_array_instead_of_an_object_is_a_422_problem(api: Any) -> None:
    response = await api.post("/test/echo", json=[1, 2])
    await assert_problem(response, 422, "validation-error")


async def test_an_oversize_body_is_a_413_problem(api: Any) -> None:
    response = await api.post("/test/echo", json={"name": "x" * 5000})
    await assert_problem(response, 413, "payload-too-large")


async def test_an_oversize_chunked_body_without_length_is_a_413_problem(api: Any) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 512

    response = await api.post(
        "/test/echo", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 413, "payload-too-large")


async def test_an_unknown_route_is_a_404_problem(api: Any) -> None:
    await assert_problem(await api.get("/no/such/route"), 404, "not-found")


async def test_a_wrong_method_is_a_405_problem_with_allow(api: Any) -> None:
    response = await api.delete("/healthz")
    await assert_problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["Allow"]


async def test_an_unexpected_error_is_a_500_problem_without_internals(api: Any) -> None:
    response = await api.get("/test/crash")
    body = await assert_problem(response, 500, "internal-error")
    text = await response.text()
    assert "passwd" not in text
    assert "RuntimeError" not in text
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_a_route_that_needs_a_permission_is_denied_without_credentials(api: Any) -> None:
    response = await api.get("/test/private")
    await assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_app_with_an_undeclared_route_refuses_to_start(
    aiohttp_client: Any, avatarstack_settings: Any
) -> None:
    app = create_app(avatarstack_settings(), setup_logging=False)
    app.router.add_get("/undeclared", private)  # bypasses the route table on purpose
    with pytest.raises(RuntimeError, match=r"undeclared: .*GET /undeclared"):
        await aiohttp_client(app)


async def test_head_on_a_get_route_is_a_405_problem(api: Any) -> None:
    response = await api.head("/healthz")
    assert response.status == 405
    assert response.headers["Allow"] == "GET"


async def test_a_sane_incoming_request_id_is_echoed(api: Any) -> None:
    response = await api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


async def test_a_hostile_incoming_request_id_is_replaced(api: Any) -> None:
    response = await api.get("/healthz", headers={"X-Request-ID": "bad id\u00e9<script>"})
    assert response.headers["X-Request-ID"] != "bad id\u00e9<script>"
    assert re.fullmatch(r"[0-9a-f]{22}", response.headers["X-Request-ID"])


async def test_the_log_line_of_a_crash_carries_the_request_id(api: Any) -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=stream)
    response = await api.get("/test/crash", headers={"X-Request-ID": "trace-me-42"})
    assert response.status == 500
    crash = next(
        json.loads(line) for line in stream.getvalue().splitlines() if '"unhandled_error"' in line
    )
    assert crash["request_id"] == "trace-me-42"
    assert "passwd" in crash.get("exception", "")  # the trace goes to the log, not the client
