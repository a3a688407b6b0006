"""Knowledge-base text processing: normalisation, structural chunking, content hashing.

Everything here is pure and deterministic: the same pages and configuration always give the same
text, chunks and hashes, which is what makes document versions and the embedding cache work.

* :func:`normalise_pages` cleans the parser's pages (:data:`NORMALISER_VERSION` names the rules).
* :func:`document_text` is *the* normalised document text: the pages' texts joined with
  :data:`PAGE_SEPARATOR`. Chunk offsets (``char_start``/``char_end``) index into it, and
  ``document_text(pages)[chunk.char_start:chunk.char_end] == chunk.text`` always holds (the overlap
  taken from the previous chunk is part of the slice).
* :func:`chunk_document` packs paragraphs into chunks by section; ``Chunk.hash`` keys the
  embedding cache.
* :func:`content_hash` identifies an immutable document version.

De-hyphenation rule (line breaks inside a paragraph): a line ending in letter + hyphen is joined
to the next line without a space. The hyphen is dropped when the next line starts with a lowercase
letter (``informa-`` / ``tion`` → ``information``) unless the word before it already contains a
hyphen (``state-of-`` / ``the-art`` → ``state-of-the-art``); it is kept when the next line starts
with anything else (``Jean-`` / ``Paul`` → ``Jean-Paul``, ``COVID-`` / ``19`` → ``COVID-19``).
Known limitation: a compound split at its own hyphen before a lowercase word (``well-`` /
``known``) loses the hyphen. Words are not joined across page breaks.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from avatarstack.ports.documents import ParsedPage

#: bump when any normalisation rule changes: it is part of :func:`content_hash`
NORMALISER_VERSION = "2"
#: what joins the pages' texts in :func:`document_text` (and so in chunk offsets)
PAGE_SEPARATOR = "\n\n"
#: how many lines deep header/footer/page-number removal looks at each end of a page
MAX_EDGE_LINES = 3


class NormalisedPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: 1-based page number, as the parser reported it
    number: int = Field(ge=1)
    #: paragraphs separated by one blank line; no leading/trailing whitespace
    text: str


class ChunkerConfig(BaseModel):
    """How documents are cut into chunks; part of :func:`content_hash`. Chunks hold at most
    ``target_chars`` of their own text plus up to ``overlap_chars`` from the previous chunk, so
    ``target_chars + overlap_chars`` may not exceed ``max_chars``."""

    model_config = ConfigDict(frozen=True)

    target_chars: int = Field(default=1000, ge=1)
    max_chars: int = Field(default=1500, ge=1)
    overlap_chars: int = Field(default=150, ge=0)
    #: bump when the chunking algorithm changes
    version: str = "2"

    @model_validator(mode="after")
    def _fits(self) -> ChunkerConfig:
        if self.target_chars + self.overlap_chars > self.max_chars:
            raise ValueError("target_chars + overlap_chars must not exceed max_chars")
        return self


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    #: ``document_text(pages)[char_start:char_end]``, overlap with the previous chunk included
    text: str
    page_start: int = Field(ge=1)
    page_end: int = Field(ge=1)
    char_start: int = Field(ge=0)
    char_end: int = Field(ge=0)
    #: the heading of the section the chunk belongs to, without Markdown ``#`` marks
    heading: str | None = None
    #: SHA-256 (hex) of ``text``: the embedding-cache key
    hash: str


# ----------------------------------------------------------------------------- normalisation

_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x85\u2028]")
_SOFT_HYPHEN_BREAK = re.compile(r"\u00ad[^\S\n]*\n[^\S\n]*")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))
_SPACES = re.compile(r"[^\S\n]+")
#: Unicode category Cc (C0, DEL, C1) except the line feed and the tab
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_PAGE_NUMBER = re.compile(
    r"""^(?:
        [-\u2013\u2014]?\s*(?:\d{1,4}|[ivxlcdm]{1,8})\s*[-\u2013\u2014]?
      | \[\s*\d{1,4}\s*\]
      | (?:page|p\.|pg\.?|seite|s\.)\s*\d{1,4}(?:\s*(?:of|/|von)\s*\d{1,4})?
      | \d{1,4}\s*(?:of|/)\s*\d{1,4}
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
_ROMAN = re.compile(r"^m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})$", re.I)
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+\S")
_NUMBERED_HEADING = re.compile(r"^\d{1,3}(?:\.\d{1,3})*\.?\s+[^\W\d_a-z]")
_BULLET = re.compile(r"^(?:[-*\u2022\u25aa\u25e6\u2013]\s|\d{1,3}[.)]\s)")
_HYPHENATED_END = re.compile(r"(\S*)[^\W\d_][-\u2010]$")
_DIGITS = re.compile(r"\d+")


def normalise_pages(pages: Sequence[ParsedPage]) -> list[NormalisedPage]:
    """Clean parser output page by page; page numbers are kept, empty pages stay (empty)."""
    lines = [_clean_lines(page.text) for page in pages]
    _strip_page_edges(lines)
    return [
        NormalisedPage(number=page.number, text=_paragraphs(page_lines))
        for page, page_lines in zip(pages, lines, strict=True)
    ]


def document_text(pages: Sequence[NormalisedPage]) -> str:
    """The normalised document text that chunk offsets index into."""
    return PAGE_SEPARATOR.join(page.text for page in pages)


def _clean_lines(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    text = _LINE_BREAKS.sub("\n", text).replace("\u2029", "\n\n")
    text = _SOFT_HYPHEN_BREAK.sub("", text).translate(_INVISIBLE)
    text = _CONTROL.sub("", text).replace("\t", " ")
    return [_SPACES.sub(" ", line).strip() for line in text.split("\n")]


def _is_page_number(line: str) -> bool:
    if not _PAGE_NUMBER.match(line):
        return False
    letters = line.strip("-\u2013\u2014 ")
    return not letters.isalpha() or bool(_ROMAN.match(letters))


def _edge_key(line: str) -> str:
    return _DIGITS.sub("0", line).casefold()


def _edges(lines: list[str]) -> tuple[int, int] | None:
    filled = [i for i, line in enumerate(lines) if line]
    return (filled[0], filled[-1]) if filled else None


def _strip_page_edges(pages: list[list[str]]) -> None:
    """Remove page numbers (documents with 2+ pages) and one running header and footer line: a
    line that, with digits ignored, is the first or last line on at least half of the pages (3
    at least). Page numbers are peeled before and after, up to :data:`MAX_EDGE_LINES` deep."""
    _strip_page_numbers(pages)
    if len(pages) >= 3:
        counts: Counter[str] = Counter()
        for lines in pages:
            edges = _edges(lines)
            if edges:
                counts.update({_edge_key(lines[edges[0]]), _edge_key(lines[edges[1]])})
        needed = max(3, math.ceil(len(pages) / 2))
        repeated = {key for key, count in counts.items() if count >= needed}
        for lines in pages:
            for pick in (0, 1):
                edges = _edges(lines)
                if edges and _edge_key(lines[edges[pick]]) in repeated:
                    lines[edges[pick]] = ""
        _strip_page_numbers(pages)


def _strip_page_numbers(pages: list[list[str]]) -> None:
    if len(pages) < 2:
        return
    for lines in pages:
        for pick in (0, 1):
            for _ in range(MAX_EDGE_LINES):
                edges = _edges(lines)
                if not edges or not _is_page_number(lines[edges[pick]]):
                    break
                lines[edges[pick]] = ""


#: words a title-case heading may keep in lower case ("Care and Cleaning")
_MINOR_WORDS = frozenset("a an and as at by for from in of on or the to with vs".split())  # noqa: SIM905
_TITLE_WORD = re.compile(r"[^\W\d_][\w'\u2019&/-]*|\d[\w.]*|&")
#: a line at least this long is taken for a wrapped line of body text, not a heading's neighbour
_FULL_LINE = 60
#: a line ending in one of these goes on in the next line (a hyphenated word, a list)
_CONTINUES = "-\u2010,;&/"


def is_title_case_heading(line: str) -> bool:
    """A short Title Case line (``Power``, ``Care and Cleaning``, ``Technical Data``): at most
    six words and 60 characters, no closing punctuation, every word capitalised except minor
    ones (``and``, ``of``…), at least one word of three letters."""
    if len(line) > 60 or line.endswith((".", ",", ";", ":", "!", "?", "-", "\u2010")):
        return False
    words = line.split()
    if not 1 <= len(words) <= 6 or not line[0].isupper():
        return False
    if not all(_TITLE_WORD.fullmatch(w) for w in words):
        return False
    if not any(sum(c.isalpha() for c in w) >= 3 for w in words):
        return False
    return all(w[0].isupper() or w[0].isdigit() or w in _MINOR_WORDS or w == "&" for w in words)


def is_heading(line: str) -> bool:
    """Markdown ``#`` headings, numbered headings (``2.3 Title``), short ALL-CAPS lines. (Title
    Case lines are headings only where they stand alone, see :func:`_paragraphs`.)"""
    if "\n" in line or len(line) > 100:
        return False
    if _MARKDOWN_HEADING.match(line):
        return True
    if line.endswith((".", ",", ";", ":")):
        return False
    if _NUMBERED_HEADING.match(line):
        return True
    letters = [ch for ch in line if ch.isalpha()]
    return len(letters) >= 3 and len(line) <= 60 and line == line.upper() and not _ROMAN.match(line)


def _paragraphs(lines: list[str]) -> str:
    paragraphs: list[str] = []
    current: list[str] = []  # lines of the current paragraph (bullets keep their own line)

    def flush() -> None:
        if current:
            paragraphs.append("\n".join(current))
            current.clear()

    previous = ""
    for line in lines:
        if not line:
            flush()
        elif is_heading(line) or (
            is_title_case_heading(line)
            and (
                not current
                or previous[-1] in _CLOSERS
                or (len(previous) < _FULL_LINE and previous[-1] not in _CONTINUES)
            )
        ):
            flush()
            paragraphs.append(line)
        elif not current or _BULLET.match(line):
            current.append(line)
        else:
            current[-1] = _join(current[-1], line)
        previous = line
    flush()
    return "\n\n".join(paragraphs)


def _join(previous: str, line: str) -> str:
    # the hyphenated word cannot contain a space: search the last word only (searching the
    # whole growing paragraph on every line made long paragraphs quadratic)
    match = _HYPHENATED_END.search(previous, previous.rfind(" ") + 1)
    if not match:
        return f"{previous} {line}"
    if line[0].islower() and "-" not in match.group(1) and "\u2010" not in match.group(1):
        return previous[:-1] + line
    return previous + line


# ----------------------------------------------------------------------------- chunking

_SENTENCE_END = re.compile(r"[.!?\u2026\u3002][\"')\]\u201d\u2019]*(?=\s)")
#: leading text shorter than this (a title line) joins the first section instead of standing alone
_TINY_CHUNK = 200
#: characters that may end a sentence (a chunk overlap prefers to start after one)
_CLOSERS = ".!?\u2026\u3002\"')]\u201d\u2019:"


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    page: int
    heading: str | None  # set when the unit is a heading line


def chunk_document(
    pages: Sequence[NormalisedPage], config: ChunkerConfig | None = None
) -> list[Chunk]:
    """Cut the document into chunks by structure.

    A heading starts a new chunk (and section), except right after another heading: headings in
    a row (``# Product`` then ``## Overview``) share the chunk of the text below them, and the
    last one names its section. Paragraphs are packed until the chunk's own text
    would exceed ``target_chars``; over-long paragraphs are split at sentence ends, then spaces,
    then anywhere. A page break also ends a chunk once it holds half the target, so an edit
    re-chunks only its own page(s). Except at a section start, a chunk begins with up to
    ``overlap_chars`` from the end of the previous chunk, starting at a sentence or word start.
    """
    config = config or ChunkerConfig()
    text = document_text(pages)
    units, page_starts, page_numbers = _units(pages, config.target_chars)

    groups: list[list[_Unit]] = []
    for unit in units:
        current = groups[-1] if groups else None
        if current is None:
            groups.append([unit])
            continue
        if unit.heading is not None:
            # a section starts a chunk, unless all before the first one is a short line or two
            # (a title on its own would be a chunk without content), or the chunk so far holds
            # only headings (`# Product` then `## Overview`: the first is no passage either)
            tiny = len(groups) == 1 and all(u.heading is None for u in current)
            bare = all(u.heading is not None for u in current)
            if not (bare or (tiny and current[-1].end - current[0].start < _TINY_CHUNK)):
                groups.append([unit])
                continue
        if current[-1].heading is not None and unit.end - current[0].start <= config.max_chars:
            current.append(unit)  # a heading never ends a chunk while its text fits after it
            continue
        own = current[-1].end - current[0].start
        page_break = unit.page != current[-1].page and own * 2 >= config.target_chars
        if unit.end - current[0].start > config.target_chars or page_break:
            groups.append([unit])
        else:
            current.append(unit)

    chunks: list[Chunk] = []
    heading: str | None = None
    previous_start = 0
    for index, group in enumerate(groups):
        own_start, end = group[0].start, group[-1].end
        start = own_start
        headings = [u.heading for u in group if u.heading is not None]
        if headings:
            heading = headings[-1]  # of `# Product` / `## Overview`, the section's own
        elif index:
            start = _overlap_start(
                text, max(previous_start, own_start - config.overlap_chars), own_start
            )
        previous_start = own_start
        page_of = page_numbers[bisect.bisect_right(page_starts, start) - 1]
        body = text[start:end]
        chunks.append(
            Chunk(
                index=index,
                text=body,
                page_start=page_of,
                page_end=group[-1].page,
                char_start=start,
                char_end=end,
                heading=heading,
                hash=hashlib.sha256(body.encode()).hexdigest(),
            )
        )
    return chunks


def _units(
    pages: Sequence[NormalisedPage], target: int
) -> tuple[list[_Unit], list[int], list[int]]:
    units: list[_Unit] = []
    page_starts: list[int] = []
    offset = 0
    for page in pages:
        page_starts.append(offset)
        position = 0
        for paragraph in page.text.split("\n\n"):
            start = offset + position
            position += len(paragraph) + 2
            stripped = paragraph.strip()
            if not stripped:
                continue
            start += paragraph.index(stripped)
            heading = is_heading(stripped) or is_title_case_heading(stripped)
            if heading and len(stripped) <= target:  # a longer one is body text
                units.append(_Unit(start, start + len(stripped), page.number, _title(stripped)))
                continue
            for piece_start, piece_end in _split(stripped, target):
                units.append(_Unit(start + piece_start, start + piece_end, page.number, None))
        offset += len(page.text) + len(PAGE_SEPARATOR)
    return units, page_starts, [page.number for page in pages]


def _title(line: str) -> str:
    return line.lstrip("#").strip() if _MARKDOWN_HEADING.match(line) else line


def _split(paragraph: str, target: int) -> list[tuple[int, int]]:
    """Spans of ``paragraph`` of at most ``target`` characters: sentence ends, spaces, anywhere."""
    spans: list[tuple[int, int]] = []
    position = 0
    while len(paragraph) - position > target:
        window_end = position + target
        cut = 0
        for match in _SENTENCE_END.finditer(paragraph, position, window_end + 1):
            if match.end() <= window_end:
                cut = match.end()
        if cut - position < target // 4:
            space = max(
                paragraph.rfind(" ", position, window_end + 1),
                paragraph.rfind("\n", position, window_end + 1),
            )
            cut = space if space > position else window_end
        spans.append((position, cut))
        position = cut
        while position < len(paragraph) and paragraph[position].isspace():
            position += 1
    if position < len(paragraph):
        spans.append((position, len(paragraph)))
    return spans


def _overlap_start(text: str, low: int, own_start: int) -> int:
    """Earliest sentence start in ``[low, own_start)``, else earliest word start, else none."""
    word = own_start
    for position in range(low, own_start):
        if text[position].isspace() or (position and not text[position - 1].isspace()):
            continue
        before = position - 1
        while before >= 0 and text[before].isspace():
            before -= 1
        if before < 0 or text[before] in _CLOSERS or "\n\n" in text[before:position]:
            return position
        word = min(word, position)
    return word


# ----------------------------------------------------------------------------- versions


def content_hash(pages: Sequence[NormalisedPage], parser: str, chunker: ChunkerConfig) -> str:
    """SHA-256 (hex) identifying a document version: normaliser version, parser name and version
    (e.g. ``pypdf 4.2.0``), chunker configuration and the normalised pages (numbers and text)."""
    header = {
        "normaliser": NORMALISER_VERSION,
        "parser": parser,
        "chunker": chunker.model_dump(mode="json"),
    }
    digest = hashlib.sha256()
    digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    for page in pages:
        body = page.text.encode()
        digest.update(f"\n{page.number}:{len(body)}\n".encode())
        digest.update(body)
    return digest.hexdigest()
