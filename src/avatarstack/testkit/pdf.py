"""Minimal, valid PDF files built by hand, for tests of parsing and ingestion (no PDF library
needed to make them, so tests control every byte)."""

from __future__ import annotations

_PAGE = (
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
    b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
)
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"


def build_pdf(objects: list[bytes], *, info: int | None = None) -> bytes:
    """A PDF whose object ``n`` is ``objects[n - 1]`` (object 1 is the catalog), with an exact
    cross-reference table; ``info`` names the object holding the document information
    dictionary (``/Title`` …)."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info_entry = b" /Info %d 0 R" % info if info is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info_entry,
        xref,
    )
    return bytes(out)


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
