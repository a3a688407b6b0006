"""Running a :class:`~avatarstack.ports.documents.DocumentParser` in a child process.

pypdf (like most parsers) has no time or memory limit, and a malformed file can loop or
balloon. :func:`parse_isolated` starts a fresh child per file, limits its address space with
``RLIMIT_AS``, kills it after a wall-clock timeout, and turns every way it can end into a
:class:`~avatarstack.ports.errors.InvalidInputError` with a reason a person can read. The event
loop only awaits a worker thread that waits on a pipe, so the server stays responsive.

Children come from a ``forkserver`` (never a plain ``fork`` of the server, which is a threaded
asyncio process): a clean helper process, started on first use, that has imported the parsers
once and forks a child per file. A child therefore starts in milliseconds instead of the
half-second a ``spawn`` child needs to import Python, pydantic and pypdf again, and still
shares nothing with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import sys
import threading
import types
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import PurePath
from typing import Any

from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.errors import InvalidInputError, UnsupportedMediaTypeError

DEFAULT_TIMEOUT = 30.0
DEFAULT_MEMORY_BYTES = 1_073_741_824
#: freed when the child runs out of memory, so it can still report that
_RESERVE_BYTES = 4 * 1024 * 1024
#: how long a child that has answered may take to exit before it is killed
_EXIT_GRACE = 5.0
#: imported once by the fork server, so each child starts with them loaded
PRELOAD = ("avatarstack.adapters.parsers", "pypdf")
#: multiprocessing keeps one fork server per process; this remembers that it was configured
_context: Any = None


def _process_context() -> Any:
    """The ``forkserver`` context (preloading :data:`PRELOAD`), ``spawn`` where there is none."""
    global _context
    if _context is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            forkserver = multiprocessing.get_context("forkserver")
            forkserver.set_forkserver_preload(list(PRELOAD))
            _context = forkserver
        else:  # pragma: no cover - platforms without fork
            _context = multiprocessing.get_context("spawn")
    return _context


def choose_parser(
    parsers: Iterable[DocumentParser],
    media_type: str | None,
    filename: str | None,
    *,
    prefer: Sequence[str] = (),
) -> DocumentParser:
    """The parser for ``media_type`` (parameters ignored), else for the file's extension;
    :class:`UnsupportedMediaTypeError` listing the accepted types when none fits.

    ``prefer`` is ``kb.parsers``: parser names in order of preference. Among the parsers that
    accept the media type (or, failing that, the extension), the first one named there wins;
    unnamed parsers follow in registration order, and names of parsers that are not registered
    are ignored. Empty: registration order.
    """
    candidates = list(parsers)
    if prefer:
        rank: dict[str, int] = {}
        for name in prefer:
            rank.setdefault(name, len(rank))
        candidates.sort(key=lambda parser: rank.get(parser.name, len(rank)))  # stable
    essence = (media_type or "").split(";", 1)[0].strip().lower()
    if essence:
        for parser in candidates:
            if essence in (t.lower() for t in parser.media_types):
                return parser
    suffix = PurePath(filename).suffix.lower() if filename else ""
    if suffix:
        for parser in candidates:
            if suffix in (e.lower() for e in parser.extensions):
                return parser
    types = sorted({t for p in candidates for t in p.media_types})
    extensions = sorted({e for p in candidates for e in p.extensions})
    raise UnsupportedMediaTypeError(
        f"unsupported document type {essence or suffix or 'unknown'!r}; accepted: "
        f"{', '.join(types)} ({', '.join(extensions)})"
    )


async def parse_isolated(
    parser: DocumentParser,
    data: bytes,
    filename: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the child's limit, not an await's
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> ParsedDocument:
    """``parser.parse(data, filename)`` in a fresh child process, limited to ``timeout``
    seconds of wall-clock time and ``memory_bytes`` of address space."""
    ctx = _process_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main,
        args=(sender, parser, data, filename, memory_bytes),
        name=f"avatarstack-parse-{parser.name}",
        daemon=True,
    )
    try:
        # spawning writes the pickled arguments to the child: blocking, so off the loop
        await asyncio.to_thread(_start, process)
    except BaseException:
        receiver.close()
        raise
    finally:
        sender.close()
    try:
        outcome = await asyncio.to_thread(_wait, process, receiver, timeout)
    finally:
        # on cancellation the waiting thread is still blocked on the pipe: killing the child
        # ends it (EOF), and the thread reaps the child and closes the pipe itself
        if process.exitcode is None:
            process.kill()
    return _result(outcome, process.exitcode, timeout=timeout, memory_bytes=memory_bytes)


#: ``_start`` swaps the process-wide ``__main__`` for a moment
_MAIN_SWAP = threading.Lock()
_NEUTRAL_MAIN = types.ModuleType("__main__")


def _start(process: Any) -> None:
    """Start the child without the parent's ``__main__``: multiprocessing makes every child
    import the parent's main module again (for ``avatarstack serve`` the whole CLI and server,
    0.8 s per file); parsers are module-level classes of importable modules, so the child
    needs none of it."""
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = _NEUTRAL_MAIN
        try:
            process.start()
        finally:
            sys.modules["__main__"] = main


def _wait(
    process: multiprocessing.process.BaseProcess, receiver: Connection, timeout: float
) -> tuple[str, Any] | None:
    """Runs in a worker thread: the child's answer, ``("timeout", None)`` or None if it died."""
    outcome: tuple[str, Any] | None = None
    try:
        if receiver.poll(timeout):
            try:
                outcome = receiver.recv()
            except (EOFError, OSError):
                outcome = None  # the child died; its exit code says how
        else:
            outcome = ("timeout", None)
    finally:
        receiver.close()
        if outcome is None or outcome[0] == "timeout":
            process.kill()
        process.join(_EXIT_GRACE)
        if process.exitcode is None:
            process.kill()
            process.join()
    return outcome


def _result(
    outcome: tuple[str, Any] | None, exitcode: int | None, *, timeout: float, memory_bytes: int
) -> ParsedDocument:
    memory = f"parsing needed more than {memory_bytes // 1_048_576} MB; the file may be malformed"
    if outcome is None:
        if exitcode is not None and exitcode < 0:  # killed by a signal (OOM killer, SIGSEGV…)
            raise InvalidInputError(memory)
        raise InvalidInputError(f"the file could not be parsed (the parser exited with {exitcode})")
    kind, value = outcome
    if kind == "ok" and isinstance(value, ParsedDocument):
        return value
    if kind == "timeout":
        raise InvalidInputError(
            f"parsing took longer than {timeout:g} s; the file may be malformed"
        )
    if kind == "memory":
        raise InvalidInputError(memory)
    if kind == "invalid":
        raise InvalidInputError(str(value))
    raise InvalidInputError(f"the file could not be parsed ({value})")


def _child_main(
    conn: Connection, parser: DocumentParser, data: bytes, filename: str, memory_bytes: int
) -> None:
    """The child process: limit memory, parse, send one ``(kind, value)`` answer."""
    reserve: bytearray | None = bytearray(_RESERVE_BYTES)
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit may already apply
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    outcome: tuple[str, Any]
    try:
        outcome = ("ok", parser.parse(data, filename))
    except InvalidInputError as exc:
        outcome = ("invalid", exc.detail)
    except MemoryError:
        reserve = None
        outcome = ("memory", None)
    except BaseException as exc:  # report the class only: messages may quote the file
        outcome = ("error", type(exc).__name__)
    del data, reserve
    try:
        conn.send(outcome)
    except MemoryError:
        conn.send(("memory", None))
    finally:
        conn.close()
