"""The avatar command channel (``CommandChannel``) as the application runs it: a
``BroadcastCommandRelay`` over the in-process broadcaster (one instance) and over PostgreSQL
LISTEN/NOTIFY (two instances, ``a`` and ``b``). A page attached on any instance receives the
session's commands once; with none attached the sender learns it quickly (409-style
``NoAvatarViewError``)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from avatarstack.adapters.broadcast import LocalBroadcaster
from avatarstack.adapters.broadcast.commands import BroadcastCommandRelay
from avatarstack.adapters.postgres.broadcast import PostgresBroadcaster, PostgresBroadcastOptions
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.errors import NoAvatarViewError

SESSION = "3f0c9a4e-0000-4000-8000-000000000001"
ACK = 1.0


@dataclass
class Page:
    """A socket's delivery function that records what it received."""

    received: list[dict[str, Any]] = field(default_factory=list)
    open: bool = True

    def __call__(self, command: dict[str, Any]) -> bool:
        if not self.open:
            return False
        self.received.append(command)
        return True


@dataclass
class Relays:
    name: str
    a: BroadcastCommandRelay
    #: another instance's relay (the same one in-process: there is one instance)
    b: BroadcastCommandRelay


@pytest.fixture(params=["local", pytest.param("postgres", marks=pytest.mark.postgres)])
async def relays(request: pytest.FixtureRequest) -> AsyncIterator[Relays]:
    broadcasters: list[Broadcaster] = []
    if request.param == "local":
        broadcasters.append(LocalBroadcaster())
    else:
        url: str = request.getfixturevalue("postgres_url")
        options = PostgresBroadcastOptions(channel=f"avs_test_{secrets.token_hex(4)}")
        broadcasters += [PostgresBroadcaster(url, options), PostgresBroadcaster(url, options)]
    for broadcaster in broadcasters:
        await broadcaster.start()
    remote = request.param == "postgres"
    made = [BroadcastCommandRelay(b, ack_timeout=ACK, remote=remote) for b in broadcasters]
    try:
        yield Relays(request.param, made[0], made[-1])
    finally:
        for relay in made:
            await relay.close()
        for broadcaster in broadcasters:
            await broadcaster.close()


def speak(text: str) -> dict[str, Any]:
    return {"event_id": secrets.token_hex(8), "event_type": "avatar.speak_text", "text": text}


async def settle() -> None:
    """Give a new attachment's subscription time to be listening on every instance."""
    await asyncio.sleep(0.2)


async def test_a_command_reaches_the_page_attached_on_this_instance_once(relays: Relays) -> None:
    page = Page()
    relays.a.attach(SESSION, page)
    await relays.a.send(SESSION, speak("Hello."))
    assert [c["text"] for c in page.received] == ["Hello."]


async def test_a_command_reaches_the_page_attached_on_another_instance_before_send_returns(
    relays: Relays,
) -> None:
    page = Page()
    relays.b.attach(SESSION, page)
    await settle()
    await relays.a.send(SESSION, speak("Across."))
    assert [c["text"] for c in page.received] == ["Across."]


async def test_the_most_recent_attachment_carries_the_commands(relays: Relays) -> None:
    first, second = Page(), Page()
    relays.a.attach(SESSION, first)
    relays.a.attach(SESSION, second)
    await relays.a.send(SESSION, speak("One."))
    assert (len(first.received), len(second.received)) == (0, 1)
    relays.a.detach(SESSION, second)
    await relays.a.send(SESSION, speak("Two."))
    assert [c["text"] for c in first.received] == ["Two."]


async def test_a_page_that_cannot_take_a_command_passes_it_to_the_next(relays: Relays) -> None:
    older, closing = Page(), Page(open=False)
    relays.a.attach(SESSION, older)
    relays.a.attach(SESSION, closing)
    await relays.a.send(SESSION, speak("Still said."))
    assert [c["text"] for c in older.received] == ["Still said."]


async def test_with_no_page_attached_the_sender_is_told_within_the_ack_timeout(
    relays: Relays,
) -> None:
    started = time.monotonic()
    with pytest.raises(NoAvatarViewError) as refused:
        await relays.a.send(SESSION, speak("Nobody hears this."))
    assert time.monotonic() - started < ACK + 1.0
    assert "no browser of the session's owner is connected" in refused.value.detail


async def test_a_detached_page_receives_nothing_more(relays: Relays) -> None:
    page = Page()
    relays.b.attach(SESSION, page)
    await settle()
    relays.b.detach(SESSION, page)
    with pytest.raises(NoAvatarViewError):
        await relays.a.send(SESSION, speak("Gone."))
    assert page.received == []


async def test_commands_of_other_sessions_do_not_reach_the_page(relays: Relays) -> None:
    page = Page()
    relays.b.attach(SESSION, page)
    await settle()
    with pytest.raises(NoAvatarViewError):
        await relays.a.send("another-session", speak("Not for you."))
    assert page.received == []
