"""The AnswerEngine contract over every built-in engine.

Both run the same suite: the offline ``ExtractiveAnswerEngine`` and the ``OpenAIAnswerEngine``
against ``FakeChatCompletions``, scripted like a well-behaved model: it answers from the context
passages it was sent, with ``[n]`` markers (and one marker naming a passage that does not exist).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import pytest

from avatarstack.adapters.answers import ExtractiveAnswerEngine, OpenAIAnswerEngine
from avatarstack.ports.answers import (
    NO_ANSWER,
    AnswerEngine,
    AnswerPart,
    AnswerRequest,
    Citation,
    Passage,
)
from avatarstack.testkit.openai import FakeChatCompletions

PASSAGES = (
    Passage(
        chunk_id="refunds-0",
        document_id="doc-policies",
        version=3,
        page=4,
        score=0.71,
        text="Refunds are issued within 14 days after the returned item reaches our warehouse. "
        "Refunds go back to the original payment method.",
    ),
    Passage(
        chunk_id="shipping-2",
        document_id="doc-shipping",
        version=1,
        page=2,
        score=0.42,
        text="Returned items must be shipped back in their original packaging. "
        "Return shipping for refunds is free for premium customers.",
    ),
    Passage(
        chunk_id="office-1",
        document_id="doc-contact",
        version=2,
        page=1,
        score=0.2,
        text="Our office in Lyon is open Monday to Friday from 9am to 6pm.",
    ),
)
QUESTION = "How long do refunds take to be issued?"
GIVEN = {Citation.of(passage) for passage in PASSAGES}
_CONTEXT = re.compile(r"^\[(\d+)\] \([^)]*\) (.+?)(?=\n\n\[\d+\] |\Z)", re.M | re.S)


def model_reply(body: dict[str, Any]) -> list[str]:
    """A model that quotes the first sentence of each of the first two context passages, cites
    them (markers split across deltas) and also cites a passage that does not exist."""
    system = body["messages"][0]["content"]
    passages = dict(_CONTEXT.findall(system.split("Context passages:", 1)[1].strip()))
    deltas: list[str] = []
    for number in sorted(passages)[:2]:
        sentence = passages[number].split(". ")[0].rstrip(".")
        deltas += [f"{sentence} ", "[", f"{number}", "]. "]
    return [*deltas, "That is all [", "9]."]


@dataclass
class Harness:
    engine: AnswerEngine
    #: the requests the engine's remote side received so far
    upstream_requests: Callable[[], int]
    #: the answer streams the remote side still has open
    upstream_streams_open: Callable[[], int]
    #: make the remote side stream slowly (the offline engine has nothing to slow down)
    slow_down: Callable[[], None]


@pytest.fixture(params=["extractive", "openai"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "extractive":
        engine = ExtractiveAnswerEngine()
        yield Harness(engine, lambda: 0, lambda: 0, lambda: None)
        await engine.close()
        return
    async with FakeChatCompletions(reply=model_reply) as fake:
        openai = OpenAIAnswerEngine(
            fake.api_base_url, fake.api_key, fake.model, timeout_seconds=3.0
        )

        def slow_down() -> None:
            fake.delta_delay = 0.2

        yield Harness(openai, lambda: len(fake.requests), lambda: fake.streams_open, slow_down)
        await openai.close()


async def collect(engine: AnswerEngine, request: AnswerRequest) -> list[AnswerPart]:
    return [part async for part in engine.answer(request)]


async def eventually(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition never became true"
        await asyncio.sleep(0.01)


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


# =========================================================================== contract


def test_the_engine_has_a_name(harness: Harness) -> None:
    assert isinstance(harness.engine.name, str)
    assert harness.engine.name


async def test_the_answer_is_cited_from_the_passages_it_was_given(harness: Harness) -> None:
    parts = await collect(harness.engine, AnswerRequest(question=QUESTION, passages=PASSAGES))

    assert parts
    assert all(isinstance(part, AnswerPart) for part in parts)
    answer = "".join(part.text for part in parts)
    assert "14 days" in answer
    assert answer != NO_ANSWER
    citations = [citation for part in parts for citation in part.citations]
    assert Citation.of(PASSAGES[0]) in citations
    assert set(citations) <= GIVEN  # never a passage it was not given ([9] in the reply)
    assert len(citations) == len(set(citations))  # each citation is reported once


async def test_a_citation_arrives_no_earlier_than_text_it_supports(harness: Harness) -> None:
    parts = await collect(harness.engine, AnswerRequest(question=QUESTION, passages=PASSAGES))

    first_cited = next(i for i, part in enumerate(parts) if part.citations)
    assert "".join(part.text for part in parts[: first_cited + 1]).strip()


async def test_with_no_passages_the_answer_says_so_without_asking_anyone(harness: Harness) -> None:
    parts = await collect(harness.engine, AnswerRequest(question=QUESTION, passages=()))

    assert parts == [AnswerPart(text=NO_ANSWER)]
    assert harness.upstream_requests() == 0


async def test_the_same_request_twice_cites_the_same_passages(harness: Harness) -> None:
    request = AnswerRequest(question=QUESTION, passages=PASSAGES, history=(("user", "Hello"),))

    first, second = await collect(harness.engine, request), await collect(harness.engine, request)

    assert [c for p in first for c in p.citations] == [c for p in second for c in p.citations]


async def test_closing_the_answer_mid_stream_stops_it_and_leaves_nothing_behind(
    harness: Harness,
) -> None:
    harness.slow_down()
    before = other_tasks()
    parts = harness.engine.answer(AnswerRequest(question=QUESTION, passages=PASSAGES))
    assert inspect.isasyncgen(parts)  # the port's contract: closable with aclose()

    async with aclosing(parts):
        first = await anext(parts)
        assert first.text or first.citations

    with pytest.raises(StopAsyncIteration):
        await anext(parts)
    await eventually(lambda: harness.upstream_streams_open() == 0)
    await eventually(lambda: other_tasks() <= before)


async def test_cancelling_the_task_reading_the_answer_stops_it_promptly(
    harness: Harness,
) -> None:
    harness.slow_down()
    before = other_tasks()
    received: list[AnswerPart] = []
    got_one = asyncio.Event()

    async def listen() -> None:
        async for part in harness.engine.answer(
            AnswerRequest(question=QUESTION, passages=PASSAGES)
        ):
            received.append(part)
            got_one.set()
            await asyncio.sleep(0.05)  # the avatar speaking

    task = asyncio.create_task(listen())
    await asyncio.wait_for(got_one.wait(), 2.0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.5)

    assert done == {task}
    assert task.cancelled()
    await eventually(lambda: harness.upstream_streams_open() == 0)
    await eventually(lambda: other_tasks() <= before)


async def test_close_is_idempotent_and_the_engine_is_usable_until_then(harness: Harness) -> None:
    await collect(harness.engine, AnswerRequest(question=QUESTION, passages=PASSAGES))

    await harness.engine.close()
    await harness.engine.close()


async def test_closing_an_unused_engine_is_harmless(harness: Harness) -> None:
    await harness.engine.close()
    await harness.engine.close()
