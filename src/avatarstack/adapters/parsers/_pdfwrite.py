"""Writing a PDF from its object bodies, with an exact cross-reference table: the parsing fork
server's warm-up page (``_warm``) and the test kit's hand-built files (``testkit.pdf``) share it."""

from __future__ import annotations


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
