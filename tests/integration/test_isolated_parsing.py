"""Parsing in a child process: hostile input ends as InvalidInputError with a readable reason
within the timeout, and the event loop keeps running meanwhile."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import zlib
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from hostile_parsers import BuggyParser, CrashingParser, GreedyParser, LoopingParser

from avatarstack.adapters.parsers import (
    MarkdownParser,
    PlainTextParser,
    PypdfParser,
    choose_parser,
    parse_isolated,
)
from avatarstack.ports.errors import InvalidInputError, UnsupportedMediaTypeError
from avatarstack.testkit.pdf import pdf_with_pages

T = TypeVar("T")
MB = 1024 * 1024


HELLO = b"BT /F1 12 Tf 72 712 Td (Hello isolated) Tj ET"


async def timed(awaitable: Awaitable[T]) -> tuple[T | BaseException, float, float]:
    """The outcome (or exception), the elapsed seconds and the longest event-loop stall."""
    gaps = [0.0]
    done = False

    async def tick() -> None:
        last = time.monotonic()
        while not done:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    outcome: T | BaseException
    try:
        outcome = await awaitable
    except Exception as exc:
        outcome = exc
    elapsed = time.monotonic() - started
    done = True
    await ticker
    return outcome, elapsed, max(gaps)


async def test_a_valid_pdf_parses_in_the_child() -> None:
    document = await parse_isolated(PypdfParser(), pdf_with_pages(2, HELLO), "ok.pdf")

    assert [p.number for p in document.pages] == [1, 2]
    assert "Hello isolated" in document.pages[0].text


async def test_a_parser_that_loops_forever_is_killed_and_the_loop_keeps_ticking() -> None:
    outcome, elapsed, stall = await timed(
        parse_isolated(LoopingParser(), b"x", "loop.hostile", timeout=1.0)
    )

    assert isinstance(outcome, InvalidInputError)
    assert outcome.detail == "parsing took longer than 1 s; the file may be malformed"
    assert elapsed < 4
    assert stall < 0.2


async def test_a_parser_that_allocates_2_gb_fails_with_the_memory_message() -> None:
    with pytest.raises(InvalidInputError, match="parsing needed more than 256 MB"):
        await parse_isolated(GreedyParser(), b"x", "greedy.hostile", memory_bytes=256 * MB)


async def test_a_child_killed_by_a_signal_is_reported_as_out_of_memory() -> None:
    with pytest.raises(InvalidInputError, match="parsing needed more than"):
        await parse_isolated(CrashingParser(), b"x", "crash.hostile")


async def test_an_unexpected_exception_is_reported_by_class_only() -> None:
    with pytest.raises(InvalidInputError) as info:
        await parse_isolated(BuggyParser(), b"x", "bug.hostile")

    assert info.value.detail == "the file could not be parsed (KeyError)"


async def test_the_parsers_own_reason_comes_through_from_the_child() -> None:
    with pytest.raises(InvalidInputError, match="not a PDF"):
        await parse_isolated(PypdfParser(), b"<html></html>", "page.pdf")


async def test_a_decompression_bomb_fails_cleanly_within_the_timeout() -> None:
    packer = zlib.compressobj(9)
    zeros = bytes(MB)
    bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MB
    pdf = pdf_with_pages(1, bomb, b"/Filter /FlateDecode ")

    outcome, elapsed, stall = await timed(
        parse_isolated(PypdfParser(), pdf, "bomb.pdf", timeout=10.0, memory_bytes=256 * MB)
    )

    assert isinstance(outcome, InvalidInputError), outcome
    assert elapsed < 10
    assert stall < 0.2


async def test_a_10000_page_pdf_is_refused_quickly_by_the_page_limit() -> None:
    pdf = pdf_with_pages(10_000, HELLO)

    outcome, elapsed, _ = await timed(parse_isolated(PypdfParser(), pdf, "huge.pdf", timeout=10.0))

    assert isinstance(outcome, InvalidInputError)
    assert outcome.detail == "the PDF has 10000 pages; at most 2000 pages are accepted"
    assert elapsed < 5


async def test_cancelling_the_parse_kills_the_child() -> None:
    task = asyncio.create_task(parse_isolated(LoopingParser(), b"x", "loop.hostile", timeout=60))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    for _ in range(100):  # the waiting thread reaps the killed child
        if not [p for p in multiprocessing.active_children() if p.name.endswith("looping")]:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the child process outlived the cancelled parse")


PARSERS = [PypdfParser(), PlainTextParser(), MarkdownParser()]


@pytest.mark.parametrize(
    ("media_type", "filename", "expected"),
    [
        ("application/pdf", "whatever.bin", "pypdf"),
        ("text/plain; charset=utf-8", "notes", "text"),
        ("TEXT/MARKDOWN", None, "markdown"),
        ("application/octet-stream", "Report.PDF", "pypdf"),
        (None, "readme.markdown", "markdown"),
        ("", "notes.txt", "text"),
    ],
)
def test_choose_parser_goes_by_media_type_then_extension(
    media_type: str | None, filename: str | None, expected: str
) -> None:
    assert choose_parser(PARSERS, media_type, filename).name == expected


def test_choose_parser_refuses_an_unknown_type_listing_the_accepted_ones() -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        choose_parser(PARSERS, "image/png", "photo.png")

    assert "image/png" in info.value.detail
    assert "application/pdf" in info.value.detail
    assert "text/markdown" in info.value.detail
