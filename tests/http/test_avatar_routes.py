"""The avatar routes of the public contract, on the offline text provider and on LiveAvatar
(against its fake server, with the default browser relay carrying data-channel commands)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from identity_helpers import fast_hasher
from identity_helpers import login_as as login
from ws_helpers import connect

from avatarstack.bootstrap.app import CONTAINER
from avatarstack.testkit.liveavatar import FakeLiveAvatar

API = "/api/v1/avatar"


@pytest.fixture
async def text_client(avatarstack_client: Any) -> Any:
    return await avatarstack_client(
        providers_={"password_hasher": fast_hasher()},
        avatar={"sessions_per_user": 1, "sessions_total": 2},
    )


async def test_a_member_runs_a_text_avatar_session_end_to_end(text_client: Any) -> None:
    auth = await login(text_client, "ada@example.com")
    avatars = await (await text_client.get(f"{API}/avatars", headers=auth)).json()
    assert avatars["provider"] == "text"
    assert avatars["avatars"]

    started = await text_client.post(f"{API}/sessions", json={}, headers=auth)
    assert started.status == 201, await started.text()
    session = await started.json()
    assert session["provider"] == "text"
    assert session["status"] == "active"
    assert session["livekit"] is None  # no video offline
    sid = session["session_id"]

    spoken = await text_client.post(
        f"{API}/sessions/{sid}/speak", json={"text": "Hello. How can I help?"}, headers=auth
    )
    assert spoken.status == 202
    assert (await spoken.json())["task_id"]
    assert (await text_client.post(f"{API}/sessions/{sid}/interrupt", headers=auth)).status == 204
    listed = await (await text_client.get(f"{API}/sessions", headers=auth)).json()
    assert [s["session_id"] for s in listed["sessions"]] == [sid]

    assert (await text_client.delete(f"{API}/sessions/{sid}", headers=auth)).status == 204
    after = await text_client.post(
        f"{API}/sessions/{sid}/speak", json={"text": "still there?"}, headers=auth
    )
    assert after.status == 409
    assert after.content_type == "application/problem+json"


async def test_limits_answer_429_problems(text_client: Any) -> None:
    ada = await login(text_client, "ada@example.com")
    bob = await login(text_client, "bob@example.com")
    cyd = await login(text_client, "cyd@example.com")
    assert (await text_client.post(f"{API}/sessions", json={}, headers=ada)).status == 201
    second = await text_client.post(f"{API}/sessions", json={}, headers=ada)
    assert second.status == 429
    assert second.headers["Retry-After"]
    assert (await text_client.post(f"{API}/sessions", json={}, headers=bob)).status == 201
    total = await text_client.post(f"{API}/sessions", json={}, headers=cyd)
    assert total.status == 429
    assert "in use" in (await total.json())["detail"]


async def test_another_users_session_does_not_exist_for_you(text_client: Any) -> None:
    ada = await login(text_client, "ada@example.com")
    bob = await login(text_client, "bob@example.com")
    sid = (await (await text_client.post(f"{API}/sessions", json={}, headers=ada)).json())[
        "session_id"
    ]
    for method, path in (
        ("POST", f"{API}/sessions/{sid}/speak"),
        ("POST", f"{API}/sessions/{sid}/interrupt"),
        ("DELETE", f"{API}/sessions/{sid}"),
    ):
        response = await text_client.request(method, path, json={"text": "hi"}, headers=bob)
        assert response.status == 404, (method, path)


async def test_bad_input_gets_4xx_problems(text_client: Any) -> None:
    auth = await login(text_client, "ada@example.com")
    unknown = await text_client.post(
        f"{API}/sessions", json={"avatar_id": "no-such-avatar"}, headers=auth
    )
    assert unknown.status == 404
    bad_quality = await text_client.post(f"{API}/sessions", json={"quality": "8k"}, headers=auth)
    assert bad_quality.status == 422
    sid = (await (await text_client.post(f"{API}/sessions", json={}, headers=auth)).json())[
        "session_id"
    ]
    for body in ({"text": ""}, {"text": "   "}, {"text": "hi", "mode": "sing"}):
        response = await text_client.post(f"{API}/sessions/{sid}/speak", json=body, headers=auth)
        assert response.status == 422, body
    # the core names the field; the route says it came from the body
    blank = await text_client.post(f"{API}/sessions/{sid}/speak", json={"text": "  "}, headers=auth)
    assert [e["field"] for e in (await blank.json())["errors"]] == ["body.text"]
    nul = await text_client.post(f"{API}/sessions/%00/speak", json={"text": "hi"}, headers=auth)
    assert nul.status == 404


async def test_very_long_text_is_split_into_sentences_within_the_provider_limit(
    text_client: Any,
) -> None:
    auth = await login(text_client, "ada@example.com")
    sid = (await (await text_client.post(f"{API}/sessions", json={}, headers=auth)).json())[
        "session_id"
    ]
    text = "This is one sentence of a long answer. " * 120  # ~4,700 characters
    spoken = await text_client.post(
        f"{API}/sessions/{sid}/speak", json={"text": text}, headers=auth
    )
    assert spoken.status == 202
    assert len((await spoken.json())["task_ids"]) > 1


async def test_anonymous_callers_are_refused(text_client: Any) -> None:
    assert (await text_client.get(f"{API}/avatars")).status == 401
    assert (await text_client.get(f"{API}/voices")).status == 401


async def test_the_text_avatar_offers_no_voice_and_no_language_to_choose(text_client: Any) -> None:
    auth = await login(text_client, "ada@example.com")

    listed = await text_client.get(f"{API}/voices", headers=auth)

    assert listed.status == 200
    assert await listed.json() == {"provider": "text", "voices": [], "languages": []}
    document = await (await text_client.get("/api/v1/openapi.json")).json()
    operation = document["paths"][f"{API}/voices"]["get"]
    assert operation["operationId"] == "avatar_voices"
    assert operation["security"]


@pytest.mark.parametrize(
    "language", ["english!", "e", "en_US", "en-", "12", "en-US-x-toolongsubtag", "a" * 40]
)
async def test_a_language_that_is_not_a_language_code_is_a_422(
    text_client: Any, language: str
) -> None:
    auth = await login(text_client, "ada@example.com")

    started = await text_client.post(f"{API}/sessions", json={"language": language}, headers=auth)

    assert started.status == 422
    problem = await started.json()
    assert [e["field"] for e in problem["errors"]] == ["body.language"]
    listed = await (await text_client.get(f"{API}/sessions", headers=auth)).json()
    assert listed["sessions"] == []


async def test_avatar_start_over_the_websocket_refuses_a_malformed_language(
    text_client: Any,
) -> None:
    auth = await login(text_client, "ada@example.com")
    tab = await connect(text_client, auth["Authorization"].split(" ", 1)[1])
    await tab.open()

    await tab.send("avatar.start", {"language": "en_US"}, id="bad")
    refused = await tab.until("error")
    await tab.send("avatar.start", {"language": "pt-BR"}, id="good")
    started = await tab.until("avatar.session")

    assert refused["data"]["reply_to"] == "bad"
    assert refused["data"]["code"] == "invalid"
    assert started["data"]["status"] == "active"
    await tab.ws.close()


# --------------------------------------------------------------------------- LiveAvatar


@pytest.fixture
async def fake_liveavatar() -> AsyncIterator[FakeLiveAvatar]:
    async with FakeLiveAvatar() as fake:
        yield fake


@pytest.fixture
async def live_client(avatarstack_client: Any, fake_liveavatar: FakeLiveAvatar) -> Any:
    return await avatarstack_client(
        providers_={"password_hasher": fast_hasher()},
        avatar={
            "provider": "liveavatar",
            "liveavatar": {
                "api_key": fake_liveavatar.api_key,
                "base_url": fake_liveavatar.base_url,
            },
        },
    )


@contextlib.asynccontextmanager
async def browser_relay(client: Any, provider_session_id: str, fake: FakeLiveAvatar) -> Any:
    """What the owner's page does: take the session's commands from our relay and publish them
    on the room's data channel (here: the fake's stand-in)."""
    relay = client.server.app[CONTAINER].avatar_commands()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def deliver(command: dict[str, Any]) -> bool:
        queue.put_nowait(command)
        return True

    relay.attach(provider_session_id, deliver)

    async def forward() -> None:
        while True:
            command = await queue.get()
            await fake.commands.send(provider_session_id, command)

    task = asyncio.create_task(forward())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        relay.detach(provider_session_id, deliver)


async def test_a_liveavatar_session_hands_the_browser_livekit_credentials_never_the_key(
    live_client: Any, fake_liveavatar: FakeLiveAvatar
) -> None:
    auth = await login(live_client, "ada@example.com")
    avatar_id = sorted(fake_liveavatar.active_avatar_ids)[0]
    started = await live_client.post(f"{API}/sessions", json={"avatar_id": avatar_id}, headers=auth)
    assert started.status == 201, await started.text()
    session = await started.json()
    assert session["livekit"]["url"]
    assert session["livekit"]["access_token"]
    assert fake_liveavatar.api_key not in await started.text()
    assert session["expires_at"] is not None
    sid = session["session_id"]

    # without the owner's browser in the room, speech cannot be delivered: a clear 409
    no_view = await live_client.post(
        f"{API}/sessions/{sid}/speak", json={"text": "Hello there."}, headers=auth
    )
    assert no_view.status == 409
    problem = await no_view.json()
    assert problem["type"].endswith("avatar-not-attached")
    assert "no browser of the session's owner is connected" in problem["detail"]

    storage = live_client.server.app[CONTAINER].storage()
    async with storage.unit_of_work() as uow:
        row = await uow.avatar_sessions.get(sid)
    assert row is not None
    assert row.provider_session_id is not None
    provider_id = row.provider_session_id
    async with browser_relay(live_client, provider_id, fake_liveavatar):
        spoken = await live_client.post(
            f"{API}/sessions/{sid}/speak",
            json={"text": "Hello there.", "mode": "repeat"},
            headers=auth,
        )
        assert spoken.status == 202
        interrupted = await live_client.post(f"{API}/sessions/{sid}/interrupt", headers=auth)
        assert interrupted.status == 204
        await asyncio.sleep(0.05)
    kinds = [c.event_type for c in fake_liveavatar.commands.received]
    assert kinds[:2] == ["avatar.speak_text", "avatar.interrupt"]

    assert (await live_client.delete(f"{API}/sessions/{sid}", headers=auth)).status == 204
    assert fake_liveavatar.saw_stop(provider_id)
    assert provider_id not in fake_liveavatar.active_session_ids


async def test_liveavatar_voices_and_languages_are_listed_and_the_chosen_ones_reach_the_token(
    live_client: Any, fake_liveavatar: FakeLiveAvatar
) -> None:
    auth = await login(live_client, "ada@example.com")
    listed = await live_client.get(f"{API}/voices", headers=auth)
    assert listed.status == 200
    voices = await listed.json()
    assert voices["provider"] == "liveavatar"
    assert {v["name"] for v in voices["voices"]} == {v.name for v in fake_liveavatar.voices}
    assert voices["languages"] == ["de", "en"]
    lena = next(v for v in voices["voices"] if v["name"] == "Lena")
    assert (lena["language"], lena["gender"]) == ("de", "female")

    started = await live_client.post(
        f"{API}/sessions",
        json={"voice_id": lena["id"], "language": "de"},
        headers=auth,
    )
    assert started.status == 201, await started.text()

    persona = fake_liveavatar.token_requests[-1]["avatar_persona"]
    assert (persona["voice_id"], persona["language"]) == (lena["id"], "de")


async def test_liveavatar_avatar_start_over_the_websocket_sends_the_chosen_voice_and_language(
    live_client: Any, fake_liveavatar: FakeLiveAvatar
) -> None:
    auth = await login(live_client, "ada@example.com")
    oliver = next(v for v in fake_liveavatar.voices if v.name == "Oliver")
    tab = await connect(live_client, auth["Authorization"].split(" ", 1)[1])
    await tab.open()

    await tab.send("avatar.start", {"voice_id": oliver.id, "language": "en-GB"}, id="s1")
    await tab.until("avatar.credentials")

    persona = fake_liveavatar.token_requests[-1]["avatar_persona"]
    assert (persona["voice_id"], persona["language"]) == (oliver.id, "en-GB")
    await tab.ws.close()


async def test_metrics_show_open_sessions_session_seconds_and_vendor_calls(
    text_client: Any,
) -> None:
    auth = await login(text_client, "ada@example.com")
    await text_client.post(f"{API}/sessions", json={"avatar_id": "nope"}, headers=auth)
    sid = (await (await text_client.post(f"{API}/sessions", json={}, headers=auth)).json())[
        "session_id"
    ]
    await text_client.post(f"{API}/sessions/{sid}/speak", json={"text": "Hi."}, headers=auth)
    metrics = await (await text_client.get("/metrics")).text()
    assert 'avatarstack_avatar_sessions_open{provider="text"} 1.0' in metrics
    assert (
        'avatarstack_avatar_provider_calls_total{call="start_session",outcome="not-found",'
        'provider="text"} 1.0' in metrics
    )
    assert (
        'avatarstack_avatar_provider_calls_total{call="speak",outcome="ok",provider="text"} 1.0'
        in metrics
    )
    assert "avatarstack_avatar_provider_call_duration_seconds_bucket" in metrics
    await text_client.delete(f"{API}/sessions/{sid}", headers=auth)
    metrics = await (await text_client.get("/metrics")).text()
    assert 'avatarstack_avatar_sessions_open{provider="text"} 0.0' in metrics
    assert 'avatarstack_avatar_session_seconds_total{provider="text"}' in metrics
