"""Plain-text and Markdown parsers: UTF-8 (with or without a BOM) or UTF-16/32 with a BOM."""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence

from avatarstack.ports.documents import ParsedDocument, ParsedPage
from avatarstack.ports.errors import InvalidInputError

#: bumped when the output for the same input changes (part of the content hash)
_REVISION = "1"

# longest BOM first: the UTF-32-LE BOM starts with the UTF-16-LE one
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_ATX_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def decode_text(data: bytes) -> str:
    """The text of ``data`` or :class:`InvalidInputError` saying why it is not text."""
    if not data:
        raise InvalidInputError("the file is empty")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise InvalidInputError(f"not valid {encoding.upper()} text") from exc
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                "not UTF-8 text (save it as UTF-8, or UTF-16 with a byte-order mark)"
            ) from exc
    if "\x00" in text:
        raise InvalidInputError("the file contains NUL bytes: it looks binary, not text")
    if not text.strip():
        raise InvalidInputError("the file contains no text")
    return text


def markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading (``# Title``) outside code fences, if any."""
    fence: str | None = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is None:
            heading = _ATX_H1.match(line)
            if heading:
                return heading.group(1).strip()
    return None


class PlainTextParser:
    """``text/plain``: the whole file as one page."""

    def __init__(self) -> None:
        self.name = "text"
        self.version = _REVISION
        self.media_types: Sequence[str] = ("text/plain",)
        self.extensions: Sequence[str] = (".txt", ".text")

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        text = decode_text(data)
        return ParsedDocument(
            pages=(ParsedPage(number=1, text=text),), parser=f"{self.name}/{self.version}"
        )


class MarkdownParser:
    """``text/markdown``: the source kept as is (the chunker uses its structure), one page; the
    title is the first ``# `` heading."""

    def __init__(self) -> None:
        self.name = "markdown"
        self.version = _REVISION
        self.media_types: Sequence[str] = ("text/markdown", "text/x-markdown")
        self.extensions: Sequence[str] = (".md", ".markdown")

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        text = decode_text(data)
        return ParsedDocument(
            pages=(ParsedPage(number=1, text=text),),
            parser=f"{self.name}/{self.version}",
            title=markdown_title(text),
        )
