"""Targeted lockout: strangers' wrong passwords must not lock the owner out.

The per-account limit counts failed attempts only, and a browser that signed in to the account
before presents its device cookie: its attempts are limited on their own, so the owner's correct
password is never refused because of someone else's guesses (docs/identity.md, "Lockout")."""

from __future__ import annotations

from typing import Any

import pytest
from identity_helpers import Api, MakeApi, assert_problem

OWNER = "owner@lockout.test"
DEVICE_COOKIE = "avatarstack_device"


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    api = await make_api(http={"trusted_proxies": ["127.0.0.1"]})
    await api.verified(OWNER)
    return api


def from_ip(n: int, cookie: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": f"203.0.113.{n}"}
    if cookie is not None:
        headers["Cookie"] = f"{DEVICE_COOKIE}={cookie}"
    return headers


async def owner_signs_in_at_home(api: Api) -> str:
    response = await api.login(OWNER, headers=from_ip(200))
    assert response.status == 200
    morsel = response.cookies[DEVICE_COOKIE]
    assert morsel["httponly"]
    assert morsel["path"] == "/api/v1/auth"
    assert morsel["samesite"] == "Strict"
    api.client.session.cookie_jar.clear()  # each request below says which cookie it carries
    return str(morsel.value)


async def strangers_guess(api: Api, times: int = 10, first_ip: int = 1) -> None:
    for n in range(times):
        guess = await api.login(OWNER, f"guess number {n}", headers=from_ip(first_ip + n))
        assert guess.status in {401, 429}


async def test_the_owner_with_a_device_cookie_signs_in_while_strangers_are_locked_out(
    api: Api,
) -> None:
    device = await owner_signs_in_at_home(api)
    await strangers_guess(api)

    # strangers (and a browser that never signed in) are held off, right password or not
    refused = await api.login(OWNER, "guess number 11", headers=from_ip(50))
    await assert_problem(refused, 429, "rate-limited")
    new_browser = await api.login(OWNER, headers=from_ip(51))
    await assert_problem(new_browser, 429, "rate-limited")

    # the owner's browser is not: and again after more guesses, as often as they come
    for round_ in range(3):
        home = await api.login(OWNER, headers=from_ip(200, device))
        assert home.status == 200, await home.text()
        device = home.cookies[DEVICE_COOKIE].value
        await strangers_guess(api, first_ip=100 + 10 * round_)


async def test_a_device_cookie_counts_its_own_failures_and_is_then_held_off_too(
    api: Api,
) -> None:
    device = await owner_signs_in_at_home(api)
    for n in range(10):
        wrong = await api.login(OWNER, f"typo {n}", headers=from_ip(200, device))
        await assert_problem(wrong, 401, "unauthenticated")
    held = await api.login(OWNER, headers=from_ip(200, device))
    await assert_problem(held, 429, "rate-limited")
    # strangers' counter is untouched by the owner's typos
    assert (await api.login(OWNER, headers=from_ip(77))).status == 200


async def test_successful_sign_ins_do_not_count_towards_the_account_limit(api: Api) -> None:
    for n in range(15):
        response = await api.login(OWNER, headers=from_ip(n + 1))
        assert response.status == 200, f"sign-in {n + 1}: {await response.text()}"
        api.client.session.cookie_jar.clear()


@pytest.mark.parametrize(
    "forge",
    [
        lambda cookie: cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"),
        lambda cookie: "someone-else" + cookie[cookie.index(".") :],
        lambda cookie: "not a cookie",
    ],
    ids=["bad signature", "other user", "garbage"],
)
async def test_a_forged_device_cookie_is_no_proof(api: Api, forge: Any) -> None:
    device = await owner_signs_in_at_home(api)
    await strangers_guess(api)
    forged = await api.login(OWNER, headers=from_ip(90, forge(device)))
    await assert_problem(forged, 429, "rate-limited")


async def test_an_expired_device_cookie_is_no_proof(api: Api) -> None:
    device = await owner_signs_in_at_home(api)
    api.clock.advance(days=181)
    await strangers_guess(api)
    expired = await api.login(OWNER, headers=from_ip(200, device))
    await assert_problem(expired, 429, "rate-limited")
