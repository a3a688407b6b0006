"""A fake OpenAI-compatible chat-completions API: a real aiohttp server on 127.0.0.1.

``POST /v1/chat/completions`` behaves like OpenAI's for the parts a chat client uses:

* ``Authorization: Bearer <api_key>`` is required; a missing or wrong key gets OpenAI's 401 body
  ``{"error": {"message", "type", "param", "code"}}`` (its message, like OpenAI's, shows the
  first and last characters of a wrong key, so a client that echoes it leaks them).
* The body is validated: a JSON object with a non-empty ``model`` string, a non-empty
  ``messages`` list of ``{"role", "content"}`` objects (role ``system``, ``user`` or
  ``assistant``, content a string), ``stream`` a boolean and ``temperature`` a number from 0 to 2
  when present; anything else is a 400 ``invalid_request_error`` naming the ``param``. With
  ``models`` set, another model is a 404 ``model_not_found``.
* ``"stream": true`` answers ``text/event-stream``: a ``chat.completion.chunk`` with the
  assistant role, one chunk per scripted delta, a last chunk with ``finish_reason: "stop"`` (and
  a usage chunk when ``stream_options.include_usage`` is set), then ``data: [DONE]``. Otherwise
  the answer is one ``chat.completion`` object.

The reply is scripted with ``reply``: a list of deltas, or a function of the request body
returning one. Faults: :meth:`fail` (500, 429 with ``Retry-After``… for the next N requests),
``delay_seconds`` (before the first byte), ``stall_after`` (hang after that many deltas for
``stall_seconds``), ``drop_after`` (close the connection after that many deltas),
``delta_delay`` (between deltas), ``streaming = False`` (never stream). Waits end early when
the client goes away or the server stops.
Records: ``requests`` (every request received, in order), ``streams_open`` and
``client_disconnects`` (streams the client abandoned)::

    async with FakeChatCompletions() as fake:
        fake.reply = ["Refunds take ", "14 days [", "1]."]
        engine = OpenAIAnswerEngine(fake.api_base_url, fake.api_key, fake.model)
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from avatarstack.testkit._server import LocalServer

__all__ = ["ChatRequest", "FakeChatCompletions", "Reply"]

#: a scripted reply: the deltas, or a function of the request body giving them
Reply = Sequence[str] | Callable[[dict[str, Any]], Sequence[str]]

_ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True)
class ChatRequest:
    """One request the fake received."""

    #: the path with its query string, as sent (a key must never appear here)
    path_qs: str
    #: True when the bearer key matched
    authorized: bool
    #: the parsed JSON body (None when it was not JSON)
    body: Any
    #: the status the fake answered with
    status: int


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: every request
    retry_after: int | None


class FakeChatCompletions(LocalServer):
    """See the module docstring. ``api_base_url`` is what a client uses as its base URL."""

    def __init__(
        self,
        *,
        api_key: str = "sk-fake-chat-3f9a1c7e5b2d4086",
        model: str = "gpt-fake-mini",
        models: Sequence[str] | None = None,
        reply: Reply = ("I could not find that in the context.",),
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.model = model
        #: the models that exist; None accepts any model name
        self.models = None if models is None else set(models)
        self.reply: Reply = reply
        #: seconds to wait before answering at all (no status line, no headers)
        self.delay_seconds = 0.0
        #: seconds between two streamed deltas
        self.delta_delay = 0.0
        #: after this many deltas (0: right after the role chunk), hang for ``stall_seconds``
        self.stall_after: int | None = None
        self.stall_seconds = 3600.0
        #: after this many deltas, close the connection without ending the stream
        self.drop_after: int | None = None
        #: False: answer one ``chat.completion`` even when asked to stream (some servers do)
        self.streaming = True
        self.requests: list[ChatRequest] = []
        self.streams_open = 0
        self.client_disconnects = 0
        self._faults: list[_Fault] = []

    @property
    def api_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def fail(
        self, status: int, *, times: int | None = None, retry_after: int | None = None
    ) -> None:
        """Answer the next ``times`` valid requests (all when None) with ``status`` and an
        OpenAI error body; ``retry_after`` sets the ``Retry-After`` header (seconds)."""
        self._faults = [_Fault(status, times, retry_after)]

    def heal(self) -> None:
        """Stop failing (:meth:`fail`) and stalling, dropping or delaying."""
        self._faults = []
        self.delay_seconds = 0.0
        self.stall_after = None
        self.drop_after = None

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        return app

    # ------------------------------------------------------------------ the endpoint

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        authorized = request.headers.get("Authorization", "") == f"Bearer {self.api_key}"
        try:
            body: Any = json.loads(await request.read())
        except ValueError:
            body = None

        def record(status: int) -> None:
            self.requests.append(ChatRequest(request.path_qs, authorized, body, status))

        if not authorized:
            record(401)
            return _error(
                401, _auth_message(request), "invalid_request_error", None, _auth_code(request)
            )
        problem = _validate(body)
        if problem is not None:
            record(400)
            message, param = problem
            return _error(400, message, "invalid_request_error", param, None)
        if self.models is not None and body["model"] not in self.models:
            record(404)
            return _error(
                404,
                f"The model `{body['model']}` does not exist or you do not have access to it.",
                "invalid_request_error",
                None,
                "model_not_found",
            )
        fault = self._next_fault()
        if fault is not None:
            record(fault.status)
            await self._pause(request, self.delay_seconds)
            return _fault_response(fault)
        record(200)
        await self._pause(request, self.delay_seconds)
        reply = self.reply(body) if callable(self.reply) else self.reply
        deltas = [str(delta) for delta in reply]
        if body.get("stream") is True and self.streaming:
            return await self._stream(request, body, deltas)
        return web.json_response(_completion(body["model"], "".join(deltas)))

    def _next_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
        return fault

    async def _stream(
        self, request: web.Request, body: dict[str, Any], deltas: list[str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        chunk_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        model = body["model"]
        self.streams_open += 1
        try:
            await response.prepare(request)
            role = {"role": "assistant", "content": ""}
            await _send(response, _chunk(chunk_id, created, model, role))
            for sent, delta in enumerate(deltas):
                if not await self._before_delta(request, sent):
                    return response
                await _send(response, _chunk(chunk_id, created, model, {"content": delta}))
            if not await self._before_delta(request, len(deltas)):
                return response
            await _send(response, _chunk(chunk_id, created, model, {}, finish_reason="stop"))
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage") is True:
                usage = _usage(body, "".join(deltas))
                final = {**_chunk(chunk_id, created, model, {}), "choices": [], "usage": usage}
                await _send(response, final)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:  # the client hung up while we were writing
            self.client_disconnects += 1
        finally:
            self.streams_open -= 1
        return response

    async def _before_delta(self, request: web.Request, sent: int) -> bool:
        """Apply the faults due before delta number ``sent``; False when the stream must end."""
        if sent == self.drop_after:
            transport = request.transport
            if transport is not None:
                transport.close()  # flushes what was written, then hangs up mid-stream
            return False
        if sent == self.stall_after:
            await self._pause(request, self.stall_seconds)
        elif sent > 0:
            await self._pause(request, self.delta_delay)
        if _gone(request):
            self.client_disconnects += 1
            return False
        return True

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Wait ``seconds``, ending early when the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and not _gone(request):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await self._sleep(min(left, 0.01))


# ---------------------------------------------------------------------- OpenAI's shapes


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _validate(body: Any) -> tuple[str, str | None] | None:
    """(message, param) of the first problem with the request body, or None."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request.", None
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "you must provide a model parameter", "model"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "[] is too short - 'messages'", "messages"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return (
                f"Invalid type for 'messages[{index}]': expected an object.",
                f"messages[{index}]",
            )
        role = message.get("role")
        if role not in _ROLES:
            return (
                f"Invalid value for 'messages[{index}].role': {role!r}; supported values are "
                "'system', 'user' and 'assistant'.",
                f"messages[{index}].role",
            )
        if not isinstance(message.get("content"), str):
            return (
                f"Invalid type for 'messages[{index}].content': expected a string.",
                f"messages[{index}].content",
            )
    if "stream" in body and not isinstance(body["stream"], bool):
        return "Invalid type for 'stream': expected a boolean.", "stream"
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        return "Invalid 'temperature': expected a number from 0 to 2.", "temperature"
    return None


def _auth_message(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:]:
        return (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    key = header[7:]
    shown = f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 7 else "***"
    return (
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )


def _auth_code(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return "invalid_api_key" if header.startswith("Bearer ") and header[7:] else None


def _error(
    status: int, message: str, kind: str, param: str | None, code: str | None, **headers: str
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status=status,
        headers=headers or None,
    )


def _fault_response(fault: _Fault) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.status == 429:
        return _error(
            429,
            "Rate limit reached for requests. Please try again later.",
            "requests",
            None,
            "rate_limit_exceeded",
            **headers,
        )
    if fault.status >= 500:
        return _error(
            fault.status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
            **headers,
        )
    return _error(fault.status, "Scripted failure.", "invalid_request_error", None, None, **headers)


def _chunk(
    chunk_id: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


async def _send(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion = len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": 0},
    }
