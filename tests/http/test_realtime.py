"""The realtime protocol v1: a cited answer from the knowledge base spoken by the text avatar,
exact resume after a dropped socket, idempotent messages, and bad input / faults."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kb_helpers import KB, MANUAL_V1, build, fast_hasher, ingest, login
from ws_helpers import WS, Tab, connect

from avatarstack.bootstrap.app import CONTAINER

QUESTION = "how often does the machine need descaling"


@pytest.fixture
async def client(avatarstack_client: Any) -> Any:
    return await avatarstack_client(
        providers_={"password_hasher": fast_hasher()},
        realtime={"recheck_seconds": 0.2, "connections_per_user": 3, "auth_timeout_seconds": 1},
    )


async def knowledge(client: Any) -> str:
    editor = await login(client, "ed@example.com", "editor")
    doc = (await ingest(client, editor, MANUAL_V1))["document_id"]
    await build(client, editor)
    return str(doc)


async def member(client: Any, email: str = "mo@example.com") -> tuple[str, dict[str, str]]:
    headers = await login(client, email, "member")
    return headers["Authorization"].split(" ", 1)[1], headers


async def test_a_question_gets_a_cited_answer_spoken_by_the_avatar(client: Any) -> None:
    doc = await knowledge(client)
    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.open()
    await tab.send("avatar.start", {}, id="a1")
    session = await tab.until("avatar.session")
    assert session["data"]["status"] == "active"

    await tab.send("user.message", {"client_id": "m-1", "text": QUESTION}, id="u1")
    created = await tab.until("message.created")
    assert created["data"]["text"] == QUESTION
    completed = await tab.until("answer.completed")
    assert "three months" in completed["data"]["text"]
    [citation] = completed["data"]["citations"][:1]
    assert citation["document_id"] == doc
    assert citation["version"] == 1
    assert citation["page"] == 1
    assert citation["chunk_id"].startswith(f"{doc}:1:")
    deltas = [f for f in tab.frames if f["type"] == "answer.delta"]
    assert "".join(d["data"]["text"] for d in deltas).strip() == completed["data"]["text"]
    speaking = next((f for f in tab.frames if f["type"] == "avatar.speaking"), None)
    if speaking is None:  # the avatar speaks each finished sentence, usually before completion
        speaking = await tab.until("avatar.speaking")
    assert speaking["data"]["session_id"] == session["data"]["session_id"]
    # captions: the sentence being said is part of the answer
    assert speaking["data"]["text"]
    assert speaking["data"]["text"] in completed["data"]["text"]
    seqs = tab.seqs()
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs))


async def test_nothing_relevant_is_said_plainly(client: Any) -> None:
    await knowledge(client)
    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.open()
    await tab.send("user.message", {"client_id": "m-1", "text": "quantum chromodynamics lattice"})
    completed = await tab.until("answer.completed")
    assert completed["data"]["citations"] == []
    assert "could not find" in completed["data"]["text"]


async def test_a_dropped_socket_resumes_without_gap_or_duplicate(client: Any) -> None:
    await knowledge(client)
    token, headers = await member(client)
    first = await connect(client, token)
    opened = await first.open()
    conversation = opened["conversation_id"]
    await first.send("user.message", {"client_id": "m-1", "text": QUESTION})
    await first.until("message.created")
    last_seen = first.seqs()[-1]
    await first.ws.close()  # the network drops right after the first event

    # meanwhile the answer completes and a second question is asked from another tab
    other = await connect(client, token)
    await other.open(conversation)
    await other.until("answer.completed")
    await other.send("user.message", {"client_id": "m-2", "text": "who handles warranty claims"})
    await other.until("answer.completed", within=10)
    head = other.seqs()[-1]

    resumed = await connect(client, token)
    await resumed.open(conversation, after_seq=last_seen)
    while not resumed.seqs() or resumed.seqs()[-1] < head:
        await resumed.next()
    assert resumed.seqs() == list(range(last_seen + 1, head + 1))
    history = await client.get(
        f"/api/v1/conversations/{conversation}/events?after_seq=0", headers=headers
    )
    stored = [e["seq"] for e in (await history.json())["events"]]
    assert stored == list(range(1, head + 1))
    assert first.seqs() + resumed.seqs() == stored[: len(first.seqs())] + resumed.seqs()


async def test_a_retried_message_is_not_posted_twice(client: Any) -> None:
    await knowledge(client)
    token, headers = await member(client)
    tab = await connect(client, token)
    opened = await tab.open()
    for _ in range(3):
        await tab.send("user.message", {"client_id": "same", "text": QUESTION})
    await tab.until("answer.completed")
    await asyncio.sleep(0.3)
    events = (
        await (
            await client.get(
                f"/api/v1/conversations/{opened['conversation_id']}/events", headers=headers
            )
        ).json()
    )["events"]
    assert [e["type"] for e in events].count("message.created") == 1
    assert [e["type"] for e in events].count("answer.completed") == 1


async def test_interrupt_stops_the_answer_and_the_avatar(client: Any) -> None:
    await knowledge(client)
    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.open()
    await tab.send("avatar.start", {})
    await tab.until("avatar.session")
    await tab.send("avatar.interrupt", {}, id="i1")  # nothing running: harmless
    await tab.send("user.message", {"client_id": "m-1", "text": QUESTION})
    await tab.until("answer.completed")
    await tab.send("avatar.stop", {}, id="s1")
    stopped = await tab.until("avatar.session", status="stopped")
    assert stopped["data"]["status"] == "stopped"


# --------------------------------------------------------------------------- bad input


async def test_the_first_frame_must_authenticate(client: Any) -> None:
    ws = await client.ws_connect(WS)
    await ws.send_str(json.dumps({"type": "ping", "data": {}}))
    assert await Tab(ws).closed() == 4401

    ws = await client.ws_connect(WS)
    await ws.send_str(json.dumps({"type": "auth", "data": {"token": "not-a-jwt"}}))
    assert await Tab(ws).closed() == 4401

    ws = await client.ws_connect(WS)
    await ws.send_bytes(b"\x00\x01")
    assert await Tab(ws).closed() == 4401

    ws = await client.ws_connect(WS)  # says nothing
    assert await Tab(ws).closed() == 4408


async def test_garbage_unknown_and_binary_frames_get_error_events(client: Any) -> None:
    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.ws.send_str("{not json")
    assert (await tab.until("error"))["data"]["code"] == "bad-frame"
    await tab.ws.send_bytes(b"\x00")
    assert (await tab.until("error"))["data"]["code"] == "binary-frame"
    await tab.send("teleport", {}, id="t1")
    error = await tab.until("error")
    assert error["data"]["code"] == "unknown-type"
    assert error["data"]["reply_to"] == "t1"
    await tab.send("conversation_open", {}, id="t2")  # only the documented names dispatch
    error = await tab.until("error")
    assert (error["data"]["code"], error["data"]["reply_to"]) == ("unknown-type", "t2")
    await tab.send("user.message", {"client_id": "x", "text": "hi"}, id="u1")
    assert (await tab.until("error"))["data"]["reply_to"] == "u1"  # no conversation open
    await tab.send("user.message", {"text": ""}, id="u2")
    invalid = await tab.until("error")
    assert invalid["data"]["code"] == "invalid"
    await tab.send("ping", {}, id="p1")
    assert (await tab.until("pong"))["data"]["reply_to"] == "p1"


@pytest.mark.parametrize("after_seq", [-1, 99])
async def test_after_seq_out_of_range_is_an_error_event(client: Any, after_seq: int) -> None:
    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.open()
    await tab.send(
        "conversation.open",
        {"conversation_id": tab.conversation_id, "after_seq": after_seq},
        id="o2",
    )
    error = await tab.until("error")
    assert error["data"]["code"] == "validation-error"
    assert error["data"]["errors"][0]["field"] == "after_seq"


async def test_an_oversize_frame_closes_with_1009(avatarstack_client: Any) -> None:
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, realtime={"max_message_bytes": 2048}
    )
    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.ws.send_str("x" * 5000)
    assert await tab.closed() == 1009


async def test_a_flood_is_rate_limited_then_closed(avatarstack_client: Any) -> None:
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, realtime={"messages_per_second": 2}
    )
    token, _ = await member(client)
    tab = await connect(client, token)
    for n in range(40):
        await tab.send("ping", {}, id=f"p{n}")
    assert await tab.closed() == 4429
    codes = [f["data"].get("code") for f in tab.frames if f["type"] == "error"]
    assert "rate-limited" in codes


async def test_a_revoked_session_closes_the_socket_with_4403(client: Any) -> None:
    token, headers = await member(client)
    tab = await connect(client, token)
    assert (await client.post("/api/v1/auth/logout", json={}, headers=headers)).status == 204
    assert await tab.closed(timeout=5) == 4403


async def test_too_many_sockets_for_one_user_are_refused(client: Any) -> None:
    token, _ = await member(client)
    tabs = [await connect(client, token) for _ in range(3)]
    ws = await client.ws_connect(WS)
    await ws.send_str(json.dumps({"type": "auth", "data": {"token": token}}))
    assert await Tab(ws).closed() == 4429
    await tabs[0].ws.close()
    await asyncio.sleep(0.1)
    await connect(client, token)  # a slot is free again


async def test_job_progress_reaches_the_uploaders_socket(client: Any) -> None:
    editor_headers = await login(client, "ed@example.com", "editor")
    token = editor_headers["Authorization"].split(" ", 1)[1]
    tab = await connect(client, token)
    body = aiohttp.FormData()
    body.add_field("file", MANUAL_V1, filename="m.pdf", content_type="application/pdf")
    response = await client.post(f"{KB}/documents", data=body, headers=editor_headers)
    job_id = (await response.json())["job_id"]
    done = await tab.until("job.progress", job_id=job_id, status="succeeded")
    assert done["data"]["progress"] == 1.0
    assert "seq" not in done


async def test_a_plain_get_is_a_400_problem(client: Any) -> None:
    response = await client.get(WS)
    assert response.status == 400
    assert client.server.app[CONTAINER] is not None


async def test_a_renewed_avatar_hands_new_credentials_to_the_open_sockets(client: Any) -> None:
    from avatarstack.core.avatars import Renewal
    from avatarstack.ports.avatar import LiveKitCredentials

    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.open()
    await tab.send("avatar.start", {})
    session = await tab.until("avatar.session")
    renewal = Renewal(
        session_id=session["data"]["session_id"],
        old_provider_session_id="old",
        new_provider_session_id="new",
        livekit=LiveKitCredentials(url="wss://livekit.test", access_token="client-token"),
    )
    await client.server.app[CONTAINER].conversations().avatar.renewed(renewal)
    renewed = await tab.until("avatar.session", renewed=True)
    assert "livekit" not in renewed["data"]  # stored events never hold credentials
    credentials = next((f for f in tab.frames if f["type"] == "avatar.credentials"), None)
    if credentials is None:  # the two frames travel separately: either may come first
        credentials = await tab.until("avatar.credentials")
    assert credentials["data"]["livekit"]["access_token"] == "client-token"
    assert "seq" not in credentials


class _BrokenEngine:
    name = "broken"

    async def answer(self, request: Any) -> Any:
        from avatarstack.ports.errors import UnavailableError

        raise UnavailableError("the model is down")
        yield  # pragma: no cover - makes this an async generator

    async def close(self) -> None:
        return None


class _BrokenPlugin:
    @staticmethod
    def register_answer_engines(register: Any, settings: Any) -> None:
        register(_BrokenEngine())


async def test_an_answer_that_fails_for_good_says_so_instead_of_leaving_the_user_waiting(
    avatarstack_client: Any,
) -> None:
    from avatarstack.plugins.markers import hookimpl

    hookimpl(_BrokenPlugin.register_answer_engines)
    client = await avatarstack_client(
        plugins=[("broken", _BrokenPlugin)],
        providers_={"password_hasher": fast_hasher()},
        answer={"engine": "broken"},
    )
    await knowledge(client)
    token, _ = await member(client)
    tab = await connect(client, token)
    await tab.open()
    await tab.send("user.message", {"client_id": "m-1", "text": QUESTION})
    completed = await tab.until("answer.completed", within=20)
    assert completed["data"]["error"] == "service-unavailable"
    assert "cannot answer right now" in completed["data"]["text"]
