"""Opt-in built-in plugin: the PDF parser on pypdfium2 (``pip install 'avatarstack[pdfium]'``).

Registers :class:`~avatarstack.adapters.parsers.PdfiumParser` only when pypdfium2 can be
imported; without it the hook registers nothing. Listed after the ``parsers`` plugin, so pypdf
stays the PDF parser until a deployment prefers this one with ``AVATARSTACK_KB__PARSERS``
(e.g. ``["pdfium"]``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from avatarstack.adapters.parsers import PdfiumParser
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.documents import DocumentParser


@hookimpl
def register_document_parsers(register: Callable[[DocumentParser], None]) -> None:
    try:
        # a real import, not find_spec: a wheel whose native library cannot load (OSError from
        # ctypes) is skipped here rather than failing every upload in the parsing child
        importlib.import_module("pypdfium2")
    except (ImportError, OSError):
        return
    register(PdfiumParser())
