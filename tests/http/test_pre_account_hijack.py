"""Pre-account hijacking: a password set before the address was proven does not survive the
verification unless the person who verified set it.

The attack (issue 13, finding 5): an attacker registers the victim's address with the
attacker's password; the victim registers too and clicks the verification link; the attacker
must not be able to log in."""

from __future__ import annotations

from identity_helpers import PASSWORD, Api, assert_problem

VICTIM = "victim@hijack.test"
ATTACKERS = "attacker's own passphrase"


async def click(api: Api, link: str) -> str:
    response = await api.client.get(link, allow_redirects=False)
    assert response.status == 303
    return str(response.headers["Location"])


async def test_the_attackers_password_does_not_survive_the_victims_verification(
    api: Api,
) -> None:
    assert (await api.register(VICTIM, ATTACKERS)).status == 202  # the attacker, first
    assert (await api.register(VICTIM, PASSWORD)).status == 202  # then the victim
    await click(api, api.mail.verification_link(VICTIM))  # the newest mail, as a victim would

    await assert_problem(await api.login(VICTIM, ATTACKERS), 401, "unauthenticated")
    # the victim, who proved the address, chooses the password through the mailed reset link
    await api.delivered()
    token = api.mail.reset_token(VICTIM)
    chosen = await api.post("/auth/password/reset", {"token": token, "password": PASSWORD})
    assert chosen.status == 200, await chosen.text()
    assert (await api.login(VICTIM, PASSWORD)).status == 200
    await assert_problem(await api.login(VICTIM, ATTACKERS), 401, "unauthenticated")


async def test_an_older_verification_link_stops_working_after_a_second_registration(
    api: Api,
) -> None:
    assert (await api.register(VICTIM, PASSWORD)).status == 202
    first = api.mail.verification_link(VICTIM)
    assert (await api.register(VICTIM, ATTACKERS)).status == 202
    assert "verify_error" in await click(api, first)
    await assert_problem(await api.login(VICTIM, ATTACKERS), 401, "unauthenticated")


async def test_a_registration_after_the_owners_keeps_neither_password(
    api: Api,
) -> None:
    assert (await api.register(VICTIM, PASSWORD)).status == 202  # the victim, first
    assert (await api.register(VICTIM, ATTACKERS)).status == 202  # then the attacker
    await click(api, api.mail.verification_link(VICTIM))
    await assert_problem(await api.login(VICTIM, ATTACKERS), 401, "unauthenticated")


async def test_a_single_registration_keeps_its_password_through_verification(api: Api) -> None:
    assert (await api.register(VICTIM, PASSWORD)).status == 202
    assert await click(api, api.mail.verification_link(VICTIM)) == (
        "https://app.avatarstack.test/?verified=1"
    )
    assert (await api.login(VICTIM, PASSWORD)).status == 200


async def test_a_resent_link_keeps_the_registrations_password(api: Api) -> None:
    assert (await api.register(VICTIM, PASSWORD)).status == 202
    api.clock.advance(minutes=2)
    assert (await api.post("/auth/verify/resend", {"email": VICTIM})).status == 202
    await click(api, api.mail.verification_link(VICTIM))
    assert (await api.login(VICTIM, PASSWORD)).status == 200
