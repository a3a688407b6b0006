"""pluggy markers for the ``avatarstack`` project (import them from :mod:`avatarstack`)."""

import pluggy

PROJECT = "avatarstack"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
