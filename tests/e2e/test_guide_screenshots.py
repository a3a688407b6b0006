"""The user guide's walk through the console (docs/guide.md), as a new person meets it: register,
open the mailed link, sign in; an editor uploads a PDF, builds the index and searches; the new
member asks a question and sees the cited answer while the text avatar speaks it; the profile
page; an admin's page. Each step asserts what the person sees.

``AVATARSTACK_E2E_SCREENSHOTS=docs/images/guide`` also saves one picture per step there (the
guide's screenshots: desktop 1280 x 800, and the chat at phone width 390 x 844); without it the
test only asserts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    ADMIN,
    DESKTOP,
    EDITOR,
    PASSWORD,
    PHONE,
    SCREENSHOTS_ENV,
    Mailbox,
    Server,
    Servers,
    manual_pdf,
)
from playwright.sync_api import Browser, FilePayload, Locator, Page, expect
from ui import SLOW, ask, settled, sign_in, transcript

from avatarstack.ports.answers import NO_ANSWER

QUESTION = "How often does the espresso machine need descaling?"
OFF_TOPIC = "Who won the football world cup in 1954?"
FILE = "espresso-manual.pdf"
NEW_USER = "ada@example.com"


@pytest.fixture(scope="module")
def server(servers: Servers) -> Iterator[Server]:
    """Accounts only (an admin and an editor); the knowledge comes from the editor's upload.
    Answers come from the built-in extractive engine, spoken by the text avatar."""
    server = servers.new("guide", data="accounts")
    server.start()
    yield server
    server.stop()


class Camera:
    """Saves the guide's pictures when ``AVATARSTACK_E2E_SCREENSHOTS`` names a folder."""

    def __init__(self) -> None:
        configured = os.environ.get(SCREENSHOTS_ENV)
        self.folder = Path(configured) if configured else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, page: Page, name: str, *, show: Locator | None = None) -> None:
        if self.folder is None:
            return
        if show is not None:  # this part at the top of the picture
            show.evaluate("(el) => { el.scrollIntoView({block: 'start'}); scrollBy(0, -16); }")
        page.evaluate("() => document.activeElement?.blur()")  # no focus ring in the picture
        page.wait_for_timeout(200)  # transitions end
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), animations="disabled")
        assert path.stat().st_size > 5_000, f"{path} looks empty"


@pytest.fixture
def camera() -> Camera:
    return Camera()


def signed_in_elsewhere(
    browser: Browser, server: Server, email: str, viewport: dict[str, int], link: str | None = None
) -> Page:
    """Another browser profile (another person, or the same one on a phone), signed in; on the
    page named by ``link`` (a navigation link's name) when given. ``page.context.close()`` ends
    it."""
    ctx = browser.new_context(base_url=server.url, viewport=viewport)  # type: ignore[arg-type]
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    sign_in(page, email)
    if link is not None:
        page.get_by_role("link", name=link).click()
        settled(page)
    return page


def test_the_guide_walks_from_sign_up_to_a_spoken_cited_answer(
    page: Page, browser: Browser, server: Server, mailbox: Mailbox, camera: Camera
) -> None:
    # --- a new person creates an account and verifies the e-mail address
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    camera(page, "01-sign-in")

    page.get_by_role("link", name=re.compile("create an account", re.I)).click()
    expect(page).to_have_url(re.compile(r"/register$"))
    # the address changes before the page is drawn: wait for the form, not the sign-in one
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("Email").fill(NEW_USER)
    page.get_by_label("Display name").fill("Ada Lovelace")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    camera(page, "02-register")
    # the session's mailbox may hold this address's mail from another module's server
    earlier = len([m for m in mailbox.to(NEW_USER) if "confirm" in m.subject.lower()])
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(re.compile(r"check your (e-?mail|inbox)", re.I))).to_be_visible()
    camera(page, "03-check-your-email")

    # before the link: the right password is not enough, and the page offers a new link
    page.goto("/login")
    page.get_by_label("Email").fill(NEW_USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("confirm your e-mail address")
    expect(page.get_by_role("button", name="Send the verification e-mail again")).to_be_visible()

    mail = mailbox.wait(NEW_USER, "confirm your e-mail", count=earlier + 1)
    link = mail.link("/auth/verify?token=")
    assert link.startswith(server.url), link
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/login"))
    verified = re.compile(r"(address|e-?mail) (is |was )?verified", re.I)
    expect(page.get_by_text(verified)).to_be_visible()
    camera(page, "04-verified")

    page.goto("/forgot-password")
    expect(page.get_by_role("button", name="Send reset link")).to_be_visible()
    camera(page, "05-forgot-password")

    # --- an editor uploads the manual, builds the index and searches it
    editor = signed_in_elsewhere(browser, server, EDITOR, DESKTOP, "Knowledge")
    editor.get_by_label("Document (PDF)").set_input_files(
        files=FilePayload(name=FILE, mimeType="application/pdf", buffer=manual_pdf())
    )
    editor.get_by_label("Title (optional)").fill("Espresso machine manual")
    editor.get_by_role("button", name="Upload").click()
    documents = editor.get_by_role("table", name="Documents")
    row = documents.get_by_role("row").filter(has_text="Espresso machine manual")
    expect(row.get_by_role("cell", name="v1", exact=True)).to_be_visible(timeout=SLOW)
    expect(row.get_by_role("cell", name="ready", exact=True)).to_be_visible(timeout=SLOW)
    camera(editor, "06-document-uploaded")

    editor.get_by_role("button", name="History").click()
    versions = editor.get_by_role("list", name="Versions of Espresso machine manual")
    expect(versions).to_contain_text(re.compile(r"version 1", re.I))
    expect(versions.get_by_role("button", name="Restore version 1")).to_have_count(0)
    camera(editor, "07-versions", show=documents)
    editor.get_by_role("button", name="History").click()

    editor.get_by_label("After the build").select_option("yes")
    editor.get_by_role("button", name="Build index").click()
    generations = editor.get_by_role("table", name="Index generations")
    expect(generations.locator("[data-active=true]")).to_have_count(1, timeout=SLOW)
    expect(generations.locator("[data-active=true]")).to_contain_text("active")
    camera(editor, "08-index-built", show=editor.get_by_role("region", name="Documents"))

    editor.get_by_label("Search the knowledge base").fill(QUESTION)
    editor.get_by_role("button", name="Search").click()
    results = editor.get_by_role("region", name="Search results")
    expect(results).to_contain_text("every three months", timeout=SLOW)
    expect(results).to_contain_text(re.compile(r"Espresso machine manual\W+version 1\W+page 1\b"))
    camera(editor, "09-search", show=editor.get_by_role("region", name="Index generations"))
    editor.context.close()

    # --- the new member signs in, starts the avatar and asks
    sign_in(page, NEW_USER)
    expect(page.get_by_role("link", name="Knowledge")).to_be_visible()
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.get_by_role("button", name="Start avatar").click()
    state = page.get_by_test_id("avatar-state")
    expect(state).to_have_text("Idle", timeout=SLOW)
    expect(page.get_by_test_id("avatar-mode")).to_have_text(
        "Text-only avatar: no video with this provider."
    )
    ask(page, QUESTION)
    answer = transcript(page).get_by_role("article", name="Answer")
    expect(answer).to_contain_text("every three months", timeout=SLOW)
    expect(answer.get_by_role("list", name="Sources")).to_contain_text(
        re.compile(r"Espresso machine manual.*(p\.|page)\s*1\b", re.S)
    )
    expect(page.get_by_label("Captions")).to_contain_text("every three months", timeout=SLOW)
    camera(page, "10-chat-answer")
    expect(state).to_have_text("Idle", timeout=SLOW)
    conversation = page.url

    phone = signed_in_elsewhere(browser, server, NEW_USER, PHONE)
    phone.goto(conversation)
    expect(transcript(phone).get_by_role("article", name="Answer")).to_contain_text(
        "every three months", timeout=SLOW
    )
    camera(phone, "11-chat-phone")
    phone.context.close()

    # a question the documents do not answer: said plainly, without a source
    ask(page, OFF_TOPIC)
    unanswered = transcript(page).get_by_role("article", name="Answer").nth(1)
    expect(unanswered).to_have_text(NO_ANSWER, timeout=SLOW)
    expect(unanswered.get_by_role("list", name="Sources")).to_have_count(0)

    page.goto("/admin")  # a member typing the admin page's address
    expect(page.get_by_role("alert")).to_contain_text("Only administrators may see this page.")
    expect(page.get_by_role("table", name="Users")).to_have_count(0)

    # --- the profile: name, roles, signed-in devices (this one and the phone)
    page.get_by_role("link", name="Profile").click()
    settled(page)
    expect(page.get_by_text(NEW_USER).first).to_be_visible()
    expect(page.get_by_text("Roles: member")).to_be_visible()
    sessions = page.get_by_role("list", name="Sessions")
    expect(sessions.get_by_role("listitem")).to_have_count(2)
    expect(sessions.locator("[data-current=true]")).to_have_count(1)
    camera(page, "12-profile")

    # --- an admin sees the users, their roles, the audit log and the jobs
    admin = signed_in_elsewhere(browser, server, ADMIN, DESKTOP, "Admin")
    users = admin.get_by_role("table", name="Users")
    expect(users).to_contain_text(NEW_USER)
    expect(admin.get_by_role("checkbox", name=f"member ({NEW_USER})")).to_be_checked()
    expect(admin.get_by_role("checkbox", name=f"editor ({NEW_USER})")).not_to_be_checked()
    expect(admin.get_by_role("table", name="Audit log")).to_be_visible()
    expect(admin.get_by_role("table", name="Jobs")).to_contain_text(re.compile("build", re.I))
    camera(admin, "13-admin")
    camera(admin, "14-admin-jobs", show=admin.get_by_role("region", name="Recent knowledge jobs"))
    admin.context.close()
