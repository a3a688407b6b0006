"""Serving the application: an ``AppRunner`` whose low-level errors are problem documents.

aiohttp answers requests it cannot parse (a malformed header, a request line or headers larger
than its limits, a body it cannot frame) before any route runs, from
``RequestHandler.handle_error``: a ``text/plain`` body that repeats the parser's message, which
can quote the request's bytes. :class:`ProblemAppRunner` serves with a request handler whose
``handle_error`` answers an RFC 9457 problem instead, names the failure without echoing input,
and carries the security headers every other response has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from avatarstack.adapters.http.headers import API_CSP, CSP_HEADER, base_headers
from avatarstack.adapters.http.problems import CODE_BY_STATUS, PROBLEM_MEDIA_TYPE, TYPE_PREFIX

log = structlog.get_logger("avatarstack.http")

#: what a client is told for each low-level failure (never the parser's message: it may quote
#: the request)
_DETAILS = {
    400: "The request could not be parsed as HTTP.",
    413: "The request body is larger than the server accepts.",
    414: "The request line is longer than the server accepts.",
    431: "The request headers are larger than the server accepts.",
    500: "The server could not complete the request.",
    504: "The server did not complete the request in time.",
}


def low_level_problem(status: int, *, https: bool) -> web.Response:
    """The problem response for a request aiohttp refused before routing."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = {
        "type": TYPE_PREFIX + CODE_BY_STATUS.get(status, "http-error"),
        "title": phrase,
        "status": status,
        "detail": _DETAILS.get(status, "The request could not be handled."),
    }
    headers = base_headers(https=https)
    headers[CSP_HEADER] = API_CSP
    response = web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )
    response.force_close()
    return response


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors as problem documents."""

    https = False

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # the message and the exception may quote the request: the log gets their type only
        log.info(
            "http_refused",
            status=status,
            error=type(exc).__name__ if exc is not None else None,
            remote=request.remote,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; no error response can follow")
        return low_level_problem(status, https=self.https)


class _ProblemServer(web.Server):
    """aiohttp's low-level server, making :class:`ProblemRequestHandler` connections."""

    def __init__(self, *args: Any, https: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        handler = type("_Handler", (ProblemRequestHandler,), {"https": https})
        self._handler_class: type[ProblemRequestHandler] = handler

    def __call__(self) -> RequestHandler:
        return self._handler_class(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer low-level errors as problems."""

    def __init__(self, app: web.Application, *, https: bool = False, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._https = https

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _ProblemServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            https=self._https,
            **server._kwargs,
        )


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    https: bool,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled (``web.run_app``'s loop, with
    :class:`ProblemAppRunner`); SIGINT/SIGTERM stop it gracefully."""
    runner = ProblemAppRunner(
        app,
        https=https,
        handle_signals=True,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        if on_started is not None:
            on_started()
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()


def run(app: web.Application, **options: Any) -> None:
    """Run :func:`serve` in a new event loop until a signal stops it. Like ``web.run_app``,
    the server task alone is cancelled first, so its cleanup lets in-flight requests finish
    (``shutdown_timeout``) before anything else is cancelled."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(serve(app, **options))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
