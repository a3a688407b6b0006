"""KnowledgeService over in-memory storage and index, parsing in-process (the child-process
sandbox is tested in tests/integration/test_isolated_parsing.py): versions, the embedding
cache, generations, the golden-set gate, pruning and the embedder check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from avatarstack.adapters.embedders import HashingEmbedder
from avatarstack.adapters.memory import MemoryKnowledgeStore, MemoryStorage
from avatarstack.adapters.parsers import MarkdownParser, PlainTextParser, PypdfParser, choose_parser
from avatarstack.bootstrap.wiring.knowledge import make_knowledge
from avatarstack.core.jobs import Worker
from avatarstack.core.knowledge import (
    GoldenQuestionInput,
    KnowledgeConfig,
    KnowledgeService,
    safe_filename,
)
from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.errors import ConflictError, InvalidInputError, UnsupportedMediaTypeError
from avatarstack.testkit.clock import ManualClock

PARSERS: list[DocumentParser] = [PypdfParser(), PlainTextParser(), MarkdownParser()]


class CountingEmbedder:
    """HashingEmbedder that counts the texts it was asked to embed."""

    def __init__(self, name: str = "hashing", dimensions: int = 384) -> None:
        self.inner = HashingEmbedder(dimensions=dimensions, name=name)
        self.name = name
        self.dimensions = dimensions
        self.texts = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return await self.inner.embed(texts)


async def parse_here(parser: DocumentParser, data: bytes, filename: str) -> ParsedDocument:
    return parser.parse(data, filename)


class Kit:
    def __init__(self, **config: Any) -> None:
        self.storage = MemoryStorage()
        self.store = MemoryKnowledgeStore()
        self.clock = ManualClock()
        self.embedder = CountingEmbedder()
        self.service = self.make(self.embedder, **config)

    def make(self, embedder: Any, **config: Any) -> KnowledgeService:
        return make_knowledge(
            self.storage,
            self.store,
            embedder,
            self.clock,
            parsers=PARSERS,
            choose_parser=lambda media, name: choose_parser(PARSERS, media, name),
            parse=parse_here,
            config=KnowledgeConfig(**config),
        )

    async def run_jobs(self, service: KnowledgeService | None = None) -> None:
        worker = Worker(self.storage, self.clock, (service or self.service).job_handlers())
        while await worker.run_once():
            pass

    async def add(self, text: str, name: str = "notes.md", document_id: str | None = None) -> Any:
        upload = await self.service.documents.upload(
            text.encode(), filename=name, media_type=None, document_id=document_id
        )
        await self.run_jobs()
        return upload


def sections(count: int, changed: int | None = None) -> str:
    parts = []
    for n in range(count):
        word = "revised" if n == changed else "original"
        parts.append(
            f"# Section {n}\n\n"
            + " ".join(
                f"Paragraph about topic {n} in its {word} wording, sentence {s}." for s in range(12)
            )
        )
    return "\n\n".join(parts)


@pytest.fixture
async def kit() -> Kit:
    kit = Kit()
    await kit.storage.start()
    await kit.storage.migrate()
    return kit


async def test_a_rebuild_after_a_one_section_edit_embeds_only_the_changed_chunks(kit: Kit) -> None:
    upload = await kit.add(sections(10))
    first_embeds = kit.embedder.texts
    assert first_embeds > 5
    await kit.service.generations.start_build(activate="yes")
    await kit.run_jobs()
    assert kit.embedder.texts == first_embeds  # ingestion filled the cache

    await kit.add(sections(10, changed=4), document_id=upload.document.id)
    changed = kit.embedder.texts - first_embeds
    assert 1 <= changed <= 3  # the edited section's chunk(s), maybe an overlapping neighbour
    await kit.service.generations.start_build(activate="yes")
    await kit.run_jobs()
    assert kit.embedder.texts == first_embeds + changed
    result = await kit.service.search.search("topic 4 revised wording")
    assert result.hits[0].version == 2


async def test_an_identical_upload_returns_the_existing_version(kit: Kit) -> None:
    first = await kit.add("Some text about kettles.", name="a.txt")
    again = await kit.service.documents.upload(
        b"Some text about kettles.", filename="b.txt", media_type=None
    )
    assert not again.created
    assert (again.document.id, again.version.version) == (first.document.id, 1)


async def test_unknown_types_and_empty_files_are_refused_before_anything_is_stored(
    kit: Kit,
) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        await kit.service.documents.upload(
            b"x", filename="a.exe", media_type="application/x-msdownload"
        )
    with pytest.raises(InvalidInputError):
        await kit.service.documents.upload(b"", filename="a.txt", media_type=None)
    documents, total = await kit.service.documents.list_documents()
    assert (documents, total) == ([], 0)


async def test_the_gate_keeps_the_active_generation_when_the_candidate_regresses(
    kit: Kit,
) -> None:
    good = await kit.add(sections(3), name="kettles.md")
    generation, _ = await kit.service.generations.start_build(activate="yes")
    await kit.run_jobs()
    await kit.service.evaluation.set_golden_set(
        [
            GoldenQuestionInput(
                question="topic 1 original wording", expected_document_id=good.document.id
            )
        ]
    )
    # the expected document is deleted: the candidate cannot find it any more
    await kit.service.documents.delete_document(good.document.id)
    await kit.add("Unrelated text about bicycles and their chains.", name="bikes.txt")
    candidate, _ = await kit.service.generations.start_build(activate="if_better")
    await kit.run_jobs()
    generations, active = await kit.service.generations.list_generations()
    assert active == generation.id
    built = next(g for g in generations if g.id == candidate.id)
    assert built.status == "ready"
    assert built.metrics["golden"]["hit_at_k"] == 0.0


async def test_old_generations_are_pruned_but_never_the_active_one(kit: Kit) -> None:
    kit.service = kit.make(kit.embedder, keep_generations=2)
    await kit.add("Kettles boil water.", name="k.txt")
    first, _ = await kit.service.generations.start_build(activate="yes")
    await kit.run_jobs()
    for _ in range(3):
        kit.clock.advance(60)
        await kit.service.generations.start_build(activate="no")
        await kit.run_jobs()
    generations, active = await kit.service.generations.list_generations()
    assert active == first.id
    assert first.id in {g.id for g in generations}
    assert len(generations) == 3  # the newest two and the active one
    assert await kit.store.describe(first.id) is not None


async def test_another_embedder_is_refused_at_startup_and_on_activation(kit: Kit) -> None:
    await kit.add("Kettles boil water.", name="k.txt")
    generation, _ = await kit.service.generations.start_build(activate="yes")
    await kit.run_jobs()
    other = kit.make(CountingEmbedder(name="other", dimensions=64))
    with pytest.raises(ConflictError, match="embedder"):
        await other.generations.check_embedder()
    with pytest.raises(ConflictError, match="embedder"):
        await other.generations.activate(generation.id)
    await kit.service.generations.check_embedder()  # the same embedder is fine


async def test_auto_activate_builds_and_activates_after_ingestion(kit: Kit) -> None:
    kit.service = kit.make(kit.embedder, auto_activate=True)
    await kit.add("Kettles boil water in about three minutes.", name="k.txt")
    _, active = await kit.service.generations.list_generations()
    assert active is not None
    found = await kit.service.search.search("how long does a kettle take")
    assert found.generation_id == active
    assert found.hits


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\report.pdf", "report.pdf"),
        ("a\x00b\x1b[0m.pdf", "ab[0m.pdf"),
        ("..", "upload"),
        ("", "upload"),
        (None, "upload"),
        ("\u202egpj.exe", "gpj.exe"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_file_names_are_made_safe(raw: str | None, safe: str) -> None:
    assert safe_filename(raw) == safe
