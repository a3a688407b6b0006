"""The OpenAPI 3.1 document, generated from the route declarations and their pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from avatarstack.adapters.http.routing import PUBLIC, Route

REF_TEMPLATE = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str
    title: str
    status: int
    detail: str | None = None
    request_id: str | None = None
    errors: list[dict[str, str]] | None = None


#: the multipart body of upload routes
UPLOAD_SCHEMA: dict[str, Any] = {
    "schema": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "title": {"type": "string", "maxLength": 300},
        },
    }
}


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _json(schema: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    return {"content": {media_type: {"schema": schema}}}


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": list(route.tags),
        "x-access": route.access,
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    if route.query_model is not None:
        query_schema = route.query_model.model_json_schema()
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    if parameters:
        op["parameters"] = parameters
    if route.access != PUBLIC:
        op["security"] = [{"bearer": []}]
    if route.request_model is not None:
        op["requestBody"] = {"required": True, **_json(_schema(route.request_model, components))}
    elif route.upload:
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": UPLOAD_SCHEMA}}
    success: dict[str, Any] = {"description": "Success"}
    if route.response_model is not None:
        success.update(_json(_schema(route.response_model, components), route.response_media_type))
    responses: dict[str, Any] = {str(route.status): success}
    problem = _json({"$ref": REF_TEMPLATE.format(model="Problem")}, "application/problem+json")
    documented = dict(route.responses)
    if route.upload:
        documented.setdefault(413, "File too large")
        documented.setdefault(415, "Unsupported file type")
        documented.setdefault(422, "Invalid file")
    if route.request_model is not None:
        documented.setdefault(400, "Malformed JSON")
        documented.setdefault(413, "Body too large")
        documented.setdefault(415, "Wrong content type")
        documented.setdefault(422, "Invalid input")
    if route.access != PUBLIC:
        documented.setdefault(401, "Missing or invalid credentials")
        documented.setdefault(403, "Not allowed")
    for status, description in sorted(documented.items()):
        responses[str(status)] = {"description": description, **problem}
    responses["default"] = {"description": "Error", **problem}
    op["responses"] = responses
    return op


def _head_operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    """The HEAD twin of a GET operation: the same responses, headers only."""
    op = _operation(route, components)
    op["operationId"] = f"{route.name}_head"
    op["summary"] = f"{op['summary']} (headers only)"
    op["responses"] = {
        status: {key: value for key, value in response.items() if key != "content"}
        for status, response in op["responses"].items()
    }
    return op


def build_openapi(routes: list[Route], *, version: str, server_url: str) -> dict[str, Any]:
    components: dict[str, Any] = {}
    _schema(Problem, components)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.include_in_schema:
            continue
        path = _PATH_PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, components)
        if route.allow_head:
            paths[path]["head"] = _head_operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "avatarstack",
            "version": version,
            "description": "Interactive AI avatars that know things. Errors are RFC 9457 "
            "problem details; `x-access` says who may call each operation.",
        },
        "servers": [{"url": server_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
