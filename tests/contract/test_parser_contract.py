"""The DocumentParser contract over every built-in parser, then format-specific cases.

PDFs are written by hand (:func:`build_pdf`) or with pypdf's own ``PdfWriter``; no sample files.
Every PDF case runs against both PDF parsers (pypdf, and pypdfium2 when it is installed: the
``test`` extra installs it), so they refuse the same files with the same reasons.
"""

from __future__ import annotations

import codecs
import importlib.util
import io
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pypdf import PdfReader, PdfWriter

from avatarstack.adapters.parsers import (
    MarkdownParser,
    PdfiumParser,
    PlainTextParser,
    PypdfParser,
)
from avatarstack.plugins.builtin import pdfium as pdfium_plugin
from avatarstack.ports.documents import DocumentParser
from avatarstack.ports.errors import InvalidInputError
from avatarstack.testkit.pdf import build_pdf, stream, text_pdf

HAVE_PDFIUM = importlib.util.find_spec("pypdfium2") is not None
needs_pdfium = pytest.mark.skipif(
    not HAVE_PDFIUM, reason="pypdfium2 is not installed (pip install 'avatarstack[pdfium]')"
)

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

CASES: dict[str, Callable[[], Case]] = {
    "pypdf": lambda: Case(
        PypdfParser(), "doc.pdf", text_pdf("Hello from a PDF"), "Hello from a PDF"
    ),
    "pdfium": lambda: Case(
        PdfiumParser(), "doc.pdf", text_pdf("Hello from a PDF"), "Hello from a PDF"
    ),
    "text": lambda: Case(PlainTextParser(), "notes.txt", "Grüße, plain text\n".encode(), "Grüße"),
    "markdown": lambda: Case(
        MarkdownParser(), "readme.md", b"# The Title\n\nSome *Markdown* body.\n", "*Markdown*"
    ),
}


@pytest.fixture(
    params=[pytest.param(name, marks=[needs_pdfium] if name == "pdfium" else []) for name in CASES]
)
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]()


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

PdfParserFactory = Callable[..., DocumentParser]


@pytest.fixture(
    params=[
        pytest.param(PypdfParser, id="pypdf"),
        pytest.param(PdfiumParser, id="pdfium", marks=needs_pdfium),
    ]
)
def pdf_parser(request: pytest.FixtureRequest) -> PdfParserFactory:
    """The class of each PDF parser (both take ``max_pages``)."""
    factory: PdfParserFactory = request.param
    return factory


def test_a_three_page_pdf_keeps_its_page_numbers(pdf_parser: PdfParserFactory) -> None:
    document = pdf_parser().parse(text_pdf("first page", "second page", "third page"), "a.pdf")

    assert [(p.number, p.text.strip()) for p in document.pages] == [
        (1, "first page"),
        (2, "second page"),
        (3, "third page"),
    ]
    assert document.meta["page_count"] == "3"


def test_blank_pages_are_skipped_but_the_others_keep_their_numbers(
    pdf_parser: PdfParserFactory,
) -> None:
    document = pdf_parser().parse(text_pdf(None, "only text", None), "a.pdf")

    assert [p.number for p in document.pages] == [2]


def test_a_pdf_with_a_user_password_is_refused_as_encrypted(pdf_parser: PdfParserFactory) -> None:
    pdf = encrypted(text_pdf("secret"), user_password="pw", owner_password="owner")

    with pytest.raises(InvalidInputError, match="encrypted"):
        pdf_parser().parse(pdf, "locked.pdf")


def test_a_pdf_with_only_an_owner_password_is_read(pdf_parser: PdfParserFactory) -> None:
    pdf = encrypted(text_pdf("readable"), user_password="", owner_password="owner")

    document = pdf_parser().parse(pdf, "restricted.pdf")

    assert "readable" in document.pages[0].text


def test_a_truncated_pdf_is_refused(pdf_parser: PdfParserFactory) -> None:
    pdf = text_pdf("some text that will be cut off", "and another page")

    with pytest.raises(InvalidInputError):
        pdf_parser().parse(pdf[: len(pdf) // 2], "cut.pdf")


def test_html_named_pdf_is_refused_as_not_a_pdf(pdf_parser: PdfParserFactory) -> None:
    with pytest.raises(InvalidInputError, match="not a PDF"):
        pdf_parser().parse(b"<!doctype html><html><body>Hi</body></html>", "page.pdf")


def test_a_pdf_without_text_is_refused_as_possibly_scanned(pdf_parser: PdfParserFactory) -> None:
    with pytest.raises(InvalidInputError, match="no text layer"):
        pdf_parser().parse(text_pdf(None, None), "scan.pdf")


def test_a_pdf_with_more_pages_than_allowed_is_refused(pdf_parser: PdfParserFactory) -> None:
    with pytest.raises(InvalidInputError, match="at most 2 pages"):
        pdf_parser(max_pages=2).parse(text_pdf("a", "b", "c"), "long.pdf")


def test_a_deeply_nested_pdf_is_refused_without_crashing(pdf_parser: PdfParserFactory) -> None:
    depth = 100_000
    page = b"<< /Type /Page /Parent 2 0 R /Nested " + b"[" * depth + b"]" * depth + b" >>"
    pages = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    pdf = build_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", pages, page])

    with pytest.raises(InvalidInputError):
        pdf_parser().parse(pdf, "nested.pdf")


def one_page_pdf(content: bytes, *, declared_pages: int = 1) -> bytes:
    """A PDF with one Helvetica page showing ``content``, whose page tree claims
    ``declared_pages`` pages."""
    return build_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [4 0 R] /Count %d >>" % declared_pages,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
            stream(content),
        ]
    )


def with_metadata(pdf: bytes, **info: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.add_metadata({f"/{key}": value for key, value in info.items()})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_without_pages_is_refused_as_having_none(pdf_parser: PdfParserFactory) -> None:
    pdf = build_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])

    with pytest.raises(InvalidInputError, match="no pages"):
        pdf_parser().parse(pdf, "none.pdf")


def test_a_page_tree_declaring_too_many_pages_is_refused(pdf_parser: PdfParserFactory) -> None:
    pdf = one_page_pdf(b"BT /F1 12 Tf 72 712 Td (tiny) Tj ET", declared_pages=1_000_000)

    with pytest.raises(InvalidInputError, match="1000000 pages; at most 2000 pages"):
        pdf_parser().parse(pdf, "liar.pdf")


def test_a_page_tree_declaring_missing_pages_yields_the_real_ones(
    pdf_parser: PdfParserFactory,
) -> None:
    pdf = one_page_pdf(b"BT /F1 12 Tf 72 712 Td (the only page) Tj ET", declared_pages=3)

    document = pdf_parser().parse(pdf, "liar.pdf")

    assert [(p.number, p.text.strip()) for p in document.pages] == [(1, "the only page")]
    assert document.meta["page_count"] == "1"


def test_lines_of_a_page_are_separated_by_newlines(pdf_parser: PdfParserFactory) -> None:
    pdf = one_page_pdf(b"BT /F1 12 Tf 72 712 Td (line one) Tj 0 -14 Td (line two) Tj ET")

    document = pdf_parser().parse(pdf, "lines.pdf")

    assert document.pages[0].text.strip() == "line one\nline two"


def test_a_hyphen_at_the_end_of_a_line_is_kept_with_the_line_break(
    pdf_parser: PdfParserFactory,
) -> None:
    pdf = one_page_pdf(b"BT /F1 12 Tf 72 712 Td (a hyphen-) Tj 0 -14 Td (ated word) Tj ET")

    document = pdf_parser().parse(pdf, "hyphen.pdf")

    assert document.pages[0].text.strip() == "a hyphen-\nated word"


def test_the_title_and_producer_come_from_the_document_info(pdf_parser: PdfParserFactory) -> None:
    pdf = with_metadata(text_pdf("body"), Title="  The Title ", Producer="a typewriter")

    document = pdf_parser().parse(pdf, "titled.pdf")

    assert document.title == "The Title"
    assert document.meta["producer"] == "a typewriter"


@needs_pdfium
@pytest.mark.parametrize(
    ("data", "max_pages"),
    [
        (b"", 10),
        (b"<!doctype html>", 10),
        (encrypted(text_pdf("secret"), user_password="pw", owner_password="o"), 10),
        (text_pdf(None), 10),
        (text_pdf("a", "b"), 1),
        (build_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] >>"]), 10),
    ],
    ids=["empty", "not-a-pdf", "encrypted", "no-text", "too-many-pages", "no-pages"],
)
def test_both_pdf_parsers_give_the_same_reason_for_a_refusal(data: bytes, max_pages: int) -> None:
    reasons = []
    for parser in (PypdfParser(max_pages=max_pages), PdfiumParser(max_pages=max_pages)):
        with pytest.raises(InvalidInputError) as info:
            parser.parse(data, "x.pdf")
        reasons.append(info.value.detail)

    assert reasons[0] == reasons[1]


def test_the_pdfium_plugin_registers_nothing_without_pypdfium2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # makes ``import pypdfium2`` fail
    registered: list[DocumentParser] = []

    pdfium_plugin.register_document_parsers(registered.append)

    assert registered == []


@needs_pdfium
def test_the_pdfium_plugin_registers_the_pdfium_parser_when_pypdfium2_imports() -> None:
    registered: list[DocumentParser] = []

    pdfium_plugin.register_document_parsers(registered.append)

    assert [parser.name for parser in registered] == ["pdfium"]


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
