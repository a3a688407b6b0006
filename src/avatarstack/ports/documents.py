"""Document parsing and text processing ports for the knowledge base.

A :class:`DocumentParser` turns the bytes of one uploaded file into pages of text; plugins add
parsers through ``register_document_parsers(register)`` and the host picks one by media type or
file extension. Parsing untrusted files is dangerous (pypdf has no time or memory limit), so the
host runs parsers in a child process with a wall-clock timeout and a memory limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class ParsedPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: 1-based page number (1 for formats without pages)
    number: int = Field(ge=1)
    text: str


class ParsedDocument(BaseModel):
    model_config = ConfigDict(frozen=True)

    pages: tuple[ParsedPage, ...]
    #: the parser that produced it, with its version (part of the content hash)
    parser: str
    title: str | None = None
    meta: dict[str, str] = Field(default_factory=dict)


class DocumentParser(Protocol):
    """Parses one file. Runs in a child process: keep it picklable (a module-level class with
    plain attributes) and free of event-loop code."""

    #: stable name, e.g. ``pypdf``; with ``version`` it identifies the output
    name: str
    version: str
    media_types: Sequence[str]
    extensions: Sequence[str]

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        """Parse or raise :class:`~avatarstack.ports.errors.InvalidInputError` with a reason a
        person can act on (encrypted, empty, scanned without a text layer, not a PDF…)."""
