"""A person's account, end to end in Chromium: register and verify through the mailed link, sign
in and out, reset a forgotten password through the mailed link, sign in with Google (the
project's fake OpenID provider), and a member who sees no editing or admin controls — and whose
direct calls to those routes are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from harness import (
    ADMIN,
    PASSWORD,
    BackgroundLoop,
    Mailbox,
    Server,
    Servers,
    manual_pdf,
    multipart,
    unique_email,
)
from playwright.sync_api import Page, Route, expect
from ui import alerts, settled, sign_in

from avatarstack.testkit.oauth import FakeGoogle, FakeGoogleUser

NEW_PASSWORD = "an entirely different passphrase"


@pytest.fixture(scope="module")
def google(aio: BackgroundLoop) -> Iterator[FakeGoogle]:
    fake = FakeGoogle(redirect_uris=())
    aio.run(fake.start())
    yield fake
    aio.run(fake.stop())


@pytest.fixture(scope="module")
def server(servers: Servers, google: FakeGoogle) -> Iterator[Server]:
    server = servers.new("users", data="accounts")
    google.redirect_uris.append(f"{server.url}/api/v1/auth/oauth/google/callback")
    server.env.update(
        AVATARSTACK_OAUTH__GOOGLE__CLIENT_ID=google.client_id,
        AVATARSTACK_OAUTH__GOOGLE__CLIENT_SECRET=google.client_secret,
        AVATARSTACK_OAUTH__GOOGLE__SERVER_METADATA_URL=google.metadata_url,
    )
    server.start()
    yield server
    server.stop()


def signed_in(page: Page) -> None:
    """The signed-in frame: the navigation and the sign-out button."""
    expect(page.get_by_role("link", name="Chat")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_a_new_user_registers_verifies_through_the_mailed_link_and_signs_in_and_out(
    page: Page, server: Server, mailbox: Mailbox
) -> None:
    email = unique_email("ada")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_role("link", name=re.compile("create an account|register|sign up", re.I)).click()
    expect(page).to_have_url(re.compile(r"/register$"))
    # the router takes the old page away at once; wait for the new one before filling it
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Display name").fill("Ada Lovelace")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(re.compile(r"check your (e-?mail|inbox)", re.I))).to_be_visible()

    link = mailbox.wait(email, "confirm your e-mail").link("/auth/verify?token=")
    assert link.startswith(server.url)
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/login"))
    expect(
        page.get_by_text(re.compile(r"(address|e-?mail) (is |was )?(verified|confirmed)", re.I))
    ).to_be_visible()

    sign_in(page, email)
    signed_in(page)
    page.get_by_role("link", name="Profile").click()
    expect(page.get_by_text(email).first).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/chat")  # the refresh cookie was revoked: nothing restores the session
    expect(page).to_have_url(re.compile(r"/login$"))


def test_a_development_server_lets_a_new_user_verify_by_clicking_alone(
    page: Page, server: Server
) -> None:
    email = unique_email("dev")
    page.goto("/register")
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("link", name="verify your address now").click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(
        page.get_by_text(re.compile(r"(address|e-?mail) (is |was )?(verified|confirmed)", re.I))
    ).to_be_visible()
    sign_in(page, email)
    signed_in(page)


def test_a_forgotten_password_is_reset_through_the_mailed_link(
    page: Page, server: Server, mailbox: Mailbox
) -> None:
    email = server.member("bob")
    page.goto("/login")
    page.get_by_role("link", name=re.compile("forgot", re.I)).click()
    expect(page).to_have_url(re.compile(r"/forgot-password$"))
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send reset link").click()
    expect(
        page.get_by_text(re.compile(r"check your (e-?mail|inbox)|we sent|link is on its way", re.I))
    ).to_be_visible()

    link = mailbox.wait(email, "reset your password").link("/reset-password#token=")
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_text(re.compile("password (is|was) changed", re.I))).to_be_visible()
    mailbox.wait(email, "password was changed")

    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(alerts(page)).to_contain_text("wrong e-mail or password")
    sign_in(page, email, NEW_PASSWORD)
    signed_in(page)


def test_while_the_next_page_loads_the_previous_page_s_form_is_gone(
    page: Page, server: Server, mailbox: Mailbox
) -> None:
    """The router cleans the old page up before the next page's module has loaded: its form
    must go at once, or what a person (or a test) types lands in a form that no longer sends
    anything (here: the sign-in form's Email while the forgot-password page loads)."""
    email = server.member("carol")
    held: list[Route] = []
    page.route(re.compile(r"/console/js/pages/password\.js$"), lambda route: held.append(route))
    page.goto("/login")
    page.get_by_role("link", name=re.compile("forgot", re.I)).click()
    expect(page).to_have_url(re.compile(r"/forgot-password$"))
    for _ in range(250):  # until the module request reaches the route and is held (≤ 5 s)
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the forgot-password page never asked for its module"
    expect(page.get_by_label("Email")).to_have_count(0)
    expect(page.locator("#main")).to_have_attribute("aria-busy", "true")
    held[0].continue_()

    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_text(re.compile(re.escape(email)))).to_be_visible()
    assert "/reset-password#token=" in mailbox.wait(email, "reset your password").text


def test_google_sign_in_completes_on_the_console(
    page: Page, server: Server, google: FakeGoogle
) -> None:
    email = unique_email("grace")
    google.login_as(FakeGoogleUser(sub=email, email=email, name="Grace Hopper"))
    page.goto("/login")
    page.get_by_role("button", name="Continue with Google").click()
    # our authorize → the fake's consent (instant) → our callback → /oauth/complete#code=…
    expect(page).to_have_url(re.compile(r"/chat(/|$)"))
    signed_in(page)
    page.get_by_role("link", name="Profile").click()
    expect(page.get_by_text(email).first).to_be_visible()
    assert google.token_requests, "the server never traded the code at the provider"


def test_a_member_sees_no_editing_or_admin_controls_and_the_api_refuses_them(
    page: Page, server: Server
) -> None:
    email = server.member("mo")
    sign_in(page, email)
    signed_in(page)
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto("/knowledge")
    settled(page)
    for control in ("Upload", "Build index", "Activate", "Restore"):
        expect(page.get_by_role("button", name=control)).to_have_count(0)
    expect(page.get_by_label("Document (PDF)")).to_have_count(0)
    page.goto("/admin")
    settled(page)
    expect(page.get_by_text(ADMIN)).to_have_count(0)  # the user list never reached the page

    token = server.login(email)
    body, content_type = multipart("guide.pdf", manual_pdf(), "application/pdf")
    refused = {
        "upload": server.api(
            "POST", "/kb/documents", data=body, token=token, headers={"Content-Type": content_type}
        ),
        "build": server.api("POST", "/kb/generations", {"activate": "yes"}, token=token),
        "users": server.api("GET", "/admin/users", token=token),
        "audit": server.api("GET", "/admin/audit", token=token),
    }
    assert {name: r.status for name, r in refused.items()} == dict.fromkeys(refused, 403)
    assert all(
        r.headers["Content-Type"].startswith("application/problem+json") for r in refused.values()
    )
