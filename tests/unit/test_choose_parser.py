"""Choosing a parser for an upload, with the ``kb.parsers`` preference order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from avatarstack.adapters.parsers import choose_parser
from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.errors import UnsupportedMediaTypeError


@dataclass(frozen=True)
class StubParser:
    """A parser that is only ever chosen, never run."""

    name: str
    media_types: Sequence[str] = ("application/pdf",)
    extensions: Sequence[str] = (".pdf",)
    version: str = "1"

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        raise NotImplementedError


PYPDF = StubParser("pypdf")
PDFIUM = StubParser("pdfium")
DOCLING = StubParser("docling", media_types=("application/pdf", "text/html"), extensions=(".pdf",))
TEXT = StubParser("text", media_types=("text/plain",), extensions=(".txt",))
#: registration order: the built-in parsers first, then the optional and third-party ones
REGISTERED: list[DocumentParser] = [PYPDF, TEXT, PDFIUM, DOCLING]


def chosen(media_type: str | None, filename: str | None, prefer: Sequence[str] = (), /) -> str:
    return choose_parser(REGISTERED, media_type, filename, prefer=prefer).name


def test_without_a_preference_the_first_registered_parser_wins() -> None:
    assert chosen("application/pdf", "a.pdf") == "pypdf"


def test_the_preferred_parser_wins_over_one_registered_earlier() -> None:
    assert chosen("application/pdf", "a.pdf", ["pdfium"]) == "pdfium"


def test_the_first_preferred_parser_that_accepts_the_type_wins() -> None:
    assert chosen("application/pdf", "a.pdf", ["docling", "pdfium"]) == "docling"
    assert chosen("application/pdf", "a.pdf", ["pdfium", "docling"]) == "pdfium"


def test_a_preferred_parser_is_not_chosen_for_a_type_it_does_not_accept() -> None:
    assert chosen("text/plain", "notes.txt", ["pdfium"]) == "text"


def test_unnamed_parsers_keep_their_registration_order_after_the_named_ones() -> None:
    assert chosen("application/pdf", "a.pdf", ["text"]) == "pypdf"


def test_names_of_parsers_that_are_not_registered_are_ignored() -> None:
    assert chosen("application/pdf", "a.pdf", ["tika", "pdfium"]) == "pdfium"
    assert chosen("application/pdf", "a.pdf", ["tika"]) == "pypdf"


def test_a_name_listed_twice_keeps_its_first_place() -> None:
    assert chosen("application/pdf", "a.pdf", ["pdfium", "docling", "pdfium"]) == "pdfium"


def test_the_preference_also_decides_between_parsers_chosen_by_extension() -> None:
    assert chosen("application/octet-stream", "a.pdf", ["pdfium"]) == "pdfium"
    assert chosen(None, "A.PDF", ["docling"]) == "docling"


def test_a_media_type_match_beats_a_preferred_parser_that_only_knows_the_extension() -> None:
    by_extension_only = StubParser("by-extension", media_types=("application/x-other",))

    parser = choose_parser(
        [PYPDF, by_extension_only], "application/pdf", "a.pdf", prefer=["by-extension"]
    )

    assert parser.name == "pypdf"


def test_media_type_parameters_and_case_do_not_change_the_choice() -> None:
    assert chosen("Application/PDF; charset=binary", "a.bin", ["pdfium"]) == "pdfium"


def test_an_unsupported_type_is_refused_whatever_the_preference() -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        chosen("image/png", "photo.png", ["pdfium"])

    assert "application/pdf" in info.value.detail
    assert ".txt" in info.value.detail
