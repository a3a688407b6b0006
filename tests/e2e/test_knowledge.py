"""The knowledge page, as an editor uses it in Chromium: upload a PDF and watch its progress, build
and activate an index, search with page citations, upload a new version, roll back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from harness import Server, Servers, manual_pdf, wait_until
from playwright.sync_api import Page, expect
from ui import SLOW, progress_seen, sign_in, watch_progressbars

EDITOR = "editor@example.com"
FILE = "espresso-manual.pdf"
#: version 2 moves the descaling advice to page 3 and changes the interval
VERSION_2 = (
    "Warranty claims are handled by the Oslo service centre.",
    "The milk frother must be rinsed with warm water after every use.",
    "The espresso machine needs descaling every six weeks.",
)
QUERY = "How often does the espresso machine need descaling?"


@pytest.fixture(scope="module")
def server(servers: Servers) -> Iterator[Server]:
    server = servers.new("knowledge")
    server.create_user(EDITOR, "editor")
    server.start()
    yield server
    server.stop()


def upload(page: Page, name: str, content: bytes) -> None:
    page.get_by_label("Document (PDF)").set_input_files(
        files=[{"name": name, "mimeType": "application/pdf", "buffer": content}]
    )
    page.get_by_role("button", name="Upload").click()


def search(page: Page, query: str) -> str:
    """Search and return the results' text once they are shown."""
    page.get_by_label("Search the knowledge base").fill(query)
    page.get_by_role("button", name="Search").click()
    results = page.get_by_role("region", name=re.compile("results", re.I))
    expect(results).to_contain_text("descaling", timeout=SLOW)
    return results.inner_text()


def build_and_activate(page: Page, server: Server, token: str) -> str:
    """Build an index from the current versions, activate it; its generation id."""
    before = {
        g["id"] for g in server.api("GET", "/kb/generations", token=token).body["generations"]
    }
    page.get_by_role("button", name="Build index").click()
    new_id = ""

    def built() -> bool:
        nonlocal new_id
        generations = server.api("GET", "/kb/generations", token=token).body["generations"]
        fresh = [g for g in generations if g["id"] not in before and g["status"] == "ready"]
        new_id = fresh[0]["id"] if fresh else ""
        return bool(new_id)

    wait_until(built)
    row = page.get_by_role("row").filter(has_text=new_id[:8])
    activate = row.get_by_role("button", name="Activate")
    if activate.count():  # the console may build without activating
        activate.click()
    expect(row).to_contain_text(re.compile("active", re.I), timeout=SLOW)
    return new_id


def test_an_editor_uploads_builds_searches_versions_and_rolls_back(
    page: Page, server: Server
) -> None:
    token = server.login(EDITOR)
    sign_in(page, EDITOR)
    page.get_by_role("link", name="Knowledge").click()
    expect(page).to_have_url(re.compile(r"/knowledge$"))

    # upload, with live progress from job.progress
    watch_progressbars(page)
    upload(page, FILE, manual_pdf())
    documents = page.get_by_role("region", name=re.compile("documents", re.I))
    expect(documents).to_contain_text(re.compile("espresso-manual", re.I), timeout=SLOW)
    expect(documents).to_contain_text(re.compile(r"\bready\b", re.I), timeout=SLOW)
    assert progress_seen(page), "no progress bar was shown while the upload was ingested"

    # build and activate; evaluation figures are shown with the generation
    first = build_and_activate(page, server, token)

    # search: the result cites the document, its version and the page
    results = search(page, QUERY)
    assert "three months" in results
    assert re.search(r"v(ersion)?\s*1\b", results, re.I), results
    assert re.search(r"(p\.|page)\s*1\b", results, re.I), results

    # a new version of the same document
    page.get_by_role("button", name=re.compile("new version", re.I)).first.click()
    upload(page, FILE, manual_pdf(*VERSION_2))
    expect(documents).to_contain_text(re.compile(r"v(ersion)?\s*2\b", re.I), timeout=SLOW)
    second = build_and_activate(page, server, token)
    assert second != first
    results = search(page, QUERY)
    assert "six weeks" in results
    assert re.search(r"(p\.|page)\s*3\b", results, re.I), results

    # roll back: the first generation is active again and answers as before
    page.get_by_role("row").filter(has_text=first[:8]).get_by_role(
        "button", name="Activate"
    ).click()
    expect(page.get_by_role("row").filter(has_text=first[:8])).to_contain_text(
        re.compile("active", re.I), timeout=SLOW
    )
    results = search(page, QUERY)
    assert "three months" in results
    active = [
        g
        for g in server.api("GET", "/kb/generations", token=token).body["generations"]
        if g["active"]
    ]
    assert [g["id"] for g in active] == [first]
