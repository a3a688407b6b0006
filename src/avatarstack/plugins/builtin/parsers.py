"""Built-in plugin: the document parsers for PDF (pypdf), plain text and Markdown."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.parsers import MarkdownParser, PlainTextParser, PypdfParser
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.documents import DocumentParser


@hookimpl
def register_document_parsers(register: Callable[[DocumentParser], None]) -> None:
    register(PypdfParser())
    register(PlainTextParser())
    register(MarkdownParser())
