"""The LiveKit room of the avatar tests, played between the page and the project's fake
LiveAvatar.

The page's LiveKit client is the recording test double (``livekit_double.mjs``, named through
``AVATARSTACK_CONSOLE__LIVEKIT_CLIENT_URL``). :class:`Agent` carries what the page publishes on
``agent-control`` to the fake LiveAvatar's data channel, and hands the ``agent-response`` events
the fake answers with back to the page as data packets — the event shapes are the fake's, which
follow LiveAvatar's documentation.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from harness import BackgroundLoop, Server
from playwright.sync_api import Page
from ui import SLOW, sign_in

from avatarstack.testkit.liveavatar import FakeLiveAvatar


class Agent:
    """The room between the page (its LiveKit double) and the fake LiveAvatar."""

    def __init__(self, aio: BackgroundLoop, fake: FakeLiveAvatar, page: Page) -> None:
        self.aio, self.fake, self.page = aio, fake, page
        self._relayed = 0
        self._lock = threading.Lock()
        self._responses: list[dict[str, Any]] = []
        fake.commands.listen(self._collect)

    def _collect(self, session_id: str, event: dict[str, Any]) -> None:
        with self._lock:
            self._responses.append(event)

    def close(self) -> None:
        self.fake.commands.unlisten(self._collect)

    # ------------------------------------------------------------------ what the page did

    def connects(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("() => window.__livekitDouble?.connects ?? []"))

    def published(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("() => window.__livekitDouble?.published ?? []"))

    def commands(self, event_type: str) -> list[dict[str, Any]]:
        return [
            p["json"]
            for p in self.published()
            if p["topic"] == "agent-control" and (p["json"] or {}).get("event_type") == event_type
        ]

    def wait_for(self, event_type: str, count: int = 1) -> list[dict[str, Any]]:
        self.page.wait_for_function(
            """([type, count]) => (window.__livekitDouble?.published ?? []).filter(
                (p) => p.json && p.json.event_type === type).length >= count""",
            arg=[event_type, count],
            timeout=SLOW,
        )
        return self.commands(event_type)

    # ------------------------------------------------------------------ the room

    def relay(self) -> None:
        """Carry the page's new commands to LiveAvatar and its answers back to the page."""
        published = self.published()
        for packet in published[self._relayed :]:
            if packet["topic"] == "agent-control" and packet["json"]:
                command = packet["json"]
                self.aio.run(self.fake.commands.send(command["session_id"], command))
        self._relayed = len(published)
        self.deliver()

    def deliver(self, *, twice: bool = False) -> list[dict[str, Any]]:
        """Hand LiveAvatar's pending ``agent-response`` events to the page (``twice``: each
        one two times, as two tabs in the room would forward it)."""
        with self._lock:
            events, self._responses = self._responses, []
        for event in events:
            for _ in range(2 if twice else 1):
                self.page.evaluate("(event) => window.__livekitDouble.receive(event)", event)
        return events

    def event(self, event_type: str, session_id: str, source_event_id: str | None) -> None:
        """One ``agent-response`` event LiveAvatar sends of its own accord."""
        event = {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "session_id": session_id,
            "source_event_id": source_event_id,
        }
        self.page.evaluate("(event) => window.__livekitDouble.receive(event)", event)

    def session_id(self, client_token: str) -> str:
        """The LiveAvatar session that issued this LiveKit client token."""

        async def find() -> str:
            (session,) = [
                s for s in self.fake.sessions.values() if s.livekit_client_token == client_token
            ]
            return session.id

        return self.aio.run(find())

    def advance(self, seconds: float) -> None:
        """LiveAvatar's clock moves on (speech in progress ends); then relay."""
        self.aio.run(self.fake.advance(seconds))
        self.deliver()


def start_avatar(page: Page, server: Server, agent: Agent) -> tuple[str, str]:
    """Sign a new member in, start the avatar and wait until the page joined the room: the
    member's e-mail address and the LiveAvatar session id."""
    email = server.member("lia")
    sign_in(page, email)
    page.get_by_role("button", name="Start avatar").click()
    page.wait_for_function("() => (window.__livekitDouble?.connects ?? []).length >= 1")
    (connect,) = agent.connects()
    return email, agent.session_id(connect["token"])


def conversation_events(server: Server, email: str) -> list[dict[str, Any]]:
    """The stored events of the user's one conversation, over the API."""
    token = server.login(email)
    (conversation,) = server.api("GET", "/conversations", token=token).body["conversations"]
    return server.events(token, conversation["conversation_id"])
