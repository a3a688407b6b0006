"""An answer engine on any OpenAI-compatible chat model: ``POST {base_url}/chat/completions``.

The request streams (``"stream": true``): the server sends Server-Sent Events whose ``data:``
lines are ``chat.completion.chunk`` objects, the text in ``choices[0].delta.content``, and ends
with ``data: [DONE]``. A server that answers with a plain ``chat.completion`` JSON object instead
is understood too.

**Prompt.** One system message tells the model to answer only from the numbered context passages,
to cite them with ``[n]`` markers, to say plainly when the context does not contain the answer and
to write plain sentences meant to be spoken; it lists the passages as
``[n] (document title unknown, page p) text``. The earlier turns follow as user/assistant
messages, then the question.

**Citation markers.** ``[n]`` markers (also ``[1, 2]``, ``[1; 3]``, ``[1 2]``) become
:class:`Citation` objects of passage *n* and are removed from the text, with the whitespace
before them (``"14 days [1]."`` → ``"14 days."``): the text is spoken, and ``[1]`` read aloud is
noise. A marker split across deltas (``"[", "1", "]"``) is still recognised: text that could be
the start of a marker, and trailing whitespace, are held back until the next delta decides.
Markers naming no given passage (``[0]``, ``[9]`` with three passages) are removed without a
citation. Each citation is reported once, on the part where its first marker was. A model that
completes without any text gets :data:`NO_ANSWER` said for it.

**Timeouts.** ``timeout_seconds`` bounds the time spent waiting for the server over the whole
answer (connecting, then each read); the time the caller spends between parts (speaking) does not
count. The first token (the first non-empty ``content``) must arrive within a third of it, so a
server that does not stream must send its whole answer within that third.

**Errors and fallback.** Connection failures, timeouts, HTTP 429 and 5xx, a stream that breaks
off or reports an error mid-way are :class:`UnavailableError` (retrying later may work). HTTP
401/403 (the API key is wrong or lacks access), other 4xx (unknown model, rejected request) and
answers that are not the protocol are :class:`UpstreamError`. When a ``fallback`` engine is
configured and an ``UnavailableError`` happens before this engine has yielded anything, it is
logged and the fallback answers instead; once something was yielded the error is raised (the
caller has spoken half an answer, and only it can decide what to say). ``UpstreamError`` never
falls back: it is a configuration problem that must be seen.

The API key goes in the ``Authorization: Bearer`` header only, never in a URL, a log event or
an error message; neither do the server's error messages (OpenAI echoes part of a wrong key in
its 401 message), only its error ``code`` when it is a plain slug.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import aiohttp
import structlog

from avatarstack.ports.answers import (
    NO_ANSWER,
    AnswerEngine,
    AnswerPart,
    AnswerRequest,
    Citation,
    Passage,
)
from avatarstack.ports.errors import UnavailableError, UpstreamError

__all__ = ["OpenAIAnswerEngine", "build_messages"]

log = structlog.get_logger("avatarstack.answers.openai")

#: a larger error body is not an OpenAI error
MAX_ERROR_BODY_BYTES = 64 * 1024
#: a larger non-streaming answer is not a spoken answer
MAX_JSON_BODY_BYTES = 1024 * 1024

_SEPARATOR = r"(?:\s*[,;]\s*|\s+)"
#: one citation marker with the whitespace before it
_MARKER = re.compile(rf"\s*\[\s*(\d{{1,3}}(?:{_SEPARATOR}\d{{1,3}})*)\s*\]")
#: the end of the text that must wait for the next delta: whitespace, and what may start a marker
_HELD_BACK = re.compile(r"\s*(?:\[[\d\s,;]{0,24})?\Z")
_NUMBER = re.compile(r"\d+")
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

SYSTEM_PROMPT = """\
You are the voice of an avatar that answers questions from a knowledge base.
Answer only from the numbered context passages below; do not use any other knowledge.
After each statement, cite the passage or passages it comes from with markers such as [1] or [2].
If the context does not contain the answer, say plainly that the knowledge base has no \
information about it; never guess.
Write short, plain sentences meant to be spoken aloud: no lists, tables, headings or markdown.
{language}

Context passages:
{context}"""


def build_messages(request: AnswerRequest) -> list[dict[str, str]]:
    """The chat messages for ``request``: the system prompt with the context, the earlier turns,
    then the question."""
    context = "\n\n".join(
        f"[{number}] (document title unknown, page {passage.page}) {passage.text.strip()}"
        for number, passage in enumerate(request.passages, start=1)
    )
    language = (
        f"Answer in the language with the code {request.language!r}."
        if request.language
        else "Answer in the language of the question."
    )
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT.format(language=language, context=context)}
    ]
    messages.extend({"role": role, "content": text} for role, text in request.history)
    messages.append({"role": "user", "content": request.question})
    return messages


class _Markers:
    """Turns streamed text into parts: markers become citations and are cut from the text."""

    def __init__(self, passages: tuple[Passage, ...]) -> None:
        self._passages = passages
        self._cited: set[Citation] = set()
        self._pending = ""
        self._started = False  # some text was released already

    def feed(self, text: str) -> AnswerPart | None:
        self._pending += text
        cut = _HELD_BACK.search(self._pending)
        assert cut is not None  # the pattern matches the empty string at the end
        if cut.start() == 0:
            return None
        ready, self._pending = self._pending[: cut.start()], self._pending[cut.start() :]
        return self._part(ready)

    def finish(self) -> list[AnswerPart]:
        """The parts for the rest of the text; :data:`NO_ANSWER` when the model said nothing."""
        ready, self._pending = self._pending, ""
        last = self._part(ready, final=True)
        parts = [] if last is None else [last]
        if not self._started:
            parts.append(AnswerPart(text=NO_ANSWER))
        return parts

    def _part(self, text: str, *, final: bool = False) -> AnswerPart | None:
        citations: list[Citation] = []
        for match in _MARKER.finditer(text):
            for number in _NUMBER.findall(match.group(1)):
                index = int(number) - 1
                if not 0 <= index < len(self._passages):
                    continue
                citation = Citation.of(self._passages[index])
                if citation not in self._cited:
                    self._cited.add(citation)
                    citations.append(citation)
        text = _MARKER.sub("", text)
        if not self._started:
            text = text.lstrip()
        if final:
            text = text.rstrip()
        self._started = self._started or bool(text)
        if not text and not citations:
            return None
        return AnswerPart(text=text, citations=tuple(citations))


class _Budget:
    """Time spent waiting for the server: the first token within ``first``, all within
    ``total`` seconds."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.first = total / 3
        self.spent = 0.0
        self.first_token = False

    @contextmanager
    def _clock(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            yield
        finally:
            self.spent += loop.time() - started

    async def wait(self, awaitable: Any) -> Any:
        limit = self.total if self.first_token else self.first
        with self._clock():
            async with asyncio.timeout(max(limit - self.spent, 0.0)):
                return await awaitable

    def expired(self) -> str:
        if self.first_token:
            return f"did not finish the answer within {self.total:g} s"
        return f"did not start answering within {self.first:g} s"


class OpenAIAnswerEngine:
    """An ``AnswerEngine`` on an OpenAI-compatible chat-completions API (see the module
    docstring). One ``aiohttp`` session, created on first use and closed by :meth:`close`;
    the fallback engine is not closed by it (whoever registered it owns it)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout_seconds: float = 30.0,
        temperature: float = 0.2,
        fallback: AnswerEngine | None = None,
        name: str = "openai",
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if not model:
            raise ValueError("an OpenAI answer engine needs a model name")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.temperature = temperature
        self.fallback = fallback
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # timeouts are ours (_Budget): aiohttp's default 5-minute total must not apply
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def answer(self, request: AnswerRequest) -> AsyncIterator[AnswerPart]:
        if not request.passages:
            yield AnswerPart(text=NO_ANSWER)
            return
        fallback = self.fallback
        failure: UnavailableError | None = None
        yielded = False
        stream = self._stream(request)
        try:
            async for part in stream:
                yielded = True
                yield part
        except UnavailableError as exc:
            if yielded or fallback is None:
                raise
            failure = exc
        finally:
            await stream.aclose()
        if failure is None or fallback is None:
            return
        log.warning(
            "answer_engine_fallback", engine=self.name, fallback=fallback.name, error=failure.detail
        )
        parts = fallback.answer(request)
        try:
            async for part in parts:
                yield part
        finally:
            aclose = getattr(parts, "aclose", None)
            if aclose is not None:
                await aclose()

    # ------------------------------------------------------------------ the request

    async def _stream(self, request: AnswerRequest) -> AsyncGenerator[AnswerPart, None]:
        budget = _Budget(self.timeout_seconds)
        headers = {"Accept": "text/event-stream"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        payload = {
            "model": self.model,
            "messages": build_messages(request),
            "stream": True,
            "temperature": self.temperature,
        }
        try:
            response = await budget.wait(
                self._client().post(
                    f"{self.base_url}/chat/completions",
                    json=payload,
                    headers=headers,
                    allow_redirects=False,
                )
            )
        except TimeoutError as exc:
            raise self._unavailable(budget.expired(), "timeout") from exc
        except aiohttp.ClientError as exc:  # connection refused, reset, DNS, bad HTTP
            raise self._unavailable("cannot be reached", "unreachable") from exc
        complete = False
        try:
            if response.status != 200:
                await self._refuse(response, budget)
            markers = _Markers(request.passages)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type == "application/json":
                text = await self._whole_answer(response, budget)
                budget.first_token = True
                first = markers.feed(text)
                for whole in ([] if first is None else [first]) + markers.finish():
                    yield whole
                complete = True
                return
            if content_type != "text/event-stream":
                raise UpstreamError(
                    f"the chat model answered with {content_type or 'no content type'}, "
                    "not an event stream; check the base URL"
                )
            finished = False
            async with aclosing(self._events(response, budget)) as events:
                async for delta in events:
                    if delta is None:
                        finished = True
                        break
                    part = markers.feed(delta)
                    if part is not None:
                        yield part
            if not finished:
                raise self._unavailable("ended the answer stream before it was complete", "cut")
            for part in markers.finish():
                yield part
            complete = True
        finally:
            if complete:
                response.release()
            else:
                response.close()  # the server sees the disconnect and stops generating

    async def _events(
        self, response: aiohttp.ClientResponse, budget: _Budget
    ) -> AsyncGenerator[str | None, None]:
        """The content deltas of the event stream, then None once the model said it finished
        (``finish_reason`` or ``[DONE]``); ends early only if the stream ends early."""
        data: list[str] = []
        while True:
            try:
                raw: bytes = await budget.wait(response.content.readline())
            except TimeoutError as exc:
                raise self._unavailable(budget.expired(), "timeout") from exc
            except aiohttp.ClientError as exc:  # ClientPayloadError: the connection broke
                raise self._unavailable("broke off the answer stream", "cut") from exc
            except ValueError as exc:  # a line longer than aiohttp's buffer
                raise UpstreamError("the chat model sent an oversized event") from exc
            end = not raw
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise UpstreamError("the chat model sent an event that is not UTF-8") from exc
            if line:
                if not line.startswith(":"):  # ":" starts a comment (a keep-alive)
                    field, _, value = line.partition(":")
                    if field == "data":
                        data.append(value[1:] if value.startswith(" ") else value)
                if not end:
                    continue
            if data:  # a blank line (or the end) dispatches the event
                event, data = "\n".join(data), []
                if event.strip() == "[DONE]":
                    yield None
                    return
                for delta in self._chunk(event, budget):
                    yield delta
                    if delta is None:
                        return
            if end:
                return

    def _chunk(self, event: str, budget: _Budget) -> list[str | None]:
        try:
            chunk = json.loads(event)
        except ValueError as exc:
            raise UpstreamError("the chat model sent an event that is not JSON") from exc
        if not isinstance(chunk, dict):
            raise UpstreamError("the chat model sent an event of an unexpected shape")
        if chunk.get("error") is not None:
            code = _error_code(chunk)
            log.warning("answer_stream_error", engine=self.name, code=code)
            raise UnavailableError(
                f"the chat model reported an error mid-answer ({code or 'no code'})"
            )
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return []  # e.g. the usage chunk, or Azure's prompt-filter results
        choice = choices[0]
        if not isinstance(choice, dict):
            raise UpstreamError("the chat model sent an event of an unexpected shape")
        out: list[str | None] = []
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            budget.first_token = True
            out.append(content)
        if choice.get("finish_reason") is not None:
            if choice["finish_reason"] != "stop":
                log.info("answer_finished_early", engine=self.name, reason=choice["finish_reason"])
            out.append(None)
        return out

    async def _whole_answer(self, response: aiohttp.ClientResponse, budget: _Budget) -> str:
        """The text of a non-streaming ``chat.completion`` answer."""
        raw = await self._read(response, budget, MAX_JSON_BODY_BYTES)
        try:
            body = json.loads(raw)
            content = body["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamError("the chat model answered with an unexpected JSON shape") from exc
        if not isinstance(content, str):
            raise UpstreamError("the chat model answered without text")
        return content

    async def _read(self, response: aiohttp.ClientResponse, budget: _Budget, limit: int) -> bytes:
        try:
            raw: bytes = await budget.wait(response.content.read(limit + 1))
        except TimeoutError as exc:
            raise self._unavailable(budget.expired(), "timeout") from exc
        except aiohttp.ClientError as exc:
            raise self._unavailable("broke off its answer", "cut") from exc
        return raw

    async def _refuse(self, response: aiohttp.ClientResponse, budget: _Budget) -> None:
        """Raise the error for a non-200 answer."""
        status = response.status
        try:
            raw = await self._read(response, budget, MAX_ERROR_BODY_BYTES)
            code = _error_code(json.loads(raw))
        except (UnavailableError, ValueError):
            code = None
        log.warning("answer_upstream_refused", engine=self.name, status=status, code=code)
        if status in {401, 403}:
            raise UpstreamError(
                f"the chat model refused the API key (HTTP {status}): it is wrong, missing or "
                "lacks access to the model"
            )
        if status == 429:
            retry_after = response.headers.get("Retry-After", "")
            hint = f"; it asks to retry after {retry_after} s" if retry_after.isdigit() else ""
            raise UnavailableError(f"the chat model is rate limiting us (HTTP 429){hint}")
        if status >= 500:
            raise UnavailableError(f"the chat model failed (HTTP {status})")
        detail = f", {code}" if code else ""
        raise UpstreamError(f"the chat model rejected the request (HTTP {status}{detail})")

    def _unavailable(self, what: str, reason: str) -> UnavailableError:
        log.warning("answer_upstream_unavailable", engine=self.name, reason=reason)
        return UnavailableError(f"the chat model {what}")


def _error_code(body: Any) -> str | None:
    """The ``error.code`` (or ``error.type``) of an OpenAI error body, if it is a plain slug."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    for key in ("code", "type"):
        value = error.get(key)
        if isinstance(value, str) and _SAFE_CODE.fullmatch(value):
            return value
    return None
