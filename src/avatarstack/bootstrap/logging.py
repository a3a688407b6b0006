"""structlog configuration: console output in development, JSON lines in production.

Events are constant snake_case names with key/value data. Values under keys that look like
secrets are replaced before rendering, so a careless ``log.info("x", password=...)`` never
reaches the output. ``request_id`` is bound per request through contextvars by the HTTP
middleware and appears on every line logged while that request runs.

Lines for standard error are written by a thread (:class:`BackgroundWriter`): a write to a
busy disk or a full pipe can take milliseconds, and the event loop must not wait for it.

What is never logged, in either format and at any level (docs/operators.md):
- frame locals: tracebacks are plain (no ``show_locals``), so a password or DSN held in a
  variable of a failing function stays out;
- passwords in URLs (``scheme://user:password@host``) and password hashes: every rendered
  line, third-party records included (asyncpg's pool warnings carry the DSN), is scrubbed;
- SQL parameters: aiosqlite's debug lines (each statement with its parameters: password and
  token hashes) are dropped.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from avatarstack.adapters.http.pipeline import CURRENT_REQUEST_ID
from avatarstack.bootstrap.settings import Settings

SECRET_KEY_PATTERN = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key|cookie|credential|private", re.I
)
REDACTED = "***"
#: the password of a URL: ``postgresql://user:PASSWORD@host``
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+@", re.I)
#: a PHC-format password hash (argon2, scrypt) anywhere in a line
_PASSWORD_HASH = re.compile(r"\$(?:argon2(?:id|i|d)|scrypt)\$[^\s'\")\]}]+")
#: library loggers whose lower levels would print SQL parameters
_QUIET_LOGGERS = {"aiosqlite": logging.INFO}


def scrub(text: str) -> str:
    """``text`` without URL passwords and password hashes."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)
    return _PASSWORD_HASH.sub(REDACTED, text)


class _Scrubbed:
    """A structlog renderer whose output line goes through :func:`scrub` (the last step, so
    it covers the event, every value and the formatted traceback)."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        return scrub(str(self._renderer(logger, method, event_dict)))


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Whether a key looks like it names a secret. Log keys are a small, fixed set of names,
    so the answer is remembered instead of searching the pattern on every line."""
    return SECRET_KEY_PATTERN.search(key) is not None


def _clean(value: Any, depth: int = 0) -> Any:
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if _secret_key(str(k)) else _clean(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask values of secret-looking keys, recursively."""
    for key, value in event_dict.items():  # replaces values only: the keys stay as they are
        if key == "event":
            continue
        if _secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, dict | list | tuple):
            event_dict[key] = _clean(value)
    return event_dict


def add_request_id(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the id of the HTTP request being handled, if any."""
    request_id = CURRENT_REQUEST_ID.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


class BackgroundWriter:
    """A text stream whose writes a daemon thread carries out on ``target``, in order, flushing
    after each batch. ``write`` only queues the text, so the caller (the event loop) never
    waits for the disk, the pipe or the terminal. What is queued is written at exit
    (``close``); a process killed with SIGKILL loses the lines of its last moments. A forked
    child starts its own thread."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self._start()
        atexit.register(self.close)
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        #: text to write; an Event to set once everything before it is written; None to stop
        self._queue: queue.SimpleQueue[str | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, text: str) -> int:
        self._queue.put(text)
        return len(text)

    def flush(self) -> None:
        """Nothing to wait for here: the thread flushes after each batch (see :meth:`drain`)."""

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until every line queued so far is written."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while isinstance(batch[-1], str) and len(batch) < 1000:
                    batch.append(self._queue.get_nowait())
            text = "".join(item for item in batch if isinstance(item, str))
            if text:
                with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
                    self.target.write(text)
                    self.target.flush()
            last = batch[-1]
            if isinstance(last, threading.Event):
                last.set()
            elif last is None:
                return


_writers: dict[int, BackgroundWriter] = {}


def background_writer(target: TextIO) -> BackgroundWriter:
    """The one writer of ``target`` in this process."""
    writer = _writers.get(id(target))
    if writer is None or writer.target is not target:
        writer = _writers[id(target)] = BackgroundWriter(target)
    return writer


def drain_logs(timeout: float = 5.0) -> None:
    """Wait until every log line queued so far in this process is written: a command that
    fails prints its one-line error after them, not before a late warning."""
    for writer in list(_writers.values()):
        writer.drain(timeout)


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library root logger once, from settings. Lines go
    to ``stream`` as they are logged, or by default to standard error, through a
    :class:`BackgroundWriter` when it is the process's own."""
    level = getattr(logging, settings.log_level.upper())
    if stream is None:
        # the process's own standard error through the writer thread; a stream that replaced
        # it (a test runner capturing output) as it is, so the output is there when it reads
        real = sys.stderr is sys.__stderr__
        stream = background_writer(sys.stderr) if real else sys.stderr  # type: ignore[assignment]
    json_output = settings.log_format == "json" or (
        settings.log_format == "auto" and settings.is_production
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = _Scrubbed(
        structlog.processors.JSONRenderer()
        if json_output
        # plain tracebacks: rich's and better-exceptions' print every frame's locals
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if json_output else _passthrough,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiohttp, asyncpg) go through the same renderer.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *([structlog.processors.format_exc_info] if json_output else []),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = True  # we log requests ourselves
    for name, floor in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, floor))


def _passthrough(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return event_dict
