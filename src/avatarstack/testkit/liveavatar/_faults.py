"""The fake LiveAvatar's fault injection: injected errors, delays, broken bodies, rate limits."""

from __future__ import annotations

import math

from aiohttp import web

from avatarstack.testkit._avatar_fakes import bearer_token, spend
from avatarstack.testkit.liveavatar._records import (
    ROUTES,
    Fault,
)
from avatarstack.testkit.liveavatar._state import _SessionState


class _FaultInjection(_SessionState):
    """:meth:`inject` per route name, and the per-credential rate limit."""

    def inject(
        self,
        route: str,
        *,
        status: int | None = None,
        delay: float = 0.0,
        malformed_json: bool = False,
        data_null: bool = False,
        retry_after: float | None = None,
        times: int | None = None,
    ) -> Fault:
        """Make ``route`` (a name in ``ROUTES``) misbehave; see :class:`Fault`."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {', '.join(ROUTES)}")
        fault = Fault(status, delay, malformed_json, data_null, retry_after, times)
        self._faults[route] = fault
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, route: str) -> Fault | None:
        fault = self._faults.get(route)
        if fault is None:
            return None
        if spend(fault):
            del self._faults[route]
        return fault

    def _injected(self, fault: Fault) -> web.Response:
        status = fault.status or 500
        headers = {}
        if status == 429:
            headers["Retry-After"] = f"{fault.retry_after or 1:g}"
            message = "Too many requests"
        elif status >= 500:
            message = "Internal server error"
        else:
            message = "Injected failure"
        return web.json_response(
            {"code": status * 10, "data": None, "message": message},
            status=status,
            headers=headers,
        )

    def _rate_limit(self, request: web.Request, route: str) -> web.Response | None:
        limit = self.rate_limit_per_second
        if limit is None:
            return None
        credential = (
            request.headers.get("X-API-KEY")
            or bearer_token(request)
            or (request.remote or "unknown")
        )
        now = self.now().timestamp()
        window = int(now)
        self._windows[(credential, route, window)] += 1
        if self._windows[(credential, route, window)] <= limit:
            return None
        reset = max(1, math.ceil(window + 1 - now))
        return web.json_response(
            {"code": 4290, "data": None, "message": "Rate limit exceeded"},
            status=429,
            headers={
                "Retry-After": str(reset),
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )
