"""The narrow connection interface the shared SQL repositories are written against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL dialects the repositories run on."""

    name: str
    #: appended to a SELECT that must lock the rows it reads until the transaction ends
    for_update: str
    #: appended to the job-claim subquery so concurrent workers skip each other's rows
    skip_locked: str
    #: a statement taking a transaction-scoped named lock ($1: the name); None when every
    #: transaction already runs alone (SQLite's BEGIN IMMEDIATE)
    named_lock: str | None = None


class SqlConnection(Protocol):
    """One connection inside one transaction. SQL uses ``$1, $2, …`` placeholders."""

    dialect: Dialect

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""

    async def fetch(self, sql: str, *args: Any) -> list[Mapping[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Mapping[str, Any] | None: ...
