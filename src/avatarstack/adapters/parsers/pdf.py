"""PDF parser on pypdf: text per page, with the page numbers kept.

pypdf has no time or memory limit; run this through
:func:`avatarstack.adapters.parsers.isolated.parse_isolated`, never in the server process.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import pypdf
from pypdf import PasswordType, PdfReader
from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

from avatarstack.ports.documents import ParsedDocument, ParsedPage
from avatarstack.ports.errors import InvalidInputError

#: bumped when the output for the same pypdf version changes (part of the content hash)
_REVISION = "1"
#: the PDF header may follow up to 1 KiB of junk (what readers tolerate)
_HEADER_WINDOW = 1024


def check_pdf_bytes(data: bytes) -> None:
    """The refusals every PDF parser shares, before any library sees the bytes."""
    if not data:
        raise InvalidInputError("the file is empty")
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise InvalidInputError("not a PDF (the file does not start with %PDF-)")


ENCRYPTED = "the PDF is encrypted; upload it without a password"


class PypdfParser:
    """``application/pdf`` on pypdf; refuses encrypted, empty, text-less and oversized PDFs."""

    def __init__(self, max_pages: int = 2000) -> None:
        self.name = "pypdf"
        self.version = f"{_REVISION}+pypdf.{pypdf.__version__}"
        self.media_types: Sequence[str] = ("application/pdf",)
        self.extensions: Sequence[str] = (".pdf",)
        self.max_pages = max_pages

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        check_pdf_bytes(data)
        # pypdf logs every repair it makes to a broken file; that is noise in the server logs
        logging.getLogger("pypdf").setLevel(logging.ERROR)
        try:
            return self._parse(data)
        except InvalidInputError:
            raise
        except MemoryError:
            raise  # the isolated runner reports the memory limit
        except RecursionError as exc:
            raise InvalidInputError("the PDF is nested too deeply to read") from exc
        except FileNotDecryptedError as exc:
            raise InvalidInputError(ENCRYPTED) from exc
        except LimitReachedError as exc:
            raise InvalidInputError(
                "the PDF contains a stream that is too large once decompressed"
            ) from exc
        except PyPdfError as exc:
            raise InvalidInputError(
                f"the PDF is damaged and could not be read ({exc})"[:300]
            ) from exc
        except Exception as exc:  # pypdf raises anything on malformed input
            raise InvalidInputError(
                f"the PDF is damaged and could not be read ({type(exc).__name__})"
            ) from exc

    def _parse(self, data: bytes) -> ParsedDocument:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise InvalidInputError(ENCRYPTED)
        declared = _declared_page_count(reader)
        if declared is not None and declared > self.max_pages:
            raise self._too_many(declared)
        count = len(reader.pages)
        if count == 0:
            raise InvalidInputError("the PDF has no pages")
        if count > self.max_pages:
            raise self._too_many(count)
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if text.strip():
                pages.append(ParsedPage(number=number, text=text))
        if not pages:
            raise InvalidInputError(
                "the PDF has no text layer (a scanned document?); run OCR on it and upload again"
            )
        meta = {"page_count": str(count)}
        title = None
        info = reader.metadata
        if info is not None:
            title = (info.title or "").strip() or None
            if info.producer:
                meta["producer"] = str(info.producer)[:200]
        return ParsedDocument(
            pages=tuple(pages), parser=f"{self.name}/{self.version}", title=title, meta=meta
        )

    def _too_many(self, count: int) -> InvalidInputError:
        return InvalidInputError(
            f"the PDF has {count} pages; at most {self.max_pages} pages are accepted"
        )


def _declared_page_count(reader: PdfReader) -> int | None:
    """``/Count`` of the page tree root: cheap, lets a huge document be refused before walking
    its page tree (which may lie; the real count is checked afterwards)."""
    try:
        root: Any = reader.trailer["/Root"]
        return int(root["/Pages"]["/Count"])
    except Exception:
        return None
