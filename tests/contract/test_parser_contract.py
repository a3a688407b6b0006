"""The DocumentParser contract over every built-in parser, then format-specific cases.

PDFs are written by hand (:func:`build_pdf`) or with pypdf's own ``PdfWriter``; no sample files.
"""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass

import pytest
from pypdf import PdfReader, PdfWriter

from avatarstack.adapters.parsers import MarkdownParser, PlainTextParser, PypdfParser
from avatarstack.ports.documents import DocumentParser
from avatarstack.ports.errors import InvalidInputError
from avatarstack.testkit.pdf import build_pdf, text_pdf

# =========================================================================== PDF builders


def encrypted(pdf: bytes, *, user_password: str, owner_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password=owner_password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# =========================================================================== common contract


@dataclass(frozen=True)
class Case:
    parser: DocumentParser
    filename: str
    sample: bytes
    #: a phrase the sample's text contains
    text: str


GARBAGE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))

CASES = {
    "pypdf": Case(PypdfParser(), "doc.pdf", text_pdf("Hello from a PDF"), "Hello from a PDF"),
    "text": Case(PlainTextParser(), "notes.txt", "Grüße, plain text\n".encode(), "Grüße"),
    "markdown": Case(
        MarkdownParser(), "readme.md", b"# The Title\n\nSome *Markdown* body.\n", "*Markdown*"
    ),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def test_a_valid_sample_parses_into_numbered_pages_with_its_text(case: Case) -> None:
    document = case.parser.parse(case.sample, case.filename)

    assert document.pages
    assert all(page.number >= 1 for page in document.pages)
    assert case.text in "\n".join(page.text for page in document.pages)
    assert document.parser == f"{case.parser.name}/{case.parser.version}"


def test_the_parser_names_itself_with_a_version_and_its_types(case: Case) -> None:
    assert case.parser.name
    assert case.parser.version
    assert case.parser.media_types
    assert all(ext.startswith(".") for ext in case.parser.extensions)


def test_empty_input_is_refused_as_empty(case: Case) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        case.parser.parse(b"", case.filename)


def test_garbage_is_refused_with_a_reason(case: Case) -> None:
    with pytest.raises(InvalidInputError) as info:
        case.parser.parse(GARBAGE, case.filename)
    assert info.value.detail
    assert "Traceback" not in info.value.detail


def test_the_parser_survives_pickling_for_the_child_process(case: Case) -> None:
    clone = pickle.loads(pickle.dumps(case.parser))

    assert clone.parse(case.sample, case.filename) == case.parser.parse(case.sample, case.filename)


# =========================================================================== PDF


def test_a_three_page_pdf_keeps_its_page_numbers() -> None:
    document = PypdfParser().parse(text_pdf("first page", "second page", "third page"), "a.pdf")

    assert [(p.number, p.text.strip()) for p in document.pages] == [
        (1, "first page"),
        (2, "second page"),
        (3, "third page"),
    ]
    assert document.meta["page_count"] == "3"


def test_blank_pages_are_skipped_but_the_others_keep_their_numbers() -> None:
    document = PypdfParser().parse(text_pdf(None, "only text", None), "a.pdf")

    assert [p.number for p in document.pages] == [2]


def test_a_pdf_with_a_user_password_is_refused_as_encrypted() -> None:
    pdf = encrypted(text_pdf("secret"), user_password="pw", owner_password="owner")

    with pytest.raises(InvalidInputError, match="encrypted"):
        PypdfParser().parse(pdf, "locked.pdf")


def test_a_pdf_with_only_an_owner_password_is_read() -> None:
    pdf = encrypted(text_pdf("readable"), user_password="", owner_password="owner")

    document = PypdfParser().parse(pdf, "restricted.pdf")

    assert "readable" in document.pages[0].text


def test_a_truncated_pdf_is_refused() -> None:
    pdf = text_pdf("some text that will be cut off", "and another page")

    with pytest.raises(InvalidInputError):
        PypdfParser().parse(pdf[: len(pdf) // 2], "cut.pdf")


def test_html_named_pdf_is_refused_as_not_a_pdf() -> None:
    with pytest.raises(InvalidInputError, match="not a PDF"):
        PypdfParser().parse(b"<!doctype html><html><body>Hi</body></html>", "page.pdf")


def test_a_pdf_without_text_is_refused_as_possibly_scanned() -> None:
    with pytest.raises(InvalidInputError, match="no text layer"):
        PypdfParser().parse(text_pdf(None, None), "scan.pdf")


def test_a_pdf_with_more_pages_than_allowed_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="at most 2 pages"):
        PypdfParser(max_pages=2).parse(text_pdf("a", "b", "c"), "long.pdf")


def test_a_deeply_nested_pdf_is_refused_without_crashing() -> None:
    depth = 100_000
    page = b"<< /Type /Page /Parent 2 0 R /Nested " + b"[" * depth + b"]" * depth + b" >>"
    pages = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    pdf = build_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", pages, page])

    with pytest.raises(InvalidInputError):
        PypdfParser().parse(pdf, "nested.pdf")


# =========================================================================== text


@pytest.mark.parametrize("parser", [PlainTextParser(), MarkdownParser()], ids=["text", "markdown"])
@pytest.mark.parametrize(
    "data",
    [
        codecs.BOM_UTF8 + "Grüße".encode(),
        codecs.BOM_UTF16_LE + "Grüße".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "Grüße".encode("utf-16-be"),
    ],
    ids=["utf-8-bom", "utf-16-le", "utf-16-be"],
)
def test_text_with_a_byte_order_mark_is_decoded_without_it(
    parser: DocumentParser, data: bytes
) -> None:
    assert parser.parse(data, "x").pages[0].text == "Grüße"


def test_binary_with_nul_bytes_is_refused_as_binary() -> None:
    with pytest.raises(InvalidInputError, match="binary"):
        PlainTextParser().parse(b"looks like text\x00\x01\x02", "data.txt")


def test_latin_1_text_is_refused_with_a_hint_to_save_it_as_utf_8() -> None:
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        PlainTextParser().parse("Grüße".encode("latin-1"), "old.txt")


def test_markdown_keeps_its_source_and_takes_the_first_h1_as_title() -> None:
    source = "```\n# not a title\n```\n## Sub\n# Real Title #\n\ntext\n"

    document = MarkdownParser().parse(source.encode(), "doc.md")

    assert document.title == "Real Title"
    assert document.pages[0].text == source
