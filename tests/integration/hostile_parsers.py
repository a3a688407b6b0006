"""Misbehaving parsers for the isolated-parsing tests.

They live in their own module because the ``spawn`` child re-imports a parser's class by module
name; this directory is on ``sys.path`` under pytest and the child inherits ``sys.path``.
"""

from __future__ import annotations

import os
import signal

from avatarstack.ports.documents import ParsedDocument


class _Hostile:
    version = "0"
    media_types = ("application/x-hostile",)
    extensions = (".hostile",)

    def __init__(self, name: str) -> None:
        self.name = name


class LoopingParser(_Hostile):
    def __init__(self) -> None:
        super().__init__("looping")

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        while True:
            pass


class GreedyParser(_Hostile):
    """Asks for 2 GB at once."""

    def __init__(self) -> None:
        super().__init__("greedy")

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        hoard = bytearray(2 * 1024**3)
        raise AssertionError(f"allocated {len(hoard)} bytes despite the limit")


class CrashingParser(_Hostile):
    """Dies the way the kernel's OOM killer would kill it."""

    def __init__(self) -> None:
        super().__init__("crashing")

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


class BuggyParser(_Hostile):
    def __init__(self) -> None:
        super().__init__("buggy")

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        raise KeyError("/secret-looking internal detail")
