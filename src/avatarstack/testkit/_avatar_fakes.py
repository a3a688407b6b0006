"""What the avatar vendors' fakes (:mod:`~avatarstack.testkit.liveavatar`,
:mod:`~avatarstack.testkit.heygen`) share where the concept is the same: the session life cycle,
Bearer credentials and the countdown of an injected fault. Their records (avatars, voices,
sessions, faults) keep each vendor's own field names, since tests and clients read them as the
vendor's JSON names them."""

from __future__ import annotations

from typing import Literal, Protocol

from aiohttp import web

__all__ = ["SessionStatus", "bearer_token", "spend"]

#: a streaming session's life: minted (``created``), started (``active``), ended (``closed``)
SessionStatus = Literal["created", "active", "closed"]


class _Countdown(Protocol):
    #: how many more requests a fault affects (None: until cleared)
    times: int | None


def spend(fault: _Countdown) -> bool:
    """Count one request against ``fault``; True when it is now used up (remove it)."""
    if fault.times is None:
        return False
    fault.times -= 1
    return fault.times <= 0


def bearer_token(request: web.Request) -> str | None:
    """The value of ``Authorization: Bearer <value>`` (None: no Bearer credential)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None
