"""The OpenAI-compatible answer engine against ``FakeChatCompletions`` on 127.0.0.1: the request it
sends, citation markers in the stream, and every failure with and without the extractive
fallback. Timeouts are short (a first-token limit of 0.2 s) so the suite stays fast.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from avatarstack.adapters.answers import ExtractiveAnswerEngine, OpenAIAnswerEngine
from avatarstack.ports.answers import (
    NO_ANSWER,
    AnswerEngine,
    AnswerPart,
    AnswerRequest,
    Citation,
    Passage,
)
from avatarstack.ports.errors import UnavailableError, UpstreamError
from avatarstack.testkit.openai import FakeChatCompletions

API_KEY = "sk-test-7d41c0b9e2a84f63a5d1"
TIMEOUT = 0.6  # the first token must come within 0.2 s

PASSAGES = (
    Passage(
        chunk_id="c-refunds",
        document_id="doc-policies",
        version=3,
        page=4,
        score=0.7,
        text="Refunds are issued within 14 days after the item reaches our warehouse.",
    ),
    Passage(
        chunk_id="c-fees",
        document_id="doc-policies",
        version=3,
        page=5,
        score=0.5,
        text="Refunds are free of charge.",
    ),
    Passage(
        chunk_id="c-cards",
        document_id="doc-cards",
        version=1,
        page=1,
        score=0.3,
        text="Gift cards cannot be refunded.",
    ),
)
CITE = [Citation.of(passage) for passage in PASSAGES]
REQUEST = AnswerRequest(question="How long do refunds take?", passages=PASSAGES)
REPLY = ["Refunds take 14 days ", "[1]", ". They are free [2]."]


@pytest.fixture
async def fake() -> AsyncIterator[FakeChatCompletions]:
    async with FakeChatCompletions(api_key=API_KEY, reply=REPLY) as server:
        yield server


@pytest.fixture
async def engine(fake: FakeChatCompletions) -> AsyncIterator[OpenAIAnswerEngine]:
    """The engine with the extractive fallback, as production wires it."""
    engine = make_engine(fake, fallback=ExtractiveAnswerEngine())
    yield engine
    await engine.close()


@pytest.fixture
async def bare(fake: FakeChatCompletions) -> AsyncIterator[OpenAIAnswerEngine]:
    """The engine without a fallback."""
    engine = make_engine(fake)
    yield engine
    await engine.close()


def make_engine(
    fake: FakeChatCompletions, *, fallback: AnswerEngine | None = None, **options: Any
) -> OpenAIAnswerEngine:
    options.setdefault("timeout_seconds", TIMEOUT)
    options.setdefault("temperature", 0.3)
    return OpenAIAnswerEngine(
        fake.api_base_url, options.pop("api_key", API_KEY), fake.model, fallback=fallback, **options
    )


async def collect(engine: AnswerEngine, request: AnswerRequest = REQUEST) -> list[AnswerPart]:
    return [part async for part in engine.answer(request)]


async def drain(engine: AnswerEngine, received: list[AnswerPart]) -> None:
    """Read the answer to REQUEST into ``received``, part by part, until it ends or fails."""
    async for part in engine.answer(REQUEST):
        received.append(part)


async def eventually(condition: Callable[[], bool], seconds: float = 1.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never became true"
        await asyncio.sleep(0.01)


def text_of(parts: list[AnswerPart]) -> str:
    return "".join(part.text for part in parts)


def citations_of(parts: list[AnswerPart]) -> list[Citation]:
    return [citation for part in parts for citation in part.citations]


# =========================================================================== the request


async def test_the_request_carries_model_messages_stream_and_temperature(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    request = AnswerRequest(
        question="And for gift cards?",
        passages=PASSAGES,
        language="de",
        history=(("user", "How long do refunds take?"), ("assistant", "14 days.")),
    )

    await collect(engine, request)

    [received] = fake.requests
    assert received.authorized
    assert received.path_qs == "/v1/chat/completions"
    body = received.body
    assert body["model"] == fake.model
    assert body["stream"] is True
    assert body["temperature"] == 0.3
    system, *turns = body["messages"]
    assert turns == [
        {"role": "user", "content": "How long do refunds take?"},
        {"role": "assistant", "content": "14 days."},
        {"role": "user", "content": "And for gift cards?"},
    ]
    assert system["role"] == "system"
    prompt = system["content"]
    assert "only from the numbered context passages" in prompt
    assert "[1]" in prompt
    assert "say plainly" in prompt
    assert "'de'" in prompt
    assert (
        "[1] (document title unknown, page 4) Refunds are issued within 14 days after the item "
        "reaches our warehouse.\n\n[2] (document title unknown, page 5) Refunds are free of "
        "charge.\n\n[3] (document title unknown, page 1) Gift cards cannot be refunded."
    ) in prompt


async def test_the_key_travels_only_in_the_authorization_header(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    await collect(engine)

    assert fake.requests[0].authorized
    assert API_KEY not in fake.requests[0].path_qs
    assert API_KEY not in repr(engine)
    assert API_KEY not in engine.base_url


async def test_with_no_passages_no_request_is_made(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    parts = await collect(engine, AnswerRequest(question="Anything?", passages=()))

    assert parts == [AnswerPart(text=NO_ANSWER)]
    assert fake.requests == []


# =========================================================================== markers


async def test_markers_become_citations_and_leave_the_text(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    parts = await collect(engine)

    assert text_of(parts) == "Refunds take 14 days. They are free."
    assert citations_of(parts) == [CITE[0], CITE[1]]
    assert parts[0] == AnswerPart(text="Refunds take 14 days")
    assert parts[1] == AnswerPart(text="", citations=(CITE[0],))


async def test_markers_split_across_deltas_are_recognised(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    fake.reply = [
        "Refunds take 14 days",
        " ",
        "[",
        "1",
        "]",
        " and cost nothing [2",
        ",",
        " 3",
        "].",
    ]

    parts = await collect(engine)

    assert text_of(parts) == "Refunds take 14 days and cost nothing."
    assert citations_of(parts) == CITE
    cited_at = next(i for i, part in enumerate(parts) if part.citations)
    assert text_of(parts[:cited_at]) == "Refunds take 14 days"


async def test_each_passage_is_cited_once_and_unknown_passages_never(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    fake.reply = ["Fourteen days [1][9]. Free [2; 1]. Gift cards [0] are excluded [3 1]."]

    parts = await collect(engine)

    assert text_of(parts) == "Fourteen days. Free. Gift cards are excluded."
    assert citations_of(parts) == [CITE[0], CITE[1], CITE[2]]


async def test_brackets_that_are_not_markers_stay_in_the_text(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    fake.reply = ["See the note [", "a] and the year [2024] [", "1]", " then [1"]

    parts = await collect(engine)

    assert text_of(parts) == "See the note [a] and the year [2024] then [1"
    assert citations_of(parts) == [CITE[0]]


async def test_a_model_that_declines_gives_an_uncited_answer(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    fake.reply = ["The knowledge base has no information about that."]

    parts = await collect(engine)

    assert text_of(parts) == "The knowledge base has no information about that."
    assert citations_of(parts) == []


async def test_a_server_that_does_not_stream_is_understood_too(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    fake.streaming = False

    parts = await collect(engine)

    assert text_of(parts) == "Refunds take 14 days. They are free."
    assert citations_of(parts) == [CITE[0], CITE[1]]


async def test_a_model_that_says_nothing_gets_the_no_answer_sentence(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    fake.reply = ["", "  "]

    parts = await collect(engine)

    assert parts == [AnswerPart(text=NO_ANSWER)]


# =========================================================================== credentials


async def test_a_wrong_key_is_an_upstream_error_that_does_not_show_it(
    fake: FakeChatCompletions,
) -> None:
    wrong = "sk-wrong-0123456789abcdef"
    engine = make_engine(fake, fallback=ExtractiveAnswerEngine(), api_key=wrong)
    try:
        with structlog.testing.capture_logs() as logs, pytest.raises(UpstreamError) as caught:
            await collect(engine)
    finally:
        await engine.close()

    message = str(caught.value)
    assert "API key" in message
    assert "401" in message
    for secret in (wrong, wrong[:8], wrong[-4:], "cdef"):  # OpenAI's message shows the ends
        assert secret not in message
        assert secret not in repr(logs)
    assert not isinstance(caught.value, UnavailableError)  # a wrong key never falls back
    assert [r.status for r in fake.requests] == [401]


async def test_a_missing_key_is_refused_too(fake: FakeChatCompletions) -> None:
    engine = make_engine(fake, api_key=None)
    try:
        with pytest.raises(UpstreamError, match="API key"):
            await collect(engine)
    finally:
        await engine.close()
    assert fake.requests[0].authorized is False


async def test_an_unknown_model_is_an_upstream_error_without_fallback(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine
) -> None:
    fake.models = {"some-other-model"}

    with pytest.raises(UpstreamError, match="404, model_not_found") as caught:
        await collect(engine)

    assert not isinstance(caught.value, UnavailableError)


# =========================================================================== failures

#: failures that happen before the model says anything
EARLY_FAILURES = ["http-500", "http-503", "http-429", "drop", "stall", "slow-first-byte", "down"]


async def break_early(fake: FakeChatCompletions, how: str) -> None:
    if how.startswith("http-"):
        status = int(how.removeprefix("http-"))
        fake.fail(status, retry_after=7 if status == 429 else None)
    elif how == "drop":
        fake.drop_after = 0  # after the role chunk, before any text
    elif how == "stall":
        fake.stall_after = 0
    elif how == "slow-first-byte":
        fake.delay_seconds = 5.0
    elif how == "down":
        await fake.stop()


@pytest.mark.parametrize("how", EARLY_FAILURES)
async def test_an_early_failure_falls_back_to_the_extractive_answer(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine, how: str
) -> None:
    await break_early(fake, how)
    started = time.monotonic()

    with structlog.testing.capture_logs() as logs:
        parts = await collect(engine)

    assert parts == await collect(ExtractiveAnswerEngine())
    assert CITE[0] in citations_of(parts)
    assert time.monotonic() - started < TIMEOUT
    assert any(log["event"] == "answer_engine_fallback" for log in logs)
    assert API_KEY not in repr(logs)


@pytest.mark.parametrize("how", EARLY_FAILURES)
async def test_an_early_failure_without_fallback_is_unavailable(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine, how: str
) -> None:
    await break_early(fake, how)

    with pytest.raises(UnavailableError) as caught:
        await collect(bare)

    assert API_KEY not in str(caught.value)


async def test_a_rate_limit_says_when_to_retry(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    fake.fail(429, retry_after=7)

    with pytest.raises(UnavailableError, match=r"429.*retry after 7 s"):
        await collect(bare)


@pytest.mark.parametrize("how", ["drop", "stall"])
async def test_a_failure_after_the_first_words_is_raised_even_with_a_fallback(
    fake: FakeChatCompletions, engine: OpenAIAnswerEngine, how: str
) -> None:
    fake.reply = ["Refunds take ", "14 days [1]", ". They are ", "free [2]."]
    if how == "drop":
        fake.drop_after = 2
    else:
        fake.stall_after = 2
    received: list[AnswerPart] = []

    with pytest.raises(UnavailableError):
        await drain(engine, received)

    assert text_of(received) == "Refunds take 14 days"
    assert citations_of(received) == [CITE[0]]


async def test_the_first_token_must_come_within_a_third_of_the_timeout(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    fake.delay_seconds = 0.3  # past 0.2 s, well within the whole 0.6 s
    started = time.monotonic()

    with pytest.raises(UnavailableError, match=r"did not start answering within 0\.2 s"):
        await collect(bare)

    assert 0.15 < time.monotonic() - started < 0.3


async def test_the_whole_answer_must_come_within_the_timeout(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    fake.reply = ["One", " two", " three", " four", " five"]
    fake.delta_delay = 0.15  # each gap is fine, together they exceed 0.6 s
    received: list[AnswerPart] = []

    with pytest.raises(UnavailableError, match=r"did not finish the answer within 0\.6 s"):
        await drain(bare, received)

    assert text_of(received).startswith("One two")


async def test_time_spent_by_the_listener_does_not_count_against_the_timeout(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    fake.reply = ["One.", " Two.", " Three."]
    received: list[AnswerPart] = []

    async for part in bare.answer(REQUEST):
        received.append(part)
        await asyncio.sleep(0.3)  # the avatar speaks; 0.9 s in all, past the 0.6 s timeout

    assert text_of(received) == "One. Two. Three."


async def test_a_slow_but_timely_model_is_not_cut_off(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    fake.delay_seconds = 0.1
    fake.delta_delay = 0.05

    parts = await collect(bare)

    assert text_of(parts) == "Refunds take 14 days. They are free."


async def test_the_fake_sees_the_client_hang_up_when_the_answer_is_closed(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    fake.reply = ["One.", " Two.", " Three.", " Four."]
    fake.delta_delay = 0.1
    parts = bare.answer(REQUEST)

    assert (await anext(parts)).text == "One."
    assert inspect.isasyncgen(parts)
    await parts.aclose()

    await eventually(lambda: fake.streams_open == 0)
    assert fake.client_disconnects == 1


async def test_the_engine_reconnects_after_the_server_comes_back(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    await fake.stop()
    with pytest.raises(UnavailableError, match="cannot be reached"):
        await collect(bare)

    await fake.start()
    parts = await collect(bare)

    assert text_of(parts) == "Refunds take 14 days. They are free."


async def test_close_ends_the_session_and_a_later_answer_opens_a_new_one(
    fake: FakeChatCompletions, bare: OpenAIAnswerEngine
) -> None:
    await collect(bare)
    await bare.close()
    await bare.close()

    assert text_of(await collect(bare)) == "Refunds take 14 days. They are free."
