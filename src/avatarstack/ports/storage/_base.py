"""What every storage context shares: ids, clock, vector encoding, the record base class and
the pool/timing figures an adapter reports for metrics."""

from __future__ import annotations

import bisect
import sys
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from avatarstack.ports.errors import InvalidInputError

__all__ = [
    "TIMING_BUCKETS",
    "PoolStats",
    "Record",
    "StorageTimings",
    "decode_vector",
    "encode_vector",
    "new_id",
    "utcnow",
]


def new_id() -> str:
    """A new random identifier (UUID4, canonical text form)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (services take a clock instead)."""
    return datetime.now(UTC)


def encode_vector(values: Sequence[float], dimensions: int | None = None) -> bytes:
    """The stored form of an embedding: little-endian float32, 4 bytes per dimension.

    Every storage adapter keeps cached vectors in this form, so a vector read back equals the
    one written rounded to float32 precision, whichever adapter stored it. With
    ``dimensions``, a vector of another length is InvalidInputError."""
    if dimensions is not None and len(values) != dimensions:
        raise InvalidInputError(
            f"a vector has {len(values)} dimensions where {dimensions} were expected"
        )
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def decode_vector(data: bytes) -> list[float]:
    """The inverse of :func:`encode_vector`."""
    packed = array("f")
    packed.frombytes(data)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


class Record(BaseModel):
    """The base of every stored record: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PoolStats(Record):
    """Connection-pool figures for metrics; ``size`` counts open connections."""

    size: int
    idle: int
    max_size: int


#: upper bounds (seconds) of the histograms of :class:`StorageTimings`
TIMING_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def _buckets() -> list[int]:
    return [0] * (len(TIMING_BUCKETS) + 1)


@dataclass
class StorageTimings:
    """What a storage's calls cost, for metrics: kept in plain numbers by the adapter (the event
    loop is one thread) and read when Prometheus scrapes.

    A *query* is one statement sent to the database (one ``execute``/``fetch``/``fetchrow``),
    timed from the call to the rows in hand. An *acquisition* is a unit of work (or any other
    call) taking a connection: it *waited* when none was free at that moment (the pool was
    exhausted, or SQLite's single connection was busy), and its wait is the time until it had
    one. Histogram counts are per bucket of :data:`TIMING_BUCKETS`, the last one +Inf.
    """

    queries: int = 0
    query_seconds: float = 0.0
    query_buckets: list[int] = field(default_factory=_buckets)
    acquisitions: int = 0
    waited: int = 0
    wait_seconds: float = 0.0
    wait_buckets: list[int] = field(default_factory=_buckets)

    def query(self, seconds: float) -> None:
        self.queries += 1
        self.query_seconds += seconds
        self.query_buckets[bisect.bisect_left(TIMING_BUCKETS, seconds)] += 1

    def acquired(self, *, waited: bool, seconds: float) -> None:
        self.acquisitions += 1
        self.waited += waited
        self.wait_seconds += seconds
        self.wait_buckets[bisect.bisect_left(TIMING_BUCKETS, seconds)] += 1
