"""The lifecycle every fake server shares: an aiohttp app on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from aiohttp import web


class LocalServer:
    """Serves :meth:`_build_app` on 127.0.0.1. The port is chosen at the first start and kept,
    so after :meth:`stop` clients fail to connect and a later :meth:`start` comes back on the
    same address. Use it with ``async with``."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        #: set by stop(): waits in handlers end early
        self._stopping = asyncio.Event()

    def _build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port or 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def _before_stop(self) -> None:
        """Close what the app keeps open (websockets, background tasks) before it stops."""

    async def stop(self) -> None:
        """Stop listening (the port stays known, so clients now fail to connect)."""
        self._stopping.set()
        await self._before_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _sleep(self, seconds: float) -> None:
        """A real-time wait that ends early when the server stops."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
