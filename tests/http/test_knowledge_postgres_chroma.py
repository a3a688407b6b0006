"""The editor's journey on the scaled-out deployment: PostgreSQL storage and a Chroma server
(``chroma run`` on 127.0.0.1), with two application instances sharing both — a generation
built and activated through one instance is what the other one searches."""

from __future__ import annotations

from pathlib import Path
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
    wait_job,
)

pytestmark = pytest.mark.postgres


async def test_two_instances_on_postgres_and_a_chroma_server(
    avatarstack_client: Any, postgres_database: Any, chroma_server: Any
) -> None:
    await postgres_database.truncate()
    settings = {
        "database_url": postgres_database.url,
        "kb": {"chroma_url": chroma_server.url},
        "providers_": {"password_hasher": fast_hasher()},
    }
    one = await avatarstack_client(**settings)
    two = await avatarstack_client(**settings)
    editor = await login(one, "ed@example.com", "editor")
    member = await login(one, "mo@example.com", "member")  # tokens work on both instances

    doc = (await ingest(one, editor, MANUAL_V1))["document_id"]
    gen1 = await build(one, editor)
    found = await search(two, member, "how often does the machine need descaling", k=3)
    assert found["generation_id"] == gen1["generation_id"]
    assert "three months" in found["results"][0]["text"]
    assert found["results"][0]["page"] == 1

    response = await two.put(f"{KB}/documents/{doc}", data=form(MANUAL_V2), headers=editor)
    assert response.status == 202
    job = await wait_job(two, editor, (await response.json())["job_id"])
    assert job["status"] == "succeeded"
    gen2 = await build(two, editor)
    found = await search(one, member, "how often does the machine need descaling", k=10)
    assert found["generation_id"] == gen2["generation_id"]
    assert {r["version"] for r in found["results"]} == {2}
    assert "six weeks" in found["results"][0]["text"]

    rolled = await one.post(f"{KB}/generations/{gen1['generation_id']}/activate", headers=editor)
    assert rolled.status == 200
    found = await search(two, member, "how often does the machine need descaling", k=3)
    assert found["generation_id"] == gen1["generation_id"]
    assert "three months" in found["results"][0]["text"]


async def test_a_second_process_on_the_same_embedded_chroma_is_refused(tmp_path: Path) -> None:
    from avatarstack.adapters.chroma import ChromaKnowledgeStore
    from avatarstack.ports.errors import ConflictError

    first = ChromaKnowledgeStore.embedded(tmp_path / "chroma")
    await first.ping()
    # flock is per open file description: a second store in this process models a second
    # process (a child process would see the same refusal)
    second = ChromaKnowledgeStore.embedded(tmp_path / "chroma")
    with pytest.raises(ConflictError, match="AVATARSTACK_KB__CHROMA_URL"):
        await second.ping()
    await first.close()
    await second.ping()  # free again once the first one closed
    await second.close()
