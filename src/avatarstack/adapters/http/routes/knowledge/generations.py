"""Index generations (build, activate, evaluate), the golden set and search:
/api/v1/kb/generations, /api/v1/kb/golden-set, /api/v1/kb/search; docs/knowledge.md."""

from __future__ import annotations

from aiohttp import web

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.auth import principal
from avatarstack.adapters.http.body import model_response, path_id, read_json
from avatarstack.adapters.http.routes.knowledge.models import (
    API,
    READ,
    TAGS,
    WRITE,
    BuildIn,
    BuildOut,
    GenerationOut,
    GenerationsOut,
    GoldenQuestionIn,
    GoldenSetIn,
    GoldenSetOut,
    SearchIn,
    SearchOut,
    SearchResultOut,
)
from avatarstack.adapters.http.routing import Route
from avatarstack.core.knowledge import GoldenMetrics


def _generation_id(request: web.Request) -> str:
    return path_id(request, "generation_id", "generation")


async def build_generation(request: web.Request) -> web.Response:
    body = BuildIn()
    if request.can_read_body:
        body = await read_json(request, BuildIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    generation, job = await request.app[keys.KNOWLEDGE].generations.start_build(
        owner_id=principal(request).user.id, activate=body.activate
    )
    return model_response(
        BuildOut(generation_id=generation.id, job_id=job.id, status=generation.status), 202
    )


async def list_generations(request: web.Request) -> web.Response:
    generations, active = await request.app[keys.KNOWLEDGE].generations.list_generations()
    return model_response(
        GenerationsOut(
            active_generation_id=active,
            generations=[GenerationOut.of(g, g.id == active) for g in generations],
        )
    )


async def get_generation(request: web.Request) -> web.Response:
    generation, active, searches = await request.app[keys.KNOWLEDGE].generations.get_generation(
        _generation_id(request)
    )
    return model_response(GenerationOut.of(generation, active, searches))


async def activate_generation(request: web.Request) -> web.Response:
    service = request.app[keys.KNOWLEDGE].generations
    await service.activate(_generation_id(request))
    generation, active, searches = await service.get_generation(_generation_id(request))
    return model_response(GenerationOut.of(generation, active, searches))


async def evaluate_generation(request: web.Request) -> web.Response:
    metrics = await request.app[keys.KNOWLEDGE].evaluation.evaluate(_generation_id(request))
    return model_response(metrics)


async def put_golden_set(request: web.Request) -> web.Response:
    body = await read_json(request, GoldenSetIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    questions = await request.app[keys.KNOWLEDGE].evaluation.set_golden_set(
        [q.to_input() for q in body.questions]
    )
    return model_response(
        GoldenSetOut(questions=[GoldenQuestionIn.model_validate(q.model_dump()) for q in questions])
    )


async def get_golden_set(request: web.Request) -> web.Response:
    questions = await request.app[keys.KNOWLEDGE].evaluation.golden_set()
    return model_response(
        GoldenSetOut(questions=[GoldenQuestionIn.model_validate(q.model_dump()) for q in questions])
    )


async def search(request: web.Request) -> web.Response:
    body = await read_json(request, SearchIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    result = await request.app[keys.KNOWLEDGE].search.search(
        body.query, k=body.k, user_id=principal(request).user.id
    )
    return model_response(
        SearchOut(
            generation_id=result.generation_id,
            results=[
                SearchResultOut(
                    chunk_id=h.chunk_id,
                    text=h.text,
                    score=h.score,
                    channels=[c for c in h.channels if c in ("lexical", "dense")],
                    document_id=h.document_id,
                    version=h.version,
                    page=h.page,
                    page_end=h.page_end,
                )
                for h in result.hits
            ],
            embed_ms=round(result.embed_ms, 3),
            search_ms=round(result.search_ms, 3),
        )
    )


_GEN = {404: "No such generation", 409: "Not ready, or built with another embedder"}

ROUTES = [
    Route(
        "POST",
        f"{API}/generations",
        build_generation,
        WRITE,
        "kb_generation_build",
        "Build an index generation from the current version of every document.",
        TAGS,
        request_model=BuildIn,
        response_model=BuildOut,
        status=202,
        responses={409: "No ingested documents"},
    ),
    Route(
        "GET",
        f"{API}/generations",
        list_generations,
        READ,
        "kb_generations",
        "Index generations, newest first, with the active one marked.",
        TAGS,
        response_model=GenerationsOut,
    ),
    Route(
        "GET",
        f"{API}/generations/{{generation_id}}",
        get_generation,
        READ,
        "kb_generation",
        "One generation: documents, chunk count, embedder, evaluation and search figures.",
        TAGS,
        response_model=GenerationOut,
        responses={404: "No such generation"},
    ),
    Route(
        "POST",
        f"{API}/generations/{{generation_id}}/activate",
        activate_generation,
        WRITE,
        "kb_generation_activate",
        "Make searches use this generation (atomic switch; an older one = rollback).",
        TAGS,
        response_model=GenerationOut,
        responses=_GEN,
    ),
    Route(
        "POST",
        f"{API}/generations/{{generation_id}}/evaluate",
        evaluate_generation,
        WRITE,
        "kb_generation_evaluate",
        "Score the generation on the golden set (hit rate, recall@k, MRR) and store it.",
        TAGS,
        response_model=GoldenMetrics,
        responses={**_GEN, 409: "Not ready, or the golden set is empty"},
    ),
    Route(
        "PUT",
        f"{API}/golden-set",
        put_golden_set,
        WRITE,
        "kb_golden_set_put",
        "Replace the golden set: questions with the expected document and/or phrase.",
        TAGS,
        request_model=GoldenSetIn,
        response_model=GoldenSetOut,
    ),
    Route(
        "GET",
        f"{API}/golden-set",
        get_golden_set,
        WRITE,
        "kb_golden_set",
        "The golden set.",
        TAGS,
        response_model=GoldenSetOut,
    ),
    Route(
        "POST",
        f"{API}/search",
        search,
        READ,
        "kb_search",
        "Search the active generation; results cite document, version and page.",
        TAGS,
        request_model=SearchIn,
        response_model=SearchOut,
    ),
]
