"""avatarstack: interactive AI avatars that know things.

Plugin authors import the hook marker from here::

    from avatarstack import hookimpl

Importing this package has no side effects: no app, client, engine or plugin is created.
"""

from importlib.metadata import PackageNotFoundError, version

from avatarstack.plugins.markers import hookimpl, hookspec

try:
    __version__ = version("avatarstack")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl", "hookspec"]
