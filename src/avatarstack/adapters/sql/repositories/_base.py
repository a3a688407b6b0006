"""What every SQL repository shares: the connection holder and the row/JSON helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

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


def _prefixed(alias: str, columns: Columns[Any] | str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in str(columns).split(","))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


#: parameters per statement for batched INSERTs and IN lists: under every dialect's limit
_MAX_PARAMETERS = 500


class _Repository:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn


class Columns(Generic[M]):
    """A record's table columns, written once: ``str()`` is the column list (for SELECT and
    RETURNING), :meth:`insert` the one-row INSERT, :meth:`values` its parameters in column
    order (JSON columns dumped) and :meth:`record` a row back to the record (JSON columns
    loaded). Column names equal the record's field names."""

    def __init__(self, model: type[M], names: str, *, json: Iterable[str] = ()) -> None:
        self.model = model
        self.names = tuple(name.strip() for name in names.split(","))
        self.json = tuple(json)
        self._text = ", ".join(self.names)

    def __str__(self) -> str:
        return self._text

    def insert(self, table: str) -> str:
        return f"INSERT INTO {table} ({self}) VALUES ({_placeholders(1, len(self.names))})"

    def values(self, record: M) -> list[Any]:
        values = [getattr(record, name) for name in self.names]
        return [
            _dump(value) if name in self.json else value
            for name, value in zip(self.names, values, strict=True)
        ]

    def record(self, row: Mapping[str, Any]) -> M:
        return _model(self.model, row, self.json)
