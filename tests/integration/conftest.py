"""Fixtures for integration tests against fake external servers on 127.0.0.1.

* ``fake_google`` — a running :class:`~avatarstack.testkit.oauth.FakeGoogle`.
* ``fake_github`` — a running :class:`~avatarstack.testkit.oauth.FakeGitHub`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from avatarstack.testkit.oauth import FakeGitHub, FakeGoogle


@pytest.fixture
async def fake_google() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle() as server:
        yield server


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        yield server
