"""Property-based fuzzing of the running server with Hypothesis.

Every JSON route's body (values drawn from its OpenAPI request schema, the same with garbage in
some fields, and arbitrary JSON or bytes), every query and path parameter, and every WebSocket
client frame type get generated input. The invariant: never a 5xx, every error is a
problem+json document (on the socket: the socket stays up and answers a ping, or closes with a
documented code, never 1011), and the server still answers ``/healthz``.

``AVATARSTACK_FUZZ_EXAMPLES`` sets the examples per route or frame type (default 12, which keeps
the security and fault suites within a few minutes); raise it for a deeper run.

(hypothesis-jsonschema would generate from the schemas, but its 0.23 release breaks on current
Hypothesis internals; :func:`from_openapi` covers the subset pydantic emits.)
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_kit import DUMMY, PROBLEM, authenticated, login, password_of

from avatarstack.testkit.serve import ServedApp

EXAMPLES = int(os.environ.get("AVATARSTACK_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
FUZZER = "fuzzer@security.example.com"
ENDS_SESSION = {("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/users/me/sessions")}
ENDS_SESSION = {("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/users/me/sessions")}

# =========================================================================== strategies

#: arbitrary JSON: the shapes a confused or hostile client sends
garbage_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.sampled_from(["", "\x00", "9223372036854775808", "../../etc/passwd", "' OR 1=1 --"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
#: strings for query and path parameters
garbage_text = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.sampled_from(["9223372036854775808", "-1", "0", "true", "1e308", "NaN", "%00", "\x00"]),
)


def from_openapi(schema: dict[str, Any], components: dict[str, Any], garbage: bool) -> Any:
    """Values of ``schema`` (the keywords pydantic emits); with ``garbage``, any value may be
    replaced by arbitrary JSON."""
    strategy = _valid(schema, components, garbage)
    return st.one_of(strategy, garbage_json) if garbage else strategy


def _valid(schema: dict[str, Any], components: dict[str, Any], garbage: bool) -> Any:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: from_openapi(components[name], components, garbage))
    if "anyOf" in schema:
        return st.one_of([from_openapi(s, components, garbage) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        text = st.text(
            min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 80), 80)
        )
        if "pattern" in schema:
            text = st.one_of(text, st.from_regex(schema["pattern"], fullmatch=True))
        return text
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**63)), schema.get("maximum", 2**63))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_openapi(schema.get("items", {}), components, garbage)
        return st.lists(items, max_size=min(schema.get("maxItems", 5), 5))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {
                k: from_openapi(v, components, garbage)
                for k, v in properties.items()
                if k in required
            },
            optional={
                k: from_openapi(v, components, garbage)
                for k, v in properties.items()
                if k not in required
            },
        )
    return garbage_json


# =========================================================================== the server


@pytest.fixture(scope="module")
def fuzz_token(server: ServedApp) -> str:
    """An admin of its own, so every route's validation is reached (and other tests' sessions
    are not ended by what the fuzzer sends)."""
    server.create_user(FUZZER, password_of(FUZZER), "admin")

    async def sign_in() -> str:
        async with aiohttp.ClientSession(server.url) as http:
            return str((await login(http, FUZZER))["access_token"])

    return asyncio.run(sign_in())


def operations(server: ServedApp) -> Iterator[tuple[str, str, dict[str, Any]]]:
    paths = server.openapi()["paths"]
    assert isinstance(paths, dict)
    for path, methods in sorted(paths.items()):
        for method, operation in sorted(methods.items()):
            if path.endswith("/ws") or method not in {"get", "post", "put", "patch", "delete"}:
                continue
            if (method.upper(), path) in ENDS_SESSION:  # the fuzzer's own login session
                continue
            yield method.upper(), path, operation


def send(
    server: ServedApp, method: str, target: str, token: str, body: bytes | None = None
) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.255.0.1"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
        return response.status, response.getheader("Content-Type", ""), text
    finally:
        connection.close()


def check(label: str, status: int, content_type: str, text: str) -> None:
    assert status < 500, f"{label} → {status}: {text[:500]}"
    if status >= 400:
        assert content_type.startswith(PROBLEM), f"{label} → {status} {content_type}: {text[:300]}"
        assert json.loads(text)["status"] == status


def healthy(server: ServedApp) -> None:
    assert send(server, "GET", "/healthz", "")[0] == 200, "the server stopped answering /healthz"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", DUMMY, path)


# =========================================================================== HTTP


def fuzz_body(server: ServedApp, token: str, method: str, path: str, bodies: Any) -> None:
    @FUZZ
    @given(body=bodies)
    def fuzz(body: bytes) -> None:
        check(f"{method} {path} {body[:200]!r}", *send(server, method, concrete(path), token, body))

    fuzz()


def fuzz_parameters(
    server: ServedApp, token: str, method: str, path: str, values: Any, segments: Any
) -> None:
    @FUZZ
    @given(query=values, segments=segments)
    def fuzz(query: dict[str, str], segments: dict[str, str]) -> None:
        target = re.sub(r"\{([^}]+)\}", lambda m: quote(segments[m.group(1)], safe=""), path)
        if query:
            target += "?" + urlencode(query)
        check(f"{method} {target}", *send(server, method, target, token))

    fuzz()


def test_every_json_body_gets_garbage_and_never_a_5xx(server: ServedApp, fuzz_token: str) -> None:
    components = server.openapi()["components"]["schemas"]  # type: ignore[index]
    routes = 0
    for method, path, operation in operations(server):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        routes += 1
        schema = content["application/json"]["schema"]
        bodies = st.one_of(
            from_openapi(schema, components, garbage=False).map(lambda v: json.dumps(v).encode()),
            from_openapi(schema, components, garbage=True).map(lambda v: json.dumps(v).encode()),
            garbage_json.map(lambda v: json.dumps(v).encode()),
            st.binary(max_size=200),
        )

        fuzz_body(server, fuzz_token, method, path, bodies)
        healthy(server)
    assert routes >= 15


def test_every_query_and_path_parameter_gets_garbage_and_never_a_5xx(
    server: ServedApp, fuzz_token: str
) -> None:
    routes = 0
    for method, path, operation in operations(server):
        parameters = operation.get("parameters", [])
        if not parameters or method != "GET":
            continue
        routes += 1
        query = [p["name"] for p in parameters if p["in"] == "query"]
        in_path = [p["name"] for p in parameters if p["in"] == "path"]
        values = st.fixed_dictionaries({}, optional={name: garbage_text for name in query})
        # a control character in the path gets aiohttp's own text/plain 404: the finding-7 fix
        # (on main) covers it, test_findings.py has the case; until then path garbage is printable
        segments = st.fixed_dictionaries(
            {name: garbage_text.filter(lambda v: v and v.isprintable()) for name in in_path}
        )

        fuzz_parameters(server, fuzz_token, method, path, values, segments)
        healthy(server)
    assert routes >= 8


# =========================================================================== WebSocket

CLIENT_FRAME_TYPES = [
    "auth",
    "conversation.open",
    "user.message",
    "avatar.start",
    "avatar.interrupt",
    "avatar.stop",
    "ping",
    "no.such.type",
]
#: closes a socket may end with under garbage: flood (4429), too large (1009), bad token (4401)
ALLOWED_CLOSES = {4401, 4429, 1009}


@pytest.mark.parametrize("frame_type", CLIENT_FRAME_TYPES)
def test_every_websocket_frame_type_gets_garbage_and_answers_an_error_or_its_reply(
    frame_type: str, server: ServedApp, fuzz_token: str
) -> None:
    frames = st.fixed_dictionaries(
        {"type": st.just(frame_type), "data": garbage_json},
        optional={"id": garbage_json, "seq": garbage_json, "conversation_id": garbage_json},
    )

    @FUZZ
    @given(frame=frames)
    def fuzz(frame: dict[str, Any]) -> None:
        asyncio.run(exchange(server, fuzz_token, frame))

    fuzz()
    healthy(server)


async def exchange(server: ServedApp, token: str, frame: dict[str, Any]) -> None:
    """Sends ``frame`` on a fresh socket, then a ping: the pong must come back (or the socket
    closes with a documented code), and every error frame is well formed."""
    async with aiohttp.ClientSession() as http:
        ws = await authenticated(http, server.ws_url, token)
        try:
            await ws.send_str(json.dumps(frame))
            await ws.send_json({"type": "ping", "id": "probe", "data": {}})
            async with asyncio.timeout(15):
                while True:
                    message = await ws.receive()
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        assert ws.close_code in ALLOWED_CLOSES, (ws.close_code, frame)
                        return
                    reply = json.loads(message.data)
                    if reply["type"] == "error":
                        assert isinstance(reply["data"]["code"], str), reply
                        assert isinstance(reply["data"]["message"], str), reply
                    if reply["type"] == "pong" and reply["data"].get("reply_to") == "probe":
                        return
        finally:
            await ws.close()
