"""Several tabs refreshing with the same token at once: within a short grace window the same
refresh token returns the same successor, so no tab ends the session of the others; a reuse
after the window still revokes the whole session. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from identity_helpers import BACKENDS, Api, MakeApi, assert_problem, database_settings

GRACE_SECONDS = 10


@pytest.fixture(params=BACKENDS)
async def any_api(request: pytest.FixtureRequest, make_api: MakeApi) -> Api:
    return await make_api(**await database_settings(request, request.param))


async def test_tabs_refreshing_at_once_all_get_the_same_successor_and_keep_the_session(
    any_api: Api,
) -> None:
    api = any_api
    pair = await api.verified_user("tabs@refresh.test")

    answers = await asyncio.gather(
        *(api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]}) for _ in range(5))
    )
    assert [a.status for a in answers] == [200] * 5, [await a.text() for a in answers]
    bodies = [await a.json() for a in answers]
    assert len({b["refresh_token"] for b in bodies}) == 1
    for body in bodies:
        assert (await api.me(body["access_token"])).status == 200

    successor = bodies[0]["refresh_token"]
    onwards = await api.post("/auth/refresh", {"refresh_token": successor})
    assert onwards.status == 200, await onwards.text()
    assert (await api.me((await onwards.json())["access_token"])).status == 200


async def test_a_late_tab_within_the_grace_window_gets_the_same_successor(any_api: Api) -> None:
    api = any_api
    pair = await api.verified_user("late@refresh.test")
    first = await (await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})).json()
    api.clock.advance(seconds=GRACE_SECONDS - 1)
    late = await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert late.status == 200, await late.text()
    assert (await late.json())["refresh_token"] == first["refresh_token"]
    assert (await api.me(first["access_token"])).status == 200


async def test_a_reuse_after_the_grace_window_revokes_the_whole_session(any_api: Api) -> None:
    api = any_api
    pair = await api.verified_user("thief@refresh.test")
    first = await (await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})).json()
    api.clock.advance(seconds=GRACE_SECONDS + 1)

    stolen = await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})
    await assert_problem(stolen, 401, "unauthenticated")
    await assert_problem(await api.me(first["access_token"]), 401, "unauthenticated")
    refused = await api.post("/auth/refresh", {"refresh_token": first["refresh_token"]})
    await assert_problem(refused, 401, "unauthenticated")


async def test_the_grace_window_does_not_outlive_a_logout(any_api: Api) -> None:
    api = any_api
    pair = await api.verified_user("logout@refresh.test")
    first = await (await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})).json()
    assert (await api.post("/auth/logout", token=first["access_token"])).status == 204
    late = await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})
    await assert_problem(late, 401, "unauthenticated")
