"""The small findings of issue 13 (9): a missing field leaves a profile unchanged, a user
cannot be left without roles, the SQLite file is private to its owner."""

from __future__ import annotations

import stat
from pathlib import Path

from identity_helpers import Api, assert_problem

from avatarstack.adapters.sqlite import SqliteStorage


async def test_a_patch_without_display_name_leaves_it_unchanged(api: Api) -> None:
    pair = await api.verified_user("named@small.test")
    token = pair["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    me = "/api/v1/users/me"
    named = await api.client.patch(me, json={"display_name": "Ada"}, headers=headers)
    assert named.status == 200
    unchanged = await api.client.patch("/api/v1/users/me", json={}, headers=headers)
    assert unchanged.status == 200
    assert (await unchanged.json())["display_name"] == "Ada"
    api.clock.advance(seconds=5)  # past the principal cache
    assert (await (await api.me(token)).json())["display_name"] == "Ada"
    cleared = await api.client.patch(
        "/api/v1/users/me", json={"display_name": None}, headers=headers
    )
    assert (await cleared.json())["display_name"] is None


async def test_an_empty_role_list_is_refused(api: Api) -> None:
    admin = await api.admin()
    user = await api.verified_user("roles@small.test")
    response = await api.client.put(
        f"/api/v1/admin/users/{user['user']['id']}/roles",
        json={"roles": []},
        headers={"Authorization": f"Bearer {admin['access_token']}"},
    )
    body = await assert_problem(response, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body.roles"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_sqlite_database_and_its_wal_files_are_private_to_their_owner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "avatarstack.db"
    storage = SqliteStorage(path)
    await storage.start()
    try:
        await storage.migrate()
        files = [path, path.with_name("avatarstack.db-wal"), path.with_name("avatarstack.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await storage.close()


async def test_an_existing_world_readable_sqlite_database_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    storage = SqliteStorage(path)
    await storage.start()
    await storage.close()
    assert mode(path) == 0o600
