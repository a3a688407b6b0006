"""structlog configuration: console output in development, JSON lines in production.

Events are constant snake_case names with key/value data. Values under keys that look like
secrets are replaced before rendering, so a careless ``log.info("x", password=...)`` never
reaches the output. ``request_id`` is bound per request through contextvars by the HTTP
middleware and appears on every line logged while that request runs.

What is never logged, in either format and at any level (docs/operators.md):
- frame locals: tracebacks are plain (no ``show_locals``), so a password or DSN held in a
  variable of a failing function stays out;
- passwords in URLs (``scheme://user:password@host``) and password hashes: every rendered
  line, third-party records included (asyncpg's pool warnings carry the DSN), is scrubbed;
- SQL parameters: aiosqlite's debug lines (each statement with its parameters: password and
  token hashes) are dropped.
"""

from __future__ import annotations

import logging
import re
import sys
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


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask values of secret-looking keys, recursively."""

    def clean(value: Any, depth: int = 0) -> Any:
        if depth > 4:
            return value
        if isinstance(value, dict):
            return {
                k: REDACTED if SECRET_KEY_PATTERN.search(str(k)) else clean(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [clean(v, depth + 1) for v in value]
        return value

    for key in list(event_dict):
        if key == "event":
            continue
        if SECRET_KEY_PATTERN.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = clean(event_dict[key])
    return event_dict


def add_request_id(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the id of the HTTP request being handled, if any."""
    request_id = CURRENT_REQUEST_ID.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library root logger once, from settings."""
    level = getattr(logging, settings.log_level.upper())
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
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiohttp, asyncpg) go through the same renderer.
    handler = logging.StreamHandler(stream or sys.stderr)
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
