"""What a person does on the console, by the accessible names the console keeps (docs/console.md):
sign in, ask, upload. Tests compose these; assertions stay in the tests."""

from __future__ import annotations

import re
from typing import Any

from harness import PASSWORD
from playwright.sync_api import Locator, Page, expect

#: how long a person waits for something slow (an answer, a build)
SLOW = 30_000


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Sign in with a password on /login and land on the conversation page."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/chat(/|$)"))


def connection(page: Page) -> Locator:
    """The WebSocket state indicator ("Connected", "Reconnecting…", "Offline")."""
    return page.get_by_role("status", name="Connection")


def transcript(page: Page) -> Locator:
    """The conversation's messages and answers (not the avatar's captions)."""
    return page.get_by_role("log", name="Transcript")


def alerts(page: Page) -> Locator:
    return page.get_by_role("alert")


def ask(page: Page, question: str) -> None:
    expect(connection(page)).to_have_text("Connected", timeout=SLOW)
    page.get_by_label("Message").fill(question)
    page.get_by_role("button", name="Send").click()


def conversation_id(page: Page) -> str:
    """The open conversation's id, from the address bar (``/chat/{id}``)."""
    expect(page).to_have_url(re.compile(r"/chat/[^/?#]+"))
    return page.url.split("/chat/", 1)[1].split("?")[0].split("#")[0]


def watch_progressbars(page: Page) -> None:
    """Start recording every progressbar the page shows, with each value it takes."""
    page.evaluate(
        """() => {
            window.__progress = [];
            const seen = (el) => window.__progress.push({
                label: el.getAttribute("aria-label") || el.textContent || "",
                now: el.getAttribute("aria-valuenow") ?? (el.value ?? null),
            });
            const observer = new MutationObserver((records) => {
                for (const record of records) {
                    const el = record.target;
                    const bar = el.getAttribute?.("role") === "progressbar";
                    if (record.type === "attributes" && bar) seen(el);
                    if (el.nodeName === "PROGRESS") seen(el);
                    for (const added of record.addedNodes || []) {
                        if (!(added instanceof Element)) continue;
                        const bars = added.matches("[role=progressbar], progress")
                            ? [added] : [...added.querySelectorAll("[role=progressbar], progress")];
                        bars.forEach(seen);
                    }
                }
            });
            observer.observe(document.body, {subtree: true, childList: true, attributes: true,
                attributeFilter: ["aria-valuenow", "value"]});
        }"""
    )


def progress_seen(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate("() => window.__progress || []"))


def record_texts(page: Page) -> None:
    """Start keeping every distinct text the main area shows, to prove what came in parts."""
    page.evaluate(
        """() => {
            window.__texts = [];
            const main = document.querySelector("main") || document.body;
            const keep = () => {
                const text = main.innerText;
                if (window.__texts[window.__texts.length - 1] !== text) window.__texts.push(text);
            };
            new MutationObserver(keep).observe(
                main, {subtree: true, childList: true, characterData: true});
            keep();
        }"""
    )


def texts_seen(page: Page) -> list[str]:
    return list(page.evaluate("() => window.__texts || []"))


def settled(page: Page) -> None:
    """The page rendered its heading and finished loading what it shows (nothing is
    ``aria-busy``); a moment later, nothing new is expected."""
    expect(page.get_by_role("heading", level=1).first).to_be_visible()
    page.wait_for_function("() => !document.querySelector('[aria-busy=true]')")
    page.wait_for_timeout(300)
