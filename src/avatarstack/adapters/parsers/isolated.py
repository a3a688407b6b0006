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

Even those milliseconds are kept off the path of a file: up to :data:`SPARES` children are
started ahead of need, in a background thread, and wait for their one file on a pipe. A parse
takes a waiting child (starting one only when none is ready) and a new spare is started
behind it; a child that has answered is reaped in the background. Every file still gets a fresh
process of its own, used once.
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
from dataclasses import dataclass
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
#: imported once by the fork server, so each child starts with them loaded (``_warm`` parses a
#: sample PDF: what pypdf loads on its first extraction is loaded once, not once per child)
PRELOAD = ("avatarstack.adapters.parsers", "pypdf", "avatarstack.adapters.parsers._warm")
#: children kept started and waiting for a file (about the ingestion worker's concurrency)
SPARES = 2
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


def upload_types(parsers: Iterable[DocumentParser]) -> list[str]:
    """The file extensions (``.pdf``) and media types the parsers read, each once, in the
    parsers' order: what the console's upload accepts and ``avatarstack ingest`` lists."""
    return list(
        dict.fromkeys(
            item
            for parser in parsers
            for item in (*(f".{e.lstrip('.')}" for e in parser.extensions), *parser.media_types)
        )
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
    # starting a child writes to the fork server: blocking, so off the loop
    child = await asyncio.to_thread(_take_child)
    child.process.name = f"avatarstack-parse-{parser.name}"
    try:
        outcome = await asyncio.to_thread(
            _run, child, (parser, data, filename, memory_bytes), timeout
        )
    finally:
        # on cancellation the waiting thread is still blocked on the pipe: killing the child
        # ends it (EOF), and the thread reaps the child and closes the pipes itself
        if _pending(child):
            child.process.kill()
    return _result(outcome, child.process.exitcode, timeout=timeout, memory_bytes=memory_bytes)


@dataclass(eq=False)
class _Child:
    """A started child waiting for its file: the process, the pipe the file goes down and the
    pipe the answer comes back on."""

    process: Any
    jobs: Connection
    results: Connection
    answered: bool = False

    def close(self) -> None:
        self.jobs.close()
        self.results.close()


def _pending(child: _Child) -> bool:
    """True while the child has not answered and has not been reaped."""
    return not child.answered and child.process.exitcode is None


_spares: list[_Child] = []
_spares_lock = threading.Lock()
_refilling = False


def _new_child() -> _Child:
    ctx = _process_context()
    job_reader, job_writer = ctx.Pipe(duplex=False)
    result_reader, result_writer = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main,
        args=(job_reader, result_writer),
        name="avatarstack-parse",
        daemon=True,
    )
    try:
        _start(process)
    except BaseException:
        job_writer.close()
        result_reader.close()
        raise
    finally:
        job_reader.close()
        result_writer.close()
    return _Child(process, job_writer, result_reader)


def _take_child() -> _Child:
    """A waiting spare (one that is still alive), else a child started now; then the spares
    are topped up in the background."""
    child: _Child | None = None
    with _spares_lock:
        while _spares:
            spare = _spares.pop()
            if spare.process.is_alive():
                child = spare
                break
            spare.close()
    if child is None:
        child = _new_child()
    _top_up()
    return child


def _top_up() -> None:
    global _refilling
    with _spares_lock:
        if _refilling or len(_spares) >= SPARES:
            return
        _refilling = True
    threading.Thread(target=_refill, name="avatarstack-parse-spares", daemon=True).start()


def _refill() -> None:
    global _refilling
    try:
        while True:
            with _spares_lock:
                if len(_spares) >= SPARES:
                    return
            child = _new_child()
            with _spares_lock:
                _spares.append(child)
    except Exception:  # noqa: S110 - no spare then: the next parse starts its own child
        pass
    finally:
        with _spares_lock:
            _refilling = False


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


def _run(child: _Child, job: tuple[Any, ...], timeout: float) -> tuple[str, Any] | None:
    """Runs in a worker thread: hand the child its file, then its answer,
    ``("timeout", None)``, or None if it died."""
    outcome: tuple[str, Any] | None = None
    process = child.process
    try:
        try:
            child.jobs.send(job)
        except (OSError, ValueError):
            outcome = None  # it died before it got the file; its exit code says how
        else:
            if child.results.poll(timeout):
                try:
                    outcome = child.results.recv()
                except (EOFError, OSError):
                    outcome = None
            else:
                outcome = ("timeout", None)
    finally:
        child.close()
    if outcome is not None and outcome[0] != "timeout":
        child.answered = True  # it exits by itself: reaped in the background
        threading.Thread(target=_reap, args=(process,), daemon=True).start()
        return outcome
    process.kill()
    process.join(_EXIT_GRACE)
    return outcome


def _reap(process: multiprocessing.process.BaseProcess) -> None:
    process.join(_EXIT_GRACE)
    if process.exitcode is None:
        process.kill()
        process.join()


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


def _child_main(jobs: Connection, conn: Connection) -> None:
    """The child process: wait for its one file, limit memory, parse, send one ``(kind,
    value)`` answer."""
    try:
        parser, data, filename, memory_bytes = jobs.recv()
    except (EOFError, OSError):
        return  # a spare nobody needed: the parent went away
    finally:
        jobs.close()
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
