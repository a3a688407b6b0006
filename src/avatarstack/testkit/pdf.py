"""Minimal, valid PDF files built by hand, for tests of parsing and ingestion (no PDF library
needed to make them, so tests control every byte)."""

from __future__ import annotations

from avatarstack.adapters.parsers._pdfwrite import build_pdf

_PAGE = (
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
    b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
)
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"


def stream(content: bytes, extra: bytes = b"") -> bytes:
    """A stream object body; ``extra`` adds dictionary entries (e.g. ``/Filter /FlateDecode``)."""
    return b"<< /Length %d %s>>\nstream\n" % (len(content), extra) + content + b"\nendstream"


def text_pdf(*texts: str | None) -> bytes:
    """One page per entry: a Helvetica line of (Latin-1) text, or a blank page for None."""
    objects = [_CATALOG, b"", _FONT]
    kids = []
    for text in texts:
        page, content = len(objects) + 1, len(objects) + 2
        kids.append(b"%d 0 R" % page)
        objects.append(_PAGE % content)
        ops = b"" if text is None else b"BT /F1 12 Tf 72 712 Td (%s) Tj ET" % text.encode("latin-1")
        objects.append(stream(ops))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    return build_pdf(objects)


def pdf_with_pages(count: int, content: bytes, extra: bytes = b"") -> bytes:
    """``count`` pages sharing one content stream (cheap huge documents)."""
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(count))
    return build_pdf(
        [
            _CATALOG,
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
            _FONT,
            stream(content, extra),
            *[_PAGE % 4] * count,
        ]
    )
