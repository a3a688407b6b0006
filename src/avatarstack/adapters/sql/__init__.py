"""SQL shared by the SQLite and PostgreSQL storage adapters.

The repositories are written once, with ``$1``-style placeholders, against the small
:class:`SqlConnection` interface; each adapter supplies a connection that speaks its dialect and
translates its driver's exceptions into :mod:`avatarstack.ports.errors` types.
"""

from avatarstack.adapters.sql.connection import Dialect, SqlConnection
from avatarstack.adapters.sql.migrations import Migration, load_migrations
from avatarstack.adapters.sql.unit_of_work import SqlUnitOfWork

__all__ = ["Dialect", "Migration", "SqlConnection", "SqlUnitOfWork", "load_migrations"]
