"""The pieces of adapters/vendorhttp that the HeyGen and LiveAvatar suites do not pin down."""

from __future__ import annotations

import pytest

from avatarstack.adapters.vendorhttp import (
    MESSAGE_CHARS,
    NOT_JSON,
    Answer,
    Retryable,
    VendorHttp,
    backoff_delay,
    clean_message,
    retry_after_seconds,
    with_retries,
)
from avatarstack.ports.errors import UpstreamError


def test_a_vendor_message_is_one_short_line_without_secrets() -> None:
    assert clean_message("bad\nkey sk-123\x00here", secrets=("sk-123", None)) == "bad key *** here"
    long = clean_message("x" * 500)
    assert len(long) == MESSAGE_CHARS
    assert long.endswith("…")
    assert clean_message(" \n ") == ""


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("", None), ("3", 3.0), ("-2", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_retry_after_is_read_in_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_backoff_doubles_with_jitter_between_half_and_all() -> None:
    for retry, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0)):
        assert ceiling / 2 <= backoff_delay(0.5, retry) <= ceiling


async def test_retries_stop_after_the_last_attempt_and_raise_its_failure() -> None:
    calls: list[int] = []
    told: list[tuple[int, str, float]] = []

    async def failing() -> int:
        calls.append(1)
        raise Retryable("server", 503)

    with pytest.raises(Retryable) as raised:
        await with_retries(
            failing,
            attempts=3,
            first_delay=0.0,
            on_retry=lambda n, failure, delay: told.append((n, failure.reason, delay)),
        )
    assert raised.value.status == 503
    assert len(calls) == 3
    assert told == [(1, "server", 0.0), (2, "server", 0.0)]


async def test_a_retry_waits_at_least_retry_after_and_at_most_the_cap() -> None:
    delays: list[float] = []
    answers = iter([Retryable("throttled", 429, retry_after=0.02), None])

    async def once() -> str:
        failure = next(answers)
        if failure is not None:
            raise failure
        return "ok"

    result = await with_retries(
        once,
        attempts=2,
        first_delay=0.0,
        max_delay=0.01,
        on_retry=lambda n, failure, delay: delays.append(delay),
    )
    assert result == "ok"
    assert delays == [0.01]


def test_decode_caps_the_body_and_marks_what_is_not_json() -> None:
    http = VendorHttp("Vendor", timeout=1.0, max_body_bytes=10)
    assert http.decode(Answer(200, None, b'{"a": 1}'), "x") == {"a": 1}
    assert http.decode(Answer(200, None, b"  "), "x") is None
    assert http.decode(Answer(200, None, b"<html>"), "x") is NOT_JSON
    assert http.decode(Answer(200, None, b"\xff\xfe"), "x") is NOT_JSON
    with pytest.raises(UpstreamError, match="Vendor answered the list with more than 10 bytes"):
        http.decode(Answer(200, None, b"x" * 11), "the list")
