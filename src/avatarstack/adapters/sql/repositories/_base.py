"""What every SQL repository shares: the connection holder and the row/JSON helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from avatarstack.adapters.sql.connection import SqlConnection

M = TypeVar("M", bound=BaseModel)


def _dump(value: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(value or {}), separators=(",", ":"), sort_keys=True)


def _model(model: type[M], row: Mapping[str, Any], json_fields: Iterable[str] = ()) -> M:
    data = dict(row)
    for name in json_fields:
        raw = data.get(name)
        data[name] = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return model.model_validate(data)


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


def _rows(width: int, count: int) -> str:
    """``($1, …, $width), ($width+1, …)``: the VALUES of a ``count``-row INSERT."""
    return ", ".join(f"({_placeholders(1 + i * width, width)})" for i in range(count))


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


#: parameters per statement for batched INSERTs and IN lists: under every dialect's limit
_MAX_PARAMETERS = 500


class _Repository:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn
