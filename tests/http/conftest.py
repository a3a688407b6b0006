from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from identity_helpers import T0, Api, Mailbox, MakeApi, running_mail_server, start_api

from avatarstack.testkit.clock import ManualClock


@pytest.fixture
async def client(avatarstack_client: Any) -> Any:
    """The application on default embedded settings (SQLite in a temporary folder)."""
    return await avatarstack_client()


# ------------------------------------------------------------- identity (identity_helpers.Api)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def mail() -> AsyncIterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 recording what it receives."""
    async with running_mail_server() as server:
        yield server


@pytest.fixture
def make_api(avatarstack_client: Any, mail: tuple[Mailbox, int], clock: ManualClock) -> MakeApi:
    async def make(**settings: Any) -> Api:
        return await start_api(avatarstack_client, mail, clock, **settings)

    return make


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """The application on SQLite, with its mailbox and clock."""
    return await make_api()
