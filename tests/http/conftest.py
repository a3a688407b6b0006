from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
async def client(avatarstack_client: Any) -> Any:
    """The application on default embedded settings (SQLite in a temporary folder)."""
    return await avatarstack_client()
