"""Reading request bodies into pydantic models with problem-shaped errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Annotated, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from avatarstack.ports.errors import (
    FieldError,
    InvalidInputError,
    MalformedRequestError,
    NotFoundError,
    UnsupportedMediaTypeError,
)

M = TypeVar("M", bound=BaseModel)

#: the largest integer SQLite and PostgreSQL (BIGINT) hold: a number a client sends that goes
#: into a query must not be larger, or SQLite raises OverflowError (a 500, not a 422)
SQL_INT_MAX = 2**63 - 1
#: a row offset in a listing
Offset = Annotated[int, Field(ge=0, le=SQL_INT_MAX)]
#: a database-assigned id (1, 2, …)
RowId = Annotated[int, Field(ge=1, le=SQL_INT_MAX)]
#: an event sequence number (0 = before the first event)
Seq = Annotated[int, Field(ge=0, le=SQL_INT_MAX)]
#: a sequence number in a WebSocket frame: a JSON number, never ``true`` or ``"3"`` (its range
#: is checked against the conversation, check_after_seq, before it reaches a query)
StrictSeq = Annotated[int, Field(strict=True)]


def field_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    return [
        FieldError(
            field=".".join([prefix, *(str(part) for part in err["loc"])]),
            message=err["msg"],
        )
        for err in exc.errors(include_url=False, include_input=False)
    ]


async def read_body(request: web.Request, *, max_bytes: int) -> bytes:
    """The whole body, read until its end; 413 once it grows past ``max_bytes``.

    ``StreamReader.read(n)`` returns what has arrived so far, not ``n`` bytes, so one call
    would cut a body that is still on its way (a chunked one, or any over a slow link)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(max_bytes + 1 - size):
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
        parts.append(chunk)
    return b"".join(parts)


async def read_json(request: web.Request, model: type[M], *, max_bytes: int) -> M:
    """Parse a JSON body into ``model``: 415 wrong type, 413 too large, 400 broken, 422 invalid."""
    media_type = request.content_type
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"send the body as application/json (got {media_type or 'no content type'})"
        )
    raw = await read_body(request, max_bytes=max_bytes)
    try:
        data = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequestError(f"the body is not valid JSON ({exc})") from exc
    except (RecursionError, ValueError) as exc:
        # valid JSON syntax Python will not load: nested too deeply, or an integer with more
        # digits than int() converts (sys.get_int_max_str_digits)
        raise MalformedRequestError(
            "the body is not JSON this server accepts (nested too deeply or a number too long)"
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(
            "the request body is invalid", errors=field_errors(exc, "body")
        ) from exc


def read_query(request: web.Request, model: type[M]) -> M:
    """Validate query parameters into ``model`` (422 with one error per field)."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise InvalidInputError(
            "the query parameters are invalid", errors=field_errors(exc, "query")
        ) from exc


@contextmanager
def fields_in(location: Literal["body", "query"]) -> Iterator[None]:
    """Name where the client sent the fields the core refuses. The core names a field only
    (``email``); a handler passing request fields to it wraps the call, so the problem
    response names the place too (``body.email``)."""
    try:
        yield
    except InvalidInputError as exc:
        exc.errors = [replace(e, field=f"{location}.{e.field}") for e in exc.errors]
        raise


def model_response(model: BaseModel, status: int = 200) -> web.Response:
    """A JSON response with the model's JSON (pydantic serialises dates and enums)."""
    return web.json_response(text=model.model_dump_json(), status=status)


def path_id(request: web.Request, name: str, what: str) -> str:
    """An id from the path. Ids are made by the application (UUIDs); one with control
    characters or of absurd length names nothing, and a NUL byte must not reach PostgreSQL
    (its text type cannot hold one: that would be a storage error, not a 404)."""
    value = request.match_info[name]
    if len(value) > 64 or not value.isprintable():
        raise NotFoundError(f"no such {what}")
    return value
