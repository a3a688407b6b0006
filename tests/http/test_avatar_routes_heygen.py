"""The avatar routes on the legacy HeyGen Interactive Avatar provider, against the fake HeyGen
server on 127.0.0.1. Everything HeyGen does is REST, so speech needs no browser view.

The application keeps its system clock; the fake has its own ManualClock, so a test closes a
session for idleness by advancing the fake's clock alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from identity_helpers import login_as
from structlog.testing import capture_logs

from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.heygen import FakeHeyGen

API = "/api/v1/avatar"
PROBLEM = "application/problem+json"
API_KEY_SETTING = "AVATARSTACK_AVATAR__HEYGEN__API_KEY"
WRONG_KEY = "heygen-wrong-key-8e2c5a1f9d"


async def login(client: Any, email: str) -> dict[str, str]:
    return await login_as(client, email)


@pytest.fixture
async def heygen() -> AsyncIterator[FakeHeyGen]:
    async with FakeHeyGen(clock=ManualClock()) as fake:
        yield fake


async def heygen_client(avatarstack_client: Any, heygen: FakeHeyGen, api_key: str) -> Any:
    return await avatarstack_client(
        providers_={
            "password_hasher": Argon2PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1)
        },
        avatar={"provider": "heygen", "heygen": {"api_key": api_key, "base_url": heygen.base_url}},
    )


@pytest.fixture
async def client(avatarstack_client: Any, heygen: FakeHeyGen) -> Any:
    return await heygen_client(avatarstack_client, heygen, heygen.api_key)


async def start(client: Any, heygen: FakeHeyGen, auth: dict[str, str]) -> str:
    response = await client.post(
        f"{API}/sessions", json={"avatar_id": heygen.avatar_ids[0]}, headers=auth
    )
    assert response.status == 201, await response.text()
    session_id: str = (await response.json())["session_id"]
    return session_id


async def test_a_member_runs_a_heygen_session_over_rest_from_start_to_stop(
    client: Any, heygen: FakeHeyGen
) -> None:
    auth = await login(client, "ada@example.com")
    avatars = await (await client.get(f"{API}/avatars", headers=auth)).json()
    assert avatars["provider"] == "heygen"
    assert {a["id"] for a in avatars["avatars"]} == set(heygen.avatar_ids)

    started = await client.post(
        f"{API}/sessions", json={"avatar_id": heygen.avatar_ids[0]}, headers=auth
    )
    assert started.status == 201, await started.text()
    body = await started.text()
    session = await started.json()
    (vendor,) = heygen.sessions.values()
    assert session["provider"] == "heygen"
    assert session["status"] == "active"
    assert session["expires_at"] is not None
    assert session["livekit"] == {
        "url": "wss://fake-livekit.invalid",
        "access_token": vendor.access_token,
    }
    assert heygen.api_key not in body
    assert all(token not in body for token in heygen.issued_tokens)  # nor HeyGen's session token
    sid = session["session_id"]

    spoken = await client.post(
        f"{API}/sessions/{sid}/speak",
        json={"text": "Hello, I am your guide.", "mode": "repeat"},
        headers=auth,
    )
    assert spoken.status == 202, await spoken.text()
    (task,) = vendor.tasks
    assert (task.text, task.task_type) == ("Hello, I am your guide.", "repeat")
    assert (await spoken.json())["task_id"] == task.task_id

    interrupted = await client.post(f"{API}/sessions/{sid}/interrupt", headers=auth)
    assert interrupted.status == 204
    assert vendor.interrupts == 1

    assert (await client.delete(f"{API}/sessions/{sid}", headers=auth)).status == 204
    assert heygen.stop_calls == [vendor.session_id]
    assert vendor.close_reason == "stopped"
    listed = await (await client.get(f"{API}/sessions", headers=auth)).json()
    assert [(s["session_id"], s["status"]) for s in listed["sessions"]] == [(sid, "stopped")]


async def test_speaking_after_heygen_closed_the_idle_session_is_a_409_problem(
    client: Any, heygen: FakeHeyGen
) -> None:
    auth = await login(client, "ada@example.com")
    sid = await start(client, heygen, auth)

    (closed,) = await heygen.advance(121)  # HeyGen's default idle timeout is 120 s
    assert closed.close_reason == "idle_timeout"

    response = await client.post(
        f"{API}/sessions/{sid}/speak", json={"text": "Are you still there?"}, headers=auth
    )
    assert response.status == 409
    assert response.content_type == PROBLEM
    problem = await response.json()
    assert problem["type"].endswith(":conflict")
    assert "start a new session" in problem["detail"]
    assert closed.tasks == []


@pytest.mark.parametrize("route", ["new", "start"])
async def test_a_heygen_500_at_start_is_a_503_problem_and_the_failed_row_is_listed(
    client: Any, heygen: FakeHeyGen, route: str
) -> None:
    auth = await login(client, "ada@example.com")
    heygen.fail(route, status=500)

    response = await client.post(
        f"{API}/sessions", json={"avatar_id": heygen.avatar_ids[0]}, headers=auth
    )

    assert response.status == 503
    assert response.content_type == PROBLEM
    assert response.headers["Retry-After"]
    assert "HeyGen is unavailable" in (await response.json())["detail"]
    listed = await (await client.get(f"{API}/sessions", headers=auth)).json()
    (failed,) = listed["sessions"]
    assert failed["status"] == "failed"
    assert failed["ended_at"] is not None
    assert heygen.open_sessions() == []
    if route == "start":  # HeyGen had created the session: it was stopped
        assert heygen.stop_calls == list(heygen.sessions)
    # the failed row does not count against the per-user limit
    assert (
        await client.post(f"{API}/sessions", json={"avatar_id": heygen.avatar_ids[0]}, headers=auth)
    ).status == 201


async def test_a_bad_api_key_is_a_502_problem_that_never_shows_the_key(
    avatarstack_client: Any, heygen: FakeHeyGen
) -> None:
    client = await heygen_client(avatarstack_client, heygen, WRONG_KEY)
    auth = await login(client, "ada@example.com")

    with capture_logs() as logs:
        started = await client.post(f"{API}/sessions", json={}, headers=auth)
        avatars = await client.get(f"{API}/avatars", headers=auth)

    for response in (started, avatars):
        assert response.status == 502
        assert response.content_type == PROBLEM
        body = await response.text()
        assert WRONG_KEY not in body
        assert heygen.api_key not in body
    # the operator reads which setting to fix in the server log
    failures = [entry for entry in logs if entry["event"] == "request_failed"]
    assert len(failures) == 2
    assert all(API_KEY_SETTING in entry["detail"] for entry in failures)
    assert all(WRONG_KEY not in str(entry) for entry in logs)
    assert heygen.sessions == {}


async def test_the_502_for_a_bad_api_key_names_the_setting_to_fix(
    avatarstack_client: Any, heygen: FakeHeyGen
) -> None:
    client = await heygen_client(avatarstack_client, heygen, WRONG_KEY)
    auth = await login(client, "ada@example.com")

    response = await client.post(f"{API}/sessions", json={}, headers=auth)

    assert response.status == 502
    problem = await response.json()
    assert API_KEY_SETTING in problem["detail"]
    assert WRONG_KEY not in problem["detail"]


async def test_heygen_voices_and_languages_are_listed_and_the_chosen_ones_reach_streaming_new(
    client: Any, heygen: FakeHeyGen
) -> None:
    auth = await login(client, "ada@example.com")
    listed = await client.get(f"{API}/voices", headers=auth)
    assert listed.status == 200
    voices = await listed.json()
    assert voices["provider"] == "heygen"
    streaming = [v.voice_id for v in heygen.voices if v.support_realtime]
    assert [v["id"] for v in voices["voices"]] == streaming
    assert {"en", "de"} <= set(voices["languages"])

    response = await client.post(
        f"{API}/sessions",
        json={"avatar_id": heygen.avatar_ids[0], "voice_id": streaming[-1], "language": "de"},
        headers=auth,
    )
    assert response.status == 201, await response.text()

    (new,) = [r.body for r in heygen.requests if r.route == "new"]
    assert (new["voice"], new["language"]) == ({"voice_id": streaming[-1]}, "de")
