"""The knowledge page, as an editor uses it in Chromium: upload a PDF and watch its progress, build
and activate an index, search with page citations, upload a new version, roll back to the first
index, restore the first version."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from harness import EDITOR, Server, Servers, manual_pdf, wait_until
from playwright.sync_api import Locator, Page, expect
from ui import SLOW, progress_seen, sign_in, watch_progressbars

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
    server = servers.new("knowledge", data="accounts")
    server.start()
    yield server
    server.stop()


def upload(page: Page, name: str, content: bytes) -> None:
    page.get_by_label("Document (PDF)").set_input_files(
        files=[{"name": name, "mimeType": "application/pdf", "buffer": content}]
    )
    page.get_by_role("button", name="Upload").click()


def search(page: Page, query: str) -> str:
    """Search; the results' text once the page shows this search's answer."""
    page.get_by_label("Search the knowledge base").fill(query)
    with page.expect_response(re.compile(r"/api/v1/kb/search$")) as answer:
        page.get_by_role("button", name="Search").click()
    found = answer.value.json()["results"]
    assert found, "the search found nothing"
    results = page.get_by_role("region", name="Search results")
    expect(results.locator(f"[data-chunk-id='{found[0]['chunk_id']}']")).to_be_visible()
    expect(results).to_contain_text(f"{len(found)} result")
    return results.inner_text()


def build_and_activate(page: Page, server: Server, token: str) -> str:
    """Build an index of the current versions, keep it inactive, then activate it by hand;
    its generation id (found over the API)."""

    def ids() -> set[str]:
        listing = server.api("GET", "/kb/generations", token=token).body["generations"]
        return {g["generation_id"] for g in listing}

    before = ids()
    page.get_by_label("After the build").select_option("no")
    page.get_by_role("button", name="Build index").click()
    (new_id,) = wait_until(lambda: ids() - before, what="a new generation")
    generations = page.get_by_role("region", name="Index generations")
    row = generations.get_by_role("row").filter(has_text=new_id[:8])
    row.get_by_role("button", name="Activate").click(timeout=SLOW)
    expect(row).to_contain_text("active", timeout=SLOW)
    return str(new_id)


def current_version(documents: Locator, version: int) -> None:
    """The document's row shows ``version`` as current, and ready."""
    row = documents.get_by_role("row").filter(has_text="espresso-manual")
    expect(row.get_by_role("cell", name=f"v{version}", exact=True)).to_be_visible(timeout=SLOW)
    expect(row.get_by_role("cell", name="ready", exact=True)).to_be_visible(timeout=SLOW)


def test_an_editor_uploads_builds_searches_versions_and_rolls_back(
    page: Page, server: Server
) -> None:
    token = server.login(EDITOR)
    sign_in(page, EDITOR)
    page.get_by_role("link", name="Knowledge").click()
    expect(page).to_have_url(re.compile(r"/knowledge$"))
    documents = page.get_by_role("region", name="Documents")

    # upload, with live progress from job.progress
    watch_progressbars(page)
    upload(page, FILE, manual_pdf())
    current_version(documents, 1)
    assert progress_seen(page), "no progress bar was shown while the upload was ingested"

    # build and activate; evaluation figures are shown with the generation
    first = build_and_activate(page, server, token)

    # search: the result cites the document, its version and the page
    results = search(page, QUERY)
    assert "three months" in results
    assert re.search(r"espresso-manual\W+version 1\W+page 1\b", results), results

    # a new version of the same document, indexed by a second generation
    page.get_by_role("button", name="New version of espresso-manual").click()
    upload(page, FILE, manual_pdf(*VERSION_2))
    current_version(documents, 2)
    second = build_and_activate(page, server, token)
    assert second != first
    results = search(page, QUERY)
    assert "six weeks" in results
    assert re.search(r"espresso-manual\W+version 2\W+page 3\b", results), results

    # roll back: the first generation is active again and answers as before
    rows = page.get_by_role("region", name="Index generations").get_by_role("row")
    rows.filter(has_text=first[:8]).get_by_role("button", name="Activate").click()
    expect(rows.filter(has_text=first[:8])).to_contain_text("active", timeout=SLOW)
    expect(rows.filter(has_text=second[:8]).get_by_role("button", name="Activate")).to_be_visible()
    results = search(page, QUERY)
    assert "three months" in results
    generations = server.api("GET", "/kb/generations", token=token).body["generations"]
    assert [g["generation_id"] for g in generations if g["active"]] == [first]

    # restore version 1 of the document: it becomes version 3, a copy of version 1
    page.get_by_role("button", name="History").click()
    page.get_by_role("button", name="Restore version 1").click()
    current_version(documents, 3)
    page.get_by_role("button", name="History").click()
    history = page.get_by_role("list", name="Versions of espresso-manual")
    expect(history).to_contain_text("restored from version 1")
