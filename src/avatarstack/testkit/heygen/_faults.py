"""The fake HeyGen's fault injection: :meth:`fail` and :meth:`rewrite`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from avatarstack.testkit._avatar_fakes import spend
from avatarstack.testkit.heygen._records import (
    ROUTES,
    SUCCESS_CODE,
    FakeFault,
    error_response,
)
from avatarstack.testkit.heygen._state import _HeyGenState


def broken_answer(fault: FakeFault) -> web.Response:
    if fault.malformed_json:
        return web.Response(
            status=fault.status or 200,
            text='{"code": 100, "data": {"session_id": "trunc',
            content_type="application/json",
        )
    return web.json_response(
        {"code": SUCCESS_CODE, "data": None, "message": "success"}, status=fault.status or 200
    )


class _HeyGenFaults(_HeyGenState):
    """Per-route faults (queued, counted down) and ``data`` rewrites."""

    # ================================================================ switches

    def fail(
        self,
        route: str,
        *,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        delay: float = 0.0,
        malformed_json: bool = False,
        null_data: bool = False,
        times: int | None = 1,
    ) -> FakeFault:
        """Make the next ``times`` requests to ``route`` fail. A ``delay`` (real seconds) comes
        first. An error ``status`` (500 unless a ``code`` alone is given, which gets 400) answers
        ``{"code", "message"}`` without doing anything (with ``malformed_json``: an HTML page).
        ``malformed_json`` or ``null_data`` alone do the work, then answer 200 with a cut-off
        body or with ``"data": null`` — as when the server acted but its answer broke. A delay
        alone answers normally afterwards. Faults queue per route."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {sorted(ROUTES)}")
        if status is None and code is not None:
            status = 400
        if status is None and not (malformed_json or null_data or delay):
            status = 500
        fault = FakeFault(status, code, message, delay, malformed_json, null_data, times)
        self._faults.setdefault(route, []).append(fault)
        return fault

    def clear_faults(self, route: str | None = None) -> None:
        if route is None:
            self._faults.clear()
        else:
            self._faults.pop(route, None)

    def rewrite(self, route: str, change: Callable[[Any], Any] | None) -> None:
        """Pass ``route``'s ``data`` through ``change`` before sending it (None: stop), e.g.
        ``rewrite("avatar.list", lambda data: {"avatars": data})``."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {sorted(ROUTES)}")
        if change is None:
            self._rewrites.pop(route, None)
        else:
            self._rewrites[route] = change

    def _take_fault(self, route: str) -> FakeFault | None:
        queue = self._faults.get(route)
        if not queue:
            return None
        fault = queue[0]
        if spend(fault):
            queue.pop(0)
        return fault

    async def _refused(self, fault: FakeFault) -> web.StreamResponse | None:
        """The answer of a fault that stops the request before any work (None: go on)."""
        await self._sleep(fault.delay)
        if fault.status is None or fault.status < 300:
            return None
        if fault.malformed_json:  # e.g. a proxy's HTML error page
            return web.Response(
                status=fault.status, text="<html>Bad Gateway</html>", content_type="text/html"
            )
        code = fault.code if fault.code is not None else fault.status
        message = fault.message or ("Internal Server Error" if fault.status >= 500 else "Error")
        return error_response(fault.status, code, message)
