"""Document parsers (PDF on pypdf or, optionally, pypdfium2; plain text, Markdown) and the
isolated runner for them.

Parsers are plain picklable objects so :func:`parse_isolated` can run them in a child process
with a wall-clock timeout and a memory limit.
"""

from avatarstack.adapters.parsers.isolated import choose_parser, parse_isolated, upload_types
from avatarstack.adapters.parsers.pdf import PypdfParser
from avatarstack.adapters.parsers.pdfium import PdfiumParser
from avatarstack.adapters.parsers.text import MarkdownParser, PlainTextParser

__all__ = [
    "MarkdownParser",
    "PdfiumParser",
    "PlainTextParser",
    "PypdfParser",
    "choose_parser",
    "parse_isolated",
    "upload_types",
]
