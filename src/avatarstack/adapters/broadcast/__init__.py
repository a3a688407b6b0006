"""Broadcasting notices to subscriptions: the in-process fan-out every broadcaster shares
(:mod:`.hub`) and :class:`LocalBroadcaster` for a single instance.

The cross-instance broadcaster lives with its technology:
:class:`avatarstack.adapters.postgres.broadcast.PostgresBroadcaster`. This package imports no
technology adapter, so technology packages may build on it (as they build on ``adapters.sql``).
"""

from avatarstack.adapters.broadcast.hub import HubSubscription, SubscriptionHub
from avatarstack.adapters.broadcast.local import LocalBroadcaster

__all__ = ["HubSubscription", "LocalBroadcaster", "SubscriptionHub"]
