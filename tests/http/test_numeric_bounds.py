"""Numbers a client sends are bounded in their models: one past what SQLite holds (2^63) is a 422
problem, never an OverflowError turned 500; a JSON ``true`` is not the number 1."""

from __future__ import annotations

from typing import Any

import pytest
from ws_helpers import connect, token_of

from avatarstack.bootstrap.app import CONTAINER
from avatarstack.core.identity import RequestContext

PROBLEM = "application/problem+json"
TOO_BIG = str(2**63)


@pytest.fixture
async def admin(client: Any) -> dict[str, str]:
    token = await token_of(client, "root@bounds.test", "admin")
    return {"Authorization": f"Bearer {token}"}


async def assert_422(response: Any, field: str) -> None:
    assert response.status == 422, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert any(error["field"] == field for error in body["errors"]), body


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/api/v1/kb/documents?offset={TOO_BIG}", "query.offset"),
        (f"/api/v1/conversations?offset={TOO_BIG}", "query.offset"),
        (f"/api/v1/admin/users?offset={TOO_BIG}", "query.offset"),
        (f"/api/v1/admin/audit?before_id={TOO_BIG}", "query.before_id"),
    ],
)
async def test_a_number_past_what_the_database_holds_is_a_422_problem(
    client: Any, admin: dict[str, str], path: str, field: str
) -> None:
    await assert_422(await client.get(path, headers=admin), field)


async def test_the_largest_offset_the_database_holds_is_an_empty_page(
    client: Any, admin: dict[str, str]
) -> None:
    response = await client.get(f"/api/v1/admin/users?offset={2**63 - 1}", headers=admin)
    assert response.status == 200, await response.text()
    assert (await response.json())["users"] == []


async def test_an_events_after_seq_past_the_bound_is_a_422_problem(
    client: Any, admin: dict[str, str]
) -> None:
    token = admin["Authorization"].split(" ", 1)[1]
    tab = await connect(client, token)
    opened = await tab.open()
    await tab.ws.close()
    response = await client.get(
        f"/api/v1/conversations/{opened['conversation_id']}/events?after_seq={TOO_BIG}",
        headers=admin,
    )
    await assert_422(response, "query.after_seq")


async def test_a_search_k_that_is_a_boolean_is_a_422_problem(
    client: Any, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/kb/search", json={"query": "anything", "k": True}, headers=admin
    )
    await assert_422(response, "body.k")


@pytest.mark.parametrize("after_seq", [True, 2**63, "1"])
async def test_a_websocket_after_seq_that_is_not_a_bounded_number_is_an_error_frame(
    client: Any, after_seq: Any
) -> None:
    identity = client.server.app[CONTAINER].identity()
    await identity.admin.create_user(
        "tabs@bounds.test", "correct horse battery", frozenset({"member"}), RequestContext()
    )
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": "tabs@bounds.test", "password": "correct horse battery"},
    )
    tab = await connect(client, (await login.json())["access_token"])
    opened = await tab.open()
    await tab.send(
        "conversation.open",
        {"conversation_id": opened["conversation_id"], "after_seq": after_seq},
        id="again",
    )
    frame = await tab.next()
    assert frame["type"] == "error", frame
    assert [e["field"].rsplit(".", 1)[-1] for e in frame["data"]["errors"]] == ["after_seq"]
