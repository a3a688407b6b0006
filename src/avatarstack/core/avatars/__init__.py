"""Avatar sessions: who runs which paid vendor session, within which limits, for how long.

The registry lives in storage (``avatar_sessions``), so limits hold across instances and a
restarted instance finds what it left running.

* ``service``: :class:`AvatarService`, the session use cases (start within the limits, speak,
  interrupt, stop, follow a session's events);
* ``maintenance``: :class:`AvatarMaintenance`, the periodic pass (keep-alive, idle stop,
  renewal before the vendor's duration cap) and the reconciliation with the vendor after a
  crash;
* ``registry``: :class:`SessionRegistry`, the rows and their compare-and-set changes, which
  both of the above make;
* ``vendor``: :class:`InstrumentedProvider`, the vendor with every call timed and counted
  (:class:`AvatarStats`, for metrics).
"""

from avatarstack.core.avatars.maintenance import (
    RENEWAL_CLAIM,
    STARTING_GRACE,
    AvatarMaintenance,
    Renewal,
)
from avatarstack.core.avatars.registry import (
    ACTIVE,
    FAILED,
    LIVE,
    STARTING,
    STOPPED,
    SessionRegistry,
)
from avatarstack.core.avatars.service import (
    STARTS_LOCK,
    AvatarPolicy,
    AvatarService,
    StartedSession,
)
from avatarstack.core.avatars.vendor import (
    CALL_BUCKETS,
    AvatarStats,
    CallStats,
    InstrumentedProvider,
)

__all__ = [
    "ACTIVE",
    "CALL_BUCKETS",
    "FAILED",
    "LIVE",
    "RENEWAL_CLAIM",
    "STARTING",
    "STARTING_GRACE",
    "STARTS_LOCK",
    "STOPPED",
    "AvatarMaintenance",
    "AvatarPolicy",
    "AvatarService",
    "AvatarStats",
    "CallStats",
    "InstrumentedProvider",
    "Renewal",
    "SessionRegistry",
    "StartedSession",
]
