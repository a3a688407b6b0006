"""Imported by the parsing fork server (``isolated.PRELOAD``): parses one small PDF, so that what
pypdf loads on its first extraction (its filters and codecs, cached tables) is in the fork
server's memory and every child starts with it, instead of each child paying for it again on
its one file (about 20 ms a file)."""

from __future__ import annotations

import contextlib
import zlib

from avatarstack.adapters.parsers._pdfwrite import build_pdf
from avatarstack.adapters.parsers.pdf import PypdfParser


def _sample_pdf() -> bytes:
    """A one-page PDF like the ones users upload: a compressed content stream, a WinAnsi
    Helvetica font, a few lines of text."""
    content = zlib.compress(
        b"BT /F1 10 Tf 72 712 Td 12 TL (Warm-up page \x96 \x93quoted\x94 text, 1.5 m.) Tj "
        b"T* (A second line of text with numbers 42 and 3.5 V.) Tj ET"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content)
        + content
        + b"\nendstream",
    ]
    return build_pdf(objects)


def warm_up() -> None:
    """Parse the sample once; a failure only means the children warm up themselves."""
    with contextlib.suppress(Exception):
        PypdfParser().parse(_sample_pdf(), "warm-up.pdf")


warm_up()
