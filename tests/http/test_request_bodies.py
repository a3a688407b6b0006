"""JSON bodies over a real socket, sent in pieces as a slow network delivers them: a body under
the limit is read whole (not just what had arrived when the handler started), and a chunked
body over the limit is a 413."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel

from avatarstack import hookimpl
from avatarstack.adapters.http import keys
from avatarstack.adapters.http.body import read_json
from avatarstack.adapters.http.routing import PUBLIC, Route

LIMIT = 1_200_000


class Document(BaseModel):
    text: str


async def measure(request: web.Request) -> web.Response:
    body = await read_json(request, Document, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    return web.json_response({"length": len(body.text)})


class MeasureRoute:
    @hookimpl
    def register_routes(self, register: Callable[[Route], None]) -> None:
        register(Route("POST", "/test/measure", measure, PUBLIC, "measure", "Measure."))


@pytest.fixture
async def address(avatarstack_client: Any) -> tuple[str, int]:
    client = await avatarstack_client(
        plugins=(("measure", MeasureRoute()),), http={"max_body_bytes": LIMIT}
    )
    return str(client.server.host), int(client.server.port)


async def send_slowly(
    address: tuple[str, int], head: bytes, pieces: list[bytes]
) -> tuple[int, dict[str, Any]]:
    """Write the request head, then each piece with a pause, and read the whole response."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(head)
        await writer.drain()
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _headers, _, body = rest.partition(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in _headers:
        body = _dechunk(body)
    return int(status_line.split()[1]), json.loads(body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def pieces_of(body: bytes, size: int = 16_384) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [200_000, 197_000 * 5, 1_000_000])
async def test_a_json_body_under_the_limit_arriving_in_pieces_is_read_whole(
    address: tuple[str, int], size: int
) -> None:
    body = json.dumps({"text": "x" * size}).encode()
    head = (
        b"POST /test/measure HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    status, answer = await send_slowly(address, head, pieces_of(body))
    assert (status, answer) == (200, {"length": size})


async def test_a_chunked_json_body_under_the_limit_is_read_whole(
    address: tuple[str, int],
) -> None:
    body = json.dumps({"text": "y" * 300_000}).encode()
    head = (
        b"POST /test/measure HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces_of(body)] + [b"0\r\n\r\n"]
    status, answer = await send_slowly(address, head, chunks)
    assert (status, answer) == (200, {"length": 300_000})


async def test_a_chunked_json_body_over_the_limit_is_a_413_problem(
    address: tuple[str, int],
) -> None:
    body = json.dumps({"text": "z" * (LIMIT + 10_000)}).encode()
    head = (
        b"POST /test/measure HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces_of(body)] + [b"0\r\n\r\n"]
    try:
        status, answer = await send_slowly(address, head, chunks)
    except ConnectionResetError:
        pytest.fail("the server dropped the connection instead of answering 413")
    assert status == 413
    assert answer["type"].endswith("payload-too-large")
