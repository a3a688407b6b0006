"""The knowledge base through the HTTP API: the editor's journey of issue 4 (upload, progress,
build, activate, cited search, new version, rebuild, rollback), versions, roles and bad input.

The journey runs on SQLite with embedded Chroma (the default deployment); the PostgreSQL + Chroma
server variant is in tests/http/test_knowledge_postgres_chroma.py.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from kb_helpers import (
    KB,
    MANUAL_V1,
    MANUAL_V2,
    build,
    fast_hasher,
    form,
    ingest,
    login,
    search,
    upload,
    wait_job,
)

from avatarstack.testkit.pdf import build_pdf, pdf_with_pages, text_pdf


@pytest.fixture
async def chroma_client(avatarstack_client: Any) -> Any:
    """SQLite + embedded Chroma in the test's data folder."""
    return await avatarstack_client(providers_={"password_hasher": fast_hasher()}, kb={})


@pytest.fixture
async def client(avatarstack_client: Any) -> Any:
    """SQLite + the in-process index (fast) for the many small cases."""
    return await avatarstack_client(providers_={"password_hasher": fast_hasher()})


async def journey(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    member = await login(client, "mo@example.com", "member")

    first = await ingest(client, editor, MANUAL_V1, title="Espresso manual")
    doc = first["document_id"]
    assert first["version"] == 1
    detail = await (await client.get(f"{KB}/documents/{doc}", headers=member)).json()
    assert detail["title"] == "Espresso manual"
    assert detail["current_version"] == 1
    assert detail["current"]["status"] == "ready"
    assert detail["current"]["pages"] == 3
    assert detail["current"]["chunks"] >= 1
    assert detail["current"]["parser"].startswith("pypdf")

    again = await upload(client, editor, MANUAL_V1)
    assert again.status == 200
    assert (await again.json()) | {"job_id": None} == {
        "document_id": doc,
        "version": 1,
        "job_id": None,
        "status": "ready",
        "created": False,
    }

    gen1 = await build(client, editor)
    found = await search(client, member, "how often does the machine need descaling", k=3)
    assert found["generation_id"] == gen1["generation_id"]
    best = found["results"][0]
    assert "three months" in best["text"]
    assert (best["document_id"], best["version"], best["page"]) == (doc, 1, 1)
    assert best["chunk_id"] == f"{doc}:1:0" or best["chunk_id"].startswith(f"{doc}:1:")
    assert best["channels"] == ["lexical", "dense"]  # both channels of the generation found it
    assert 0.0 < best["score"] <= 1.0

    response = await client.put(f"{KB}/documents/{doc}", data=form(MANUAL_V2), headers=editor)
    assert response.status == 202, await response.text()
    second = await response.json()
    assert second["version"] == 2
    assert (await wait_job(client, editor, second["job_id"]))["status"] == "succeeded"
    # the new version is current, but searches still use the active generation 1
    found = await search(client, member, "descaling", k=3)
    assert found["generation_id"] == gen1["generation_id"]
    assert all(r["version"] == 1 for r in found["results"])

    gen2 = await build(client, editor)
    found = await search(client, member, "how often does the machine need descaling", k=10)
    assert found["generation_id"] == gen2["generation_id"]
    assert all(r["version"] == 2 for r in found["results"])
    assert "six weeks" in found["results"][0]["text"]
    assert not any("three months" in r["text"] for r in found["results"])

    versions = await (await client.get(f"{KB}/documents/{doc}/versions", headers=member)).json()
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    assert versions["current_version"] == 2

    generations = await (await client.get(f"{KB}/generations", headers=member)).json()
    assert generations["active_generation_id"] == gen2["generation_id"]
    assert [g["generation_id"] for g in generations["generations"]] == [
        gen2["generation_id"],
        gen1["generation_id"],
    ]

    # rollback: activating generation 1 brings the old content back at once
    rolled = await client.post(f"{KB}/generations/{gen1['generation_id']}/activate", headers=editor)
    assert rolled.status == 200, await rolled.text()
    assert (await rolled.json())["active"] is True
    found = await search(client, member, "how often does the machine need descaling", k=3)
    assert found["generation_id"] == gen1["generation_id"]
    assert "three months" in found["results"][0]["text"]

    detail = await (
        await client.get(f"{KB}/generations/{gen1['generation_id']}", headers=member)
    ).json()
    assert detail["searches"]["count"] >= 3
    assert detail["chunk_count"] >= 1


async def test_the_editor_journey_on_sqlite_and_embedded_chroma(chroma_client: Any) -> None:
    await journey(chroma_client)


async def test_the_editor_journey_on_the_in_process_index(client: Any) -> None:
    await journey(client)


async def test_members_search_but_do_not_write(client: Any) -> None:
    member = await login(client, "mo@example.com", "member")
    refused = await upload(client, member, MANUAL_V1)
    assert refused.status == 403
    assert (await client.post(f"{KB}/generations", json={}, headers=member)).status == 403
    empty = await search(client, member, "anything")
    assert empty == {"generation_id": None, "results": [], "embed_ms": 0.0, "search_ms": 0.0}
    assert (await client.post(f"{KB}/search", json={"query": "x"})).status == 401


async def test_editors_list_the_recent_ingestion_and_build_jobs_newest_first(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    member = await login(client, "mo@example.com", "member")
    ingested = await ingest(client, editor, MANUAL_V1, title="Espresso manual")
    built = await build(client, editor)
    listed = await client.get(f"{KB}/jobs", headers=editor)
    assert listed.status == 200
    jobs = (await listed.json())["jobs"]
    assert [(j["kind"], j["status"]) for j in jobs[:2]] == [
        ("kb.build", "succeeded"),
        ("kb.ingest", "succeeded"),
    ]
    assert {jobs[0]["job_id"], jobs[1]["job_id"]} == {built["job_id"], ingested["job_id"]}
    assert len((await (await client.get(f"{KB}/jobs?limit=1", headers=editor)).json())["jobs"]) == 1
    assert (await client.get(f"{KB}/jobs", headers=member)).status == 403
    assert (await client.get(f"{KB}/jobs?limit=0", headers=editor)).status == 422


async def test_restore_makes_an_old_version_current_as_a_new_one(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    doc = (await ingest(client, editor, MANUAL_V1))["document_id"]
    response = await client.put(f"{KB}/documents/{doc}", data=form(MANUAL_V2), headers=editor)
    await wait_job(client, editor, (await response.json())["job_id"])

    restored = await client.post(f"{KB}/documents/{doc}/versions/1/restore", headers=editor)
    assert restored.status == 201, await restored.text()
    body = await restored.json()
    assert body["current_version"] == 3
    assert body["current"]["restored_from"] == 1
    await build(client, editor)
    found = await search(client, editor, "descaling", k=3)
    assert found["results"][0]["version"] == 3
    assert "three months" in found["results"][0]["text"]

    missing = await client.post(f"{KB}/documents/{doc}/versions/9/restore", headers=editor)
    assert missing.status == 404


async def test_deleting_a_document_removes_it_from_search_at_once(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    doc = (await ingest(client, editor, MANUAL_V1))["document_id"]
    other = (await ingest(client, editor, text_pdf("Milk frothing needs cold milk.")))[
        "document_id"
    ]
    await build(client, editor)
    assert (await client.delete(f"{KB}/documents/{doc}", headers=editor)).status == 204
    found = await search(client, editor, "descaling espresso machine", k=10)
    assert {r["document_id"] for r in found["results"]} == {other}
    assert (await client.get(f"{KB}/documents/{doc}", headers=editor)).status == 404
    assert (await client.delete(f"{KB}/documents/{doc}", headers=editor)).status == 404


async def test_a_failed_new_version_leaves_the_current_one_in_place(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    doc = (await ingest(client, editor, MANUAL_V1))["document_id"]
    truncated = MANUAL_V2[: len(MANUAL_V2) // 3]
    response = await client.put(f"{KB}/documents/{doc}", data=form(truncated), headers=editor)
    assert response.status == 202
    job = await wait_job(client, editor, (await response.json())["job_id"])
    assert job["status"] == "failed"
    assert job["error"]
    detail = await (await client.get(f"{KB}/documents/{doc}", headers=editor)).json()
    assert detail["current_version"] == 1
    assert detail["latest"]["status"] == "failed"
    assert detail["latest"]["error"]


async def test_same_text_in_a_different_file_is_not_a_new_version(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    doc = (await ingest(client, editor, MANUAL_V1))["document_id"]
    # same pages, different bytes (an extra comment line in the file)
    same_text = MANUAL_V1.replace(b"%PDF-1.4\n", b"%PDF-1.4\n% re-saved\n", 1)
    response = await client.put(f"{KB}/documents/{doc}", data=form(same_text), headers=editor)
    assert response.status == 202
    job = await wait_job(client, editor, (await response.json())["job_id"])
    assert job["status"] == "succeeded"
    assert job["result"]["duplicate"] is True
    assert job["result"]["version"] == 1
    versions = await (await client.get(f"{KB}/documents/{doc}/versions", headers=editor)).json()
    assert [v["version"] for v in versions["versions"]] == [1]


async def test_golden_set_scores_a_generation(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    doc = (await ingest(client, editor, MANUAL_V1))["document_id"]
    gen = await build(client, editor)
    golden = await client.put(
        f"{KB}/golden-set",
        json={
            "questions": [
                {"question": "how often to descale", "expected_phrase": "three months"},
                {"question": "who handles warranty claims", "expected_document_id": doc},
            ]
        },
        headers=editor,
    )
    assert golden.status == 200, await golden.text()
    scored = await client.post(f"{KB}/generations/{gen['generation_id']}/evaluate", headers=editor)
    assert scored.status == 200, await scored.text()
    metrics = await scored.json()
    assert metrics["questions"] == 2
    assert metrics["hit_at_k"] == 1.0
    assert 0 < metrics["mrr"] <= 1
    detail = await (
        await client.get(f"{KB}/generations/{gen['generation_id']}", headers=editor)
    ).json()
    assert detail["metrics"]["golden"]["mrr"] == metrics["mrr"]

    bad = await client.put(
        f"{KB}/golden-set",
        json={"questions": [{"question": "x", "expected_document_id": "nope"}, {"question": "y"}]},
        headers=editor,
    )
    assert bad.status == 422
    fields = {e["field"] for e in (await bad.json())["errors"]}
    assert fields == {"questions.0.expected_document_id", "questions.1"}


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "status"),
    [
        (b"", "empty.pdf", "application/pdf", 422),
        (b"<html>not a pdf</html>", "page.pdf", "application/pdf", 422),
        (b"\x89PNG\r\n\x1a\n", "photo.png", "image/png", 415),
        (b"MZ\x90\x00", "setup.exe", "application/octet-stream", 415),
    ],
)
async def test_bad_files_are_refused_with_a_problem(
    client: Any, data: bytes, filename: str, content_type: str, status: int
) -> None:
    editor = await login(client, "ed@example.com", "editor")
    response = await upload(client, editor, data, filename=filename, content_type=content_type)
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    listed = await (await client.get(f"{KB}/documents", headers=editor)).json()
    assert listed["total"] == 0


async def test_an_upload_over_the_limit_is_413(avatarstack_client: Any) -> None:
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, http={"max_upload_bytes": 4096}
    )
    editor = await login(client, "ed@example.com", "editor")
    big = pdf_with_pages(1, b"BT /F1 12 Tf 72 712 Td (x) Tj ET" + b" " * 8000)
    response = await upload(client, editor, big)
    assert response.status == 413
    assert response.content_type == "application/problem+json"


async def test_not_multipart_or_no_file_part_is_a_clear_error(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    as_json = await client.post(f"{KB}/documents", json={"file": "x"}, headers=editor)
    assert as_json.status == 415
    no_file = await client.post(f"{KB}/documents", data={"title": "only"}, headers=editor)
    assert no_file.status in {415, 422}


def raw_upload(name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body built by hand: aiohttp's client refuses odd file names, a hostile
    client does not."""
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: application/pdf\r\n\r\n" + data + b"\r\n--XyZ--\r\n"
    )
    return body, "multipart/form-data; boundary=XyZ"


async def test_path_traversal_and_invisible_characters_in_names_are_neutralised(
    client: Any,
) -> None:
    editor = await login(client, "ed@example.com", "editor")
    body, content_type = raw_upload("../../etc/pass\u202ewd\u200b.pdf", MANUAL_V1)
    response = await client.post(
        f"{KB}/documents", data=body, headers={**editor, "Content-Type": content_type}
    )
    assert response.status == 202, await response.text()
    uploaded = await response.json()
    await wait_job(client, editor, uploaded["job_id"])
    detail = await (
        await client.get(f"{KB}/documents/{uploaded['document_id']}", headers=editor)
    ).json()
    assert detail["current"]["filename"] == "passwd.pdf"
    assert detail["title"] == "passwd"


async def test_control_characters_in_a_part_header_are_a_400(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    body, content_type = raw_upload("evil\x1b[31m.pdf", MANUAL_V1)
    response = await client.post(
        f"{KB}/documents", data=body, headers={**editor, "Content-Type": content_type}
    )
    assert response.status == 400
    assert response.content_type == "application/problem+json"


async def test_an_encrypted_pdf_fails_with_a_readable_reason(client: Any) -> None:
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(MANUAL_V1)).pages:
        writer.add_page(page)
    writer.encrypt(user_password="pw", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    editor = await login(client, "ed@example.com", "editor")
    response = await upload(client, editor, out.getvalue())
    assert response.status == 202
    job = await wait_job(client, editor, (await response.json())["job_id"])
    assert job["status"] == "failed"
    assert "encrypted" in job["error"]
    assert job["attempts"] == 1  # bad input is not retried


async def test_unknown_ids_are_404_never_500(client: Any) -> None:
    editor = await login(client, "ed@example.com", "editor")
    for path in (
        f"{KB}/documents/nope",
        f"{KB}/documents/nope/versions",
        f"{KB}/jobs/nope",
        f"{KB}/generations/nope",
        f"{KB}/documents/%00",
    ):
        response = await client.get(path, headers=editor)
        assert response.status == 404, path
    assert (await client.post(f"{KB}/generations/nope/activate", headers=editor)).status == 404
    nothing = await client.post(f"{KB}/generations", json={}, headers=editor)
    assert nothing.status == 409


async def test_hostile_pdfs_fail_with_reasons_while_the_server_stays_responsive(
    avatarstack_client: Any,
) -> None:
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()},
        kb={"chroma_url": "memory://", "parse_memory_mb": 256, "parse_timeout_seconds": 20},
    )
    editor = await login(client, "ed@example.com", "editor")
    doc = (await ingest(client, editor, MANUAL_V1))["document_id"]
    await build(client, editor)

    packer = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MB
    hostile = {
        "bomb.pdf": pdf_with_pages(1, bomb, b"/Filter /FlateDecode "),
        "huge.pdf": pdf_with_pages(10_000, b"BT /F1 12 Tf 72 712 Td (page) Tj ET"),
        "nested.pdf": build_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /Nested " + b"[" * 100_000 + b"]" * 100_000 + b" >>",
            ]
        ),
    }
    jobs = {}
    for name, data in hostile.items():
        response = await upload(client, editor, data, filename=name)
        assert response.status == 202, (name, await response.text())
        jobs[name] = (await response.json())["job_id"]
    # the server answers while the children parse
    assert (await client.get("/healthz")).status == 200
    for name, job_id in jobs.items():
        job = await wait_job(client, editor, job_id, timeout=60)
        assert job["status"] == "failed", (name, job)
        assert job["error"], (name, job)
        assert "Traceback" not in job["error"], (name, job)
    found = await search(client, editor, "descaling", k=3)
    assert found["results"][0]["document_id"] == doc  # nothing earlier was lost
