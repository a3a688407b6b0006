"""PDF parser on pypdfium2 (Google's PDFium, the engine of Chrome's PDF viewer): text per page,
with the page numbers kept.

An optional alternative to :class:`~avatarstack.adapters.parsers.pdf.PypdfParser`: faster, and
often better at word spacing and reading order, but native code. Install it with the ``pdfium``
extra (``pip install 'avatarstack[pdfium]'``) and prefer it with ``AVATARSTACK_KB__PARSERS``.
pypdfium2 is imported inside :meth:`PdfiumParser.parse` only, so this module imports without it.

PDFium is not thread-safe and, like any parser, has no time limit; run this through
:func:`avatarstack.adapters.parsers.isolated.parse_isolated`, never in the server process (a
crash in native code then only ends the child).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

from avatarstack.adapters.parsers.pdf import check_pdf_bytes
from avatarstack.ports.documents import ParsedDocument, ParsedPage
from avatarstack.ports.errors import InvalidInputError

DISTRIBUTION = "pypdfium2"
#: bumped when the output for the same pypdfium2 version changes (part of the content hash)
_REVISION = "1"
#: the PDF header may follow up to 1 KiB of junk (what readers tolerate)
# the refusals read exactly like PypdfParser's, whichever parser a deployment prefers
ENCRYPTED = "the PDF is encrypted; upload it without a password"
NO_TEXT = "the PDF has no text layer (a scanned document?); run OCR on it and upload again"


class PdfiumParser:
    """``application/pdf`` on pypdfium2; refuses encrypted, empty, text-less and oversized PDFs.

    Constructing one needs pypdfium2 installed (its version is part of :attr:`version`);
    :class:`ImportError` with the install hint otherwise.
    """

    def __init__(self, max_pages: int = 2000) -> None:
        try:
            library = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError as exc:
            raise ImportError(
                "the pdfium parser needs pypdfium2: pip install 'avatarstack[pdfium]'"
            ) from exc
        self.name = "pdfium"
        self.version = f"{_REVISION}+pypdfium2.{library}"
        self.media_types: Sequence[str] = ("application/pdf",)
        self.extensions: Sequence[str] = (".pdf",)
        self.max_pages = max_pages

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        check_pdf_bytes(data)
        import pypdfium2  # the optional dependency; see the module documentation

        try:
            return self._parse(data)
        except InvalidInputError:
            raise
        except MemoryError:
            raise  # the isolated runner reports the memory limit
        except RecursionError as exc:
            raise InvalidInputError("the PDF is nested too deeply to read") from exc
        except pypdfium2.PdfiumError as exc:
            raise InvalidInputError(
                f"the PDF is damaged and could not be read ({exc})"[:300]
            ) from exc
        except Exception as exc:  # never let a library message quote the file
            raise InvalidInputError(
                f"the PDF is damaged and could not be read ({type(exc).__name__})"
            ) from exc

    def _parse(self, data: bytes) -> ParsedDocument:
        import pypdfium2
        import pypdfium2.raw as raw

        # the raw call (not PdfDocument(data)) tells a document without pages from a damaged one;
        # ``data`` outlives the handle, which PDFium reads from without copying
        handle = raw.FPDF_LoadMemDocument64(data, len(data), None)
        if not handle:
            raise InvalidInputError(_load_error(raw, raw.FPDF_GetLastError()))
        document = pypdfium2.PdfDocument(handle)
        try:
            # PDFium counts the page tree's /Count: a huge document is refused before any page
            # is loaded; a /Count that lies shows as pages that fail to load, skipped below
            count = len(document)
            if count == 0:
                raise InvalidInputError("the PDF has no pages")
            if count > self.max_pages:
                raise InvalidInputError(
                    f"the PDF has {count} pages; at most {self.max_pages} pages are accepted"
                )
            pages = []
            loaded = 0
            for number in range(1, count + 1):
                text = _page_text(document, number - 1)
                if text is None:
                    continue
                loaded += 1
                if text.strip():
                    pages.append(ParsedPage(number=number, text=text))
            if not loaded:
                raise InvalidInputError(
                    "the PDF is damaged and could not be read (no page could be loaded)"
                )
            if not pages:
                raise InvalidInputError(NO_TEXT)
            # the pages that exist, like pypdf's count (a lying /Count is not repeated)
            meta = {"page_count": str(loaded)}
            title = document.get_metadata_value("Title").strip() or None
            producer = document.get_metadata_value("Producer").strip()
            if producer:
                meta["producer"] = producer[:200]
        finally:
            document.close()
        return ParsedDocument(
            pages=tuple(pages), parser=f"{self.name}/{self.version}", title=title, meta=meta
        )


def _page_text(document: Any, index: int) -> str | None:
    """The text of one page as pypdf gives it, or None when the page cannot be loaded: ``\\n``
    line ends (PDFium writes ``\\r\\n``), and a hyphen that ends a line kept with its line
    break (PDFium joins the two lines with ``\\x02`` in its place)."""
    import pypdfium2

    try:
        page = document[index]
    except pypdfium2.PdfiumError:
        return None
    try:
        textpage = page.get_textpage()
        try:
            # bounded (the page box), not get_text_range: full Unicode, not just UCS-2
            text: str = textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "-\n")
    return text.replace("\x00", "")


def _load_error(raw: Any, code: int) -> str:
    if code in (raw.FPDF_ERR_PASSWORD, raw.FPDF_ERR_SECURITY):
        return ENCRYPTED
    reason = {
        raw.FPDF_ERR_FORMAT: "not a valid PDF structure",
        raw.FPDF_ERR_PAGE: "its pages could not be found",
    }.get(code, f"PDFium error {code}")
    return f"the PDF is damaged and could not be read ({reason})"
