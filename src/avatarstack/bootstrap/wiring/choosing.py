"""Choosing one of the registered implementations by the name a setting gives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from avatarstack.plugins.manager import PluginError

T = TypeVar("T")


def pick(available: Mapping[str, T], name: str, variable: str, hint: str = "") -> T:
    """The registered plugin object ``name``, or a PluginError naming the setting and what is
    available."""
    found = available.get(name)
    if found is None:
        known = ", ".join(sorted(available)) or "none"
        raise PluginError(f"{variable}={name!r} is not available (available: {known}){hint}")
    return found
