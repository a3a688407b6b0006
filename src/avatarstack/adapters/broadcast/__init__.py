"""Broadcasting notices to subscriptions: :class:`LocalBroadcaster` for a single instance.

The in-process fan-out every broadcaster shares is :mod:`avatarstack.adapters.fanout` (outside
this package, so that technology packages build on it without depending on this one). The
cross-instance broadcaster lives with its technology:
:class:`avatarstack.adapters.postgres.broadcast.PostgresBroadcaster`.
"""

from avatarstack.adapters.broadcast.local import LocalBroadcaster
from avatarstack.adapters.fanout import HubSubscription, SubscriptionHub

__all__ = ["HubSubscription", "LocalBroadcaster", "SubscriptionHub"]
