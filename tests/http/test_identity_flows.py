"""The identity feature end to end over HTTP: registration, e-mail verification, login,
refresh-token rotation, sessions, password reset, rate limits and the audit trail.

Mail goes to a real SMTP server (aiosmtpd on 127.0.0.1) and the links are read from the
delivered messages; time is a ManualClock the container hands to the identity service and the
rate limiter. Outcomes are checked through the API only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from identity_helpers import (
    BACKENDS,
    NEW_PASSWORD,
    PASSWORD,
    PUBLIC_URL,
    SECRET_KEY,
    Api,
    Mailbox,
    MakeApi,
    assert_problem,
    claims_of,
    database_settings,
    smtp_settings,
)
from pydantic import ValidationError

from avatarstack.adapters.sqlite import SqliteStorage


@pytest.fixture(params=BACKENDS)
async def any_api(request: pytest.FixtureRequest, make_api: MakeApi) -> Api:
    """The application on SQLite and on PostgreSQL."""
    return await make_api(**await database_settings(request, request.param))


async def migrate_first(sqlite_path: Any) -> None:
    """Production refuses to start on pending migrations: migrate first, as operators do."""
    storage = SqliteStorage(sqlite_path)
    await storage.start()
    try:
        await storage.migrate()
    finally:
        await storage.close()


async def refresh(api: Api, refresh_token: str) -> Any:
    return await api.post("/auth/refresh", {"refresh_token": refresh_token})


# =========================================================================== the journey


async def test_a_user_registers_verifies_logs_in_rotates_tokens_and_resets_the_password(
    any_api: Api,
) -> None:
    api, email = any_api, "ada@example.test"

    registered = await api.register(email, display_name="Ada")
    assert registered.status == 202
    assert (await registered.json())["status"] == "verification_sent"

    followed = await api.client.get(api.mail.verification_link(email), allow_redirects=False)
    assert followed.status == 303
    assert followed.headers["Location"] == f"{PUBLIC_URL}/?verified=1"

    first = await api.login_ok(email)
    assert first["token_type"] == "Bearer"
    assert 0 < first["expires_in"] <= 900
    assert first["access_token"]
    assert first["refresh_token"]
    assert first["user"]["roles"] == ["member"]
    assert first["user"]["email"] == email
    assert first["user"]["email_verified"] is True

    me = await api.me(first["access_token"])
    assert me.status == 200
    profile = await me.json()
    assert (profile["id"], profile["display_name"]) == (first["user"]["id"], "Ada")

    patched = await api.client.patch(
        "/api/v1/users/me",
        json={"display_name": "Ada Lovelace"},
        headers={"Authorization": f"Bearer {first['access_token']}"},
    )
    assert patched.status == 200
    assert (await patched.json())["display_name"] == "Ada Lovelace"
    assert (await (await api.me(first["access_token"])).json())["display_name"] == "Ada Lovelace"

    # rotation: a new pair; the old refresh token is spent
    rotated = await refresh(api, first["refresh_token"])
    assert rotated.status == 200
    second = await rotated.json()
    assert second["token_type"] == "Bearer"
    assert second["user"]["display_name"] == "Ada Lovelace"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await api.me(second["access_token"])).status == 200

    # presenting the spent token again, after the grace window for tabs refreshing at once,
    # is theft: 401, and the whole family ends
    api.clock.advance(seconds=11)
    await assert_problem(await refresh(api, first["refresh_token"]), 401, "unauthenticated")
    await assert_problem(await refresh(api, second["refresh_token"]), 401, "unauthenticated")
    await assert_problem(await api.me(second["access_token"]), 401, "unauthenticated")
    await assert_problem(await api.me(first["access_token"]), 401, "unauthenticated")

    # a fresh login is listed as the current (and only active) session
    third = await api.login_ok(email)
    listed = await api.get("/users/me/sessions", token=third["access_token"])
    assert listed.status == 200
    sessions = (await listed.json())["sessions"]
    third_sid = claims_of(third["access_token"])["sid"]
    assert [(s["id"], s["current"]) for s in sessions] == [(third_sid, True)]

    logout = await api.post("/auth/logout", token=third["access_token"])
    assert logout.status == 204
    await assert_problem(await api.me(third["access_token"]), 401, "unauthenticated")
    await assert_problem(await refresh(api, third["refresh_token"]), 401, "unauthenticated")

    # password reset ends every session
    fourth = await api.login_ok(email)
    forgot = await api.post("/auth/password/forgot", {"email": email})
    assert forgot.status == 202
    reset = await api.post(
        "/auth/password/reset", {"token": api.mail.reset_token(email), "password": NEW_PASSWORD}
    )
    assert reset.status == 200
    assert (await reset.json())["status"] == "password_reset"
    await assert_problem(await api.me(fourth["access_token"]), 401, "unauthenticated")
    await assert_problem(await refresh(api, fourth["refresh_token"]), 401, "unauthenticated")

    await assert_problem(await api.login(email, PASSWORD), 401, "unauthenticated")
    fifth = await api.login_ok(email, NEW_PASSWORD)
    assert fifth["user"]["id"] == first["user"]["id"]
    notice = api.mail.last(email, "password was changed")
    assert "signed out" in notice.text
    assert not notice.links()  # a notice, not a link to follow


async def test_the_verification_token_works_once_by_post_and_then_neither_way(api: Api) -> None:
    email = "grace@example.test"
    await api.register(email)
    token = api.mail.verification_token(email)

    verified = await api.post("/auth/verify", {"token": token})
    assert verified.status == 200
    user = (await verified.json())["user"]
    assert (user["email"], user["email_verified"], user["roles"]) == (email, True, ["member"])

    await assert_problem(await api.post("/auth/verify", {"token": token}), 400, "invalid-token")
    link = await api.client.get(api.mail.verification_link(email), allow_redirects=False)
    assert link.status == 303
    assert link.headers["Location"] == f"{PUBLIC_URL}/?verify_error=invalid-token"
    assert (await api.login(email)).status == 200


# =========================================================================== enumeration


async def test_registering_a_taken_address_answers_like_a_new_one_and_tells_the_owner(
    api: Api,
) -> None:
    await api.verified_user("owner@example.test")
    sent_before = len(api.mail.messages)

    fresh = await api.register("newcomer@example.test")
    taken = await api.register("Owner@Example.test", "another password 123")

    assert fresh.status == taken.status == 202
    fresh_body, taken_body = await fresh.json(), await taken.json()
    # development adds the verification link to new registrations; the keys are the same
    assert set(fresh_body) == set(taken_body) == {"status", "verification_url"}
    assert fresh_body["status"] == taken_body["status"] == "verification_sent"
    assert taken_body["verification_url"] is None
    notice = api.mail.last("owner@example.test", "tried to register")
    assert "already exists" in notice.text
    assert not notice.links()
    assert len(api.mail.messages) == sent_before + 2  # the newcomer's link and the notice
    # the owner's password was not touched
    assert (await api.login("owner@example.test", "another password 123")).status == 401
    assert (await api.login("owner@example.test")).status == 200


async def test_forgot_and_resend_answer_alike_for_known_and_unknown_addresses(api: Api) -> None:
    await api.verified_user("known@example.test")
    await api.register("pending@example.test")

    answers = []
    for path, email in [
        ("/auth/password/forgot", "known@example.test"),
        ("/auth/password/forgot", "nobody@example.test"),
        ("/auth/password/forgot", "not an address"),
        ("/auth/verify/resend", "pending@example.test"),
        ("/auth/verify/resend", "known@example.test"),  # already verified
        ("/auth/verify/resend", "nobody@example.test"),
        ("/auth/verify/resend", "not an address"),
    ]:
        response = await api.post(path, {"email": email})
        answers.append((path, response.status, await response.text()))

    forgot = {(status, text) for path, status, text in answers if path.endswith("forgot")}
    resend = {(status, text) for path, status, text in answers if path.endswith("resend")}
    assert forgot == resend == {(202, '{"status":"accepted"}')}
    assert not api.mail.to("nobody@example.test")
    api.mail.last("known@example.test", "reset")
    assert len([m for m in api.mail.to("pending@example.test") if "Confirm" in m.subject]) == 2
    assert len([m for m in api.mail.to("known@example.test") if "Confirm" in m.subject]) == 1


async def test_an_unknown_address_and_a_wrong_password_fail_the_same_way(api: Api) -> None:
    await api.verified_user("known@example.test")

    unknown = await assert_problem(await api.login("nobody@example.test"), 401, "unauthenticated")
    wrong = await assert_problem(
        await api.login("known@example.test", "not the password"), 401, "unauthenticated"
    )
    invalid = await assert_problem(await api.login("not an address"), 401, "unauthenticated")

    def strip(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != "request_id"}

    assert strip(unknown) == strip(wrong) == strip(invalid)


async def test_an_unverified_account_is_told_to_verify_only_with_the_right_password(
    api: Api,
) -> None:
    await api.register("pending@example.test")

    await assert_problem(
        await api.login("pending@example.test", "not the password"), 401, "unauthenticated"
    )
    body = await assert_problem(await api.login("pending@example.test"), 403, "email-not-verified")
    assert "confirm" in body["detail"]


# =========================================================================== dev vs production


async def test_development_registration_carries_the_link_that_the_console_mailer_logs(
    make_api: MakeApi,
) -> None:
    api = await make_api(mail={"backend": "console"})

    response = await api.register("dev@example.test")

    assert response.status == 202
    url = (await response.json())["verification_url"]
    assert url.startswith(f"{PUBLIC_URL}/api/v1/auth/verify?token=")
    followed = await api.client.get(url.removeprefix(PUBLIC_URL), allow_redirects=False)
    assert followed.headers["Location"] == f"{PUBLIC_URL}/?verified=1"
    assert (await api.login("dev@example.test")).status == 200
    assert not api.mail.messages  # nothing went to the SMTP server


async def test_production_responses_never_carry_the_verification_link(
    make_api: MakeApi, avatarstack_settings: Any, mail: tuple[Mailbox, int]
) -> None:
    production = {
        "env": "production",
        "secret_key": SECRET_KEY,
        "public_url": PUBLIC_URL,
        "mail": smtp_settings(mail[1]),
    }
    with pytest.raises(ValidationError, match="console"):
        avatarstack_settings(**{**production, "mail": {"backend": "console"}})
    await migrate_first(avatarstack_settings(**production).sqlite_path)
    api = await make_api(**production)

    fresh = await api.register("new@example.test")
    taken = await api.register("new@example.test")

    assert fresh.status == taken.status == 202
    fresh_text, taken_text = await fresh.text(), await taken.text()
    assert fresh_text == taken_text
    assert (await fresh.json()).get("verification_url") is None
    assert "token" not in fresh_text
    # the link went by mail only
    followed = await api.client.get(
        api.mail.verification_link("new@example.test"), allow_redirects=False
    )
    assert followed.headers["Location"] == f"{PUBLIC_URL}/?verified=1"
    # two registrations of an unproven address keep neither password (pre-account hijacking,
    # tests/http/test_pre_account_hijack.py): whoever proved the address is mailed a reset link
    assert (await api.login("new@example.test")).status == 401
    await api.delivered()
    assert api.mail.reset_token("new@example.test")


async def test_outside_production_the_first_account_of_an_empty_installation_is_its_admin(
    make_api: MakeApi,
) -> None:
    api = await make_api(auth={"first_account_admin": True})

    first = await api.verified_user("first@example.test")
    second = await api.verified_user("second@example.test")

    assert (await (await api.me(first["access_token"])).json())["roles"] == ["admin"]
    assert (await (await api.me(second["access_token"])).json())["roles"] == ["member"]
    audit = await api.get("/admin/audit", token=first["access_token"])
    actions = [e["action"] for e in (await audit.json())["events"]]
    assert "user_registered_as_first_admin" in actions


async def test_production_never_makes_a_registered_account_admin(
    make_api: MakeApi, avatarstack_settings: Any, mail: tuple[Mailbox, int]
) -> None:
    production = {
        "env": "production",
        "secret_key": SECRET_KEY,
        "public_url": PUBLIC_URL,
        "mail": smtp_settings(mail[1]),
        "auth": {"first_account_admin": True},
    }
    await migrate_first(avatarstack_settings(**production).sqlite_path)
    api = await make_api(**production)

    first = await api.verified_user("first@example.test")

    assert (await (await api.me(first["access_token"])).json())["roles"] == ["member"]


# =========================================================================== expiry


async def test_a_verification_link_expires_after_24_hours(any_api: Api) -> None:
    api = any_api
    await api.register("early@example.test")
    await api.register("late@example.test")

    api.clock.advance(hours=23, minutes=59)
    early = await api.client.get(
        api.mail.verification_link("early@example.test"), allow_redirects=False
    )
    assert early.headers["Location"] == f"{PUBLIC_URL}/?verified=1"
    api.clock.advance(minutes=1)
    late = await api.client.get(
        api.mail.verification_link("late@example.test"), allow_redirects=False
    )
    assert late.headers["Location"] == f"{PUBLIC_URL}/?verify_error=invalid-token"
    await assert_problem(
        await api.post("/auth/verify", {"token": api.mail.verification_token("late@example.test")}),
        400,
        "invalid-token",
    )
    await assert_problem(await api.login("late@example.test"), 403, "email-not-verified")

    # a new link (resend) works
    assert (await api.post("/auth/verify/resend", {"email": "late@example.test"})).status == 202
    verified = await api.post(
        "/auth/verify", {"token": api.mail.verification_token("late@example.test")}
    )
    assert verified.status == 200
    assert (await api.login("late@example.test")).status == 200


async def test_a_reset_link_expires_after_60_minutes(any_api: Api) -> None:
    api, email = any_api, "reset@example.test"
    await api.verified_user(email)

    await api.post("/auth/password/forgot", {"email": email})
    first = api.mail.reset_token(email)
    api.clock.advance(minutes=60)
    await assert_problem(
        await api.post("/auth/password/reset", {"token": first, "password": NEW_PASSWORD}),
        400,
        "invalid-token",
    )
    assert (await api.login(email)).status == 200  # the password did not change

    await api.post("/auth/password/forgot", {"email": email})
    api.clock.advance(minutes=59)
    second = api.mail.reset_token(email)
    assert second != first
    reset = await api.post("/auth/password/reset", {"token": second, "password": NEW_PASSWORD})
    assert reset.status == 200
    assert (await api.login(email, NEW_PASSWORD)).status == 200


async def test_an_access_token_expires_after_15_minutes_and_the_refresh_token_renews_it(
    any_api: Api,
) -> None:
    api = any_api
    pair = await api.verified_user("clock@example.test")

    api.clock.advance(minutes=14, seconds=59)
    assert (await api.me(pair["access_token"])).status == 200
    api.clock.advance(minutes=1, seconds=6)  # past 15 min and the verifier's leeway
    body = await assert_problem(await api.me(pair["access_token"]), 401, "unauthenticated")
    assert "expired" in body["detail"]

    renewed = await refresh(api, pair["refresh_token"])
    assert renewed.status == 200
    assert (await api.me((await renewed.json())["access_token"])).status == 200


# =========================================================================== sessions


async def test_a_user_ends_one_other_session_by_id(any_api: Api) -> None:
    api = any_api
    laptop = await api.verified_user("multi@example.test")
    phone_response = await api.post(
        "/auth/login",
        {"email": "multi@example.test", "password": PASSWORD},
        headers={"User-Agent": "Phone/1.0"},
    )
    phone = await phone_response.json()
    phone_sid = claims_of(phone["access_token"])["sid"]

    listed = await (await api.get("/users/me/sessions", token=laptop["access_token"])).json()
    by_id = {s["id"]: s for s in listed["sessions"]}
    assert set(by_id) == {claims_of(laptop["access_token"])["sid"], phone_sid}
    assert by_id[phone_sid]["user_agent"] == "Phone/1.0"
    assert by_id[phone_sid]["current"] is False
    assert by_id[phone_sid]["ip"] == "127.0.0.1"

    ended = await api.client.delete(
        f"/api/v1/users/me/sessions/{phone_sid}",
        headers={"Authorization": f"Bearer {laptop['access_token']}"},
    )
    assert ended.status == 204
    await assert_problem(await api.me(phone["access_token"]), 401, "unauthenticated")
    await assert_problem(await refresh(api, phone["refresh_token"]), 401, "unauthenticated")
    assert (await api.me(laptop["access_token"])).status == 200
    listed = await (await api.get("/users/me/sessions", token=laptop["access_token"])).json()
    assert [s["current"] for s in listed["sessions"]] == [True]


async def test_a_user_cannot_end_someone_elses_session(any_api: Api) -> None:
    api = any_api
    mallory = await api.verified_user("mallory@example.test")
    victim = await api.verified_user("victim@example.test")
    victim_sid = claims_of(victim["access_token"])["sid"]

    for session_id in (victim_sid, "00000000-0000-0000-0000-000000000000", "%00", "x" * 65):
        response = await api.client.delete(
            f"/api/v1/users/me/sessions/{session_id}",
            headers={"Authorization": f"Bearer {mallory['access_token']}"},
        )
        await assert_problem(response, 404, "not-found")
    assert (await api.me(victim["access_token"])).status == 200


async def test_a_user_ends_every_session_but_the_current_one(any_api: Api) -> None:
    api = any_api
    here = await api.verified_user("many@example.test")
    others = [await api.login_ok("many@example.test") for _ in range(2)]

    response = await api.client.delete(
        "/api/v1/users/me/sessions", headers={"Authorization": f"Bearer {here['access_token']}"}
    )

    assert response.status == 204
    for other in others:
        await assert_problem(await api.me(other["access_token"]), 401, "unauthenticated")
        await assert_problem(await refresh(api, other["refresh_token"]), 401, "unauthenticated")
    assert (await api.me(here["access_token"])).status == 200
    listed = await (await api.get("/users/me/sessions", token=here["access_token"])).json()
    assert [(s["id"], s["current"]) for s in listed["sessions"]] == [
        (claims_of(here["access_token"])["sid"], True)
    ]
    assert (await refresh(api, here["refresh_token"])).status == 200


# =========================================================================== rate limits


async def assert_rate_limited(response: Any, *, within: int) -> None:
    await assert_problem(response, 429, "rate-limited")
    assert 1 <= int(response.headers["Retry-After"]) <= within


async def test_password_spraying_from_one_address_is_stopped(any_api: Api) -> None:
    api = any_api
    await api.verified("target@example.test")

    for n in range(30):  # 30 logins per minute per address
        response = await api.login(f"user{n}@example.test", "Winter2026!")
        await assert_problem(response, 401, "unauthenticated")
    # the next one is refused whoever it is for, even with the right password
    await assert_rate_limited(await api.login("target@example.test"), within=60)
    await assert_rate_limited(await api.login("user99@example.test", "Winter2026!"), within=60)

    api.clock.advance(seconds=60)
    assert (await api.login("target@example.test")).status == 200


async def test_one_account_is_protected_across_addresses_behind_a_trusted_proxy(
    make_api: MakeApi,
) -> None:
    api = await make_api(http={"trusted_proxies": ["127.0.0.1"]})
    await api.verified("victim@example.test")
    await api.verified("bystander@example.test")

    for n in range(10):  # 10 attempts per account per 15 minutes, from any address
        response = await api.login(
            "victim@example.test",
            f"guess number {n}",
            headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
        )
        await assert_problem(response, 401, "unauthenticated")
    blocked = await api.login("victim@example.test", headers={"X-Forwarded-For": "198.51.100.7"})
    await assert_rate_limited(blocked, within=900)
    # the addresses themselves are not blocked for other accounts
    other = await api.login("bystander@example.test", headers={"X-Forwarded-For": "203.0.113.1"})
    assert other.status == 200
    # and the forwarded address is the one the session records
    sessions = await (
        await api.get("/users/me/sessions", token=(await other.json())["access_token"])
    ).json()
    assert "203.0.113.1" in {s["ip"] for s in sessions["sessions"]}

    api.clock.advance(minutes=15)
    assert (await api.login("victim@example.test")).status == 200


async def test_forwarded_for_from_a_trusted_proxy_spreads_the_per_address_limit(
    make_api: MakeApi,
) -> None:
    api = await make_api(http={"trusted_proxies": ["127.0.0.1"]})

    for n in range(35):
        response = await api.login(
            f"user{n}@example.test", "Winter2026!", headers={"X-Forwarded-For": f"10.1.0.{n}"}
        )
        await assert_problem(response, 401, "unauthenticated")


async def test_forwarded_for_is_ignored_without_trusted_proxies(api: Api) -> None:
    for n in range(30):
        response = await api.login(
            f"user{n}@example.test", "Winter2026!", headers={"X-Forwarded-For": f"10.1.0.{n}"}
        )
        await assert_problem(response, 401, "unauthenticated")
    spoofed = await api.login(
        "user99@example.test", "Winter2026!", headers={"X-Forwarded-For": "10.9.9.9"}
    )
    await assert_rate_limited(spoofed, within=60)

    api.clock.advance(seconds=60)
    pair = await api.verified_user("real@example.test")
    sessions = await (
        await api.client.get(
            "/api/v1/users/me/sessions",
            headers={
                "Authorization": f"Bearer {pair['access_token']}",
                "X-Forwarded-For": "10.9.9.9",
            },
        )
    ).json()
    assert {s["ip"] for s in sessions["sessions"]} == {"127.0.0.1"}


async def test_registration_is_throttled_per_address(any_api: Api) -> None:
    api = any_api
    for n in range(10):  # 10 per hour per address
        assert (await api.register(f"new{n}@example.test")).status == 202
    await assert_rate_limited(await api.register("new10@example.test"), within=3600)
    assert not api.mail.to("new10@example.test")

    api.clock.advance(hours=1)
    assert (await api.register("new10@example.test")).status == 202
    api.mail.last("new10@example.test", "confirm")


async def test_resending_the_verification_is_throttled_per_account(any_api: Api) -> None:
    api = any_api
    await api.register("slow@example.test")

    assert (await api.post("/auth/verify/resend", {"email": "slow@example.test"})).status == 202
    again = await api.post("/auth/verify/resend", {"email": "SLOW@example.test"})
    await assert_rate_limited(again, within=60)
    # unknown addresses are throttled the same way (no hint either way)
    assert (await api.post("/auth/verify/resend", {"email": "ghost@example.test"})).status == 202
    ghost = await api.post("/auth/verify/resend", {"email": "ghost@example.test"})
    await assert_rate_limited(ghost, within=60)
    assert len(api.mail.to("slow@example.test")) == 2  # registration + one resend

    api.clock.advance(seconds=60)
    assert (await api.post("/auth/verify/resend", {"email": "slow@example.test"})).status == 202
    assert len(api.mail.to("slow@example.test")) == 3


async def test_password_reset_requests_are_throttled_per_account(any_api: Api) -> None:
    api = any_api
    await api.verified_user("forgetful@example.test")

    for _ in range(3):  # 3 per hour per account
        forgot = await api.post("/auth/password/forgot", {"email": "forgetful@example.test"})
        assert forgot.status == 202
    await assert_rate_limited(
        await api.post("/auth/password/forgot", {"email": "forgetful@example.test"}), within=3600
    )
    resets = [m for m in api.mail.to("forgetful@example.test") if "Reset" in m.subject]
    assert len(resets) == 3
    other = await api.post("/auth/password/forgot", {"email": "other@example.test"})
    assert other.status == 202

    api.clock.advance(hours=1)
    assert (
        await api.post("/auth/password/forgot", {"email": "forgetful@example.test"})
    ).status == 202


# =========================================================================== audit


async def test_the_admin_sees_logins_resets_and_role_changes_in_the_audit_log(
    any_api: Api,
) -> None:
    api = any_api
    admin = await api.admin()
    user = await api.verified_user("audited@example.test")
    user_id = user["user"]["id"]

    await api.login("audited@example.test", "not the password")
    await api.login("nobody@example.test", "not the password")
    await api.post("/auth/password/forgot", {"email": "audited@example.test"})
    await api.post(
        "/auth/password/reset",
        {"token": api.mail.reset_token("audited@example.test"), "password": NEW_PASSWORD},
    )
    changed = await api.client.put(
        f"/api/v1/admin/users/{user_id}/roles",
        json={"roles": ["editor", "member"]},
        headers={"Authorization": f"Bearer {admin['access_token']}"},
    )
    assert changed.status == 200
    assert (await changed.json())["roles"] == ["editor", "member"]

    # the member cannot read the log
    member = await api.login_ok("audited@example.test", NEW_PASSWORD)
    await assert_problem(
        await api.get("/admin/audit", token=member["access_token"]), 403, "forbidden"
    )

    response = await api.get("/admin/audit", token=admin["access_token"])
    assert response.status == 200
    events = (await response.json())["events"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)  # newest first
    seen = [(e["action"], e["subject_id"]) for e in events]
    for expected in [
        ("user_created", admin["user"]["id"]),
        ("user_registered", user_id),
        ("email_verified", user_id),
        ("login_succeeded", user_id),
        ("login_failed", user_id),
        ("login_failed", None),
        ("password_reset_requested", user_id),
        ("password_reset", user_id),
        ("roles_changed", user_id),
    ]:
        assert expected in seen, expected
    (role_change,) = [e for e in events if e["action"] == "roles_changed"]
    assert role_change["actor_id"] == admin["user"]["id"]
    assert role_change["data"] == {"before": ["member"], "after": ["editor", "member"]}
    assert role_change["ip"] == "127.0.0.1"
    (reset,) = [e for e in events if e["action"] == "password_reset"]
    assert reset["data"]["sessions_revoked"] >= 1

    only_user = await api.get(
        f"/admin/audit?subject_id={user_id}&limit=2", token=admin["access_token"]
    )
    page = (await only_user.json())["events"]
    assert len(page) == 2
    assert {e["subject_id"] for e in page} == {user_id}


async def test_a_used_reset_link_ends_every_other_reset_link_of_the_user(api: Api) -> None:
    email = "twice@example.test"
    await api.verified_user(email)
    await api.post("/auth/password/forgot", {"email": email})
    first = api.mail.reset_token(email)
    await api.post("/auth/password/forgot", {"email": email})
    second = api.mail.reset_token(email)
    assert first != second
    reset = await api.post("/auth/password/reset", {"token": second, "password": NEW_PASSWORD})
    assert reset.status == 200
    await assert_problem(
        await api.post("/auth/password/reset", {"token": first, "password": PASSWORD}),
        400,
        "invalid-token",
    )
    assert (await api.login(email, NEW_PASSWORD)).status == 200


async def _revoke_behind_the_services_back(api: Api, session_id: str) -> None:
    """What another instance does: revoke in the shared database, not through this one."""
    storage = api.container.storage()
    async with storage.unit_of_work() as uow:
        assert await uow.sessions.revoke(session_id, api.clock.now())
        await uow.commit()


async def test_a_revocation_made_elsewhere_applies_within_the_principal_cache_lifetime(
    make_api: MakeApi,
) -> None:
    api = await make_api(auth={"principal_cache_seconds": 2})
    pair = await api.verified_user("cached@example.test")
    token = pair["access_token"]
    assert (await api.me(token)).status == 200
    await _revoke_behind_the_services_back(api, claims_of(token)["sid"])
    assert (await api.me(token)).status == 200  # remembered for at most 2 s on this instance
    api.clock.advance(seconds=2)
    await assert_problem(await api.me(token), 401, "unauthenticated")


async def test_without_the_principal_cache_every_request_checks_the_session(
    make_api: MakeApi,
) -> None:
    api = await make_api(auth={"principal_cache_seconds": 0})
    pair = await api.verified_user("strict@example.test")
    token = pair["access_token"]
    assert (await api.me(token)).status == 200
    await _revoke_behind_the_services_back(api, claims_of(token)["sid"])
    await assert_problem(await api.me(token), 401, "unauthenticated")


async def test_a_logout_on_this_instance_applies_to_the_very_next_request(api: Api) -> None:
    pair = await api.verified_user("now@example.test")
    token = pair["access_token"]
    assert (await api.me(token)).status == 200  # now remembered
    assert (await api.post("/auth/logout", token=token)).status == 204
    await assert_problem(await api.me(token), 401, "unauthenticated")


async def test_concurrent_requests_with_one_token_share_one_session_check(api: Api) -> None:
    pair = await api.verified_user("herd@example.test")
    token = pair["access_token"]
    api.clock.advance(seconds=3)  # nothing remembered
    answers = await asyncio.gather(*(api.me(token) for _ in range(20)))
    assert {answer.status for answer in answers} == {200}
