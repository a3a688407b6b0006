"""The answer-engine port: a question plus retrieved passages in, a streamed cited answer out.

The conversation pipeline searches the active knowledge index, keeps the passages above its
relevance threshold and asks an ``AnswerEngine`` to answer from them; the avatar speaks the answer
sentence by sentence while it streams. Engines are plugins (``register_answer_engines``); the
default (``extractive``) works offline and never invents anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from pydantic import BaseModel, ConfigDict, field_validator

#: the whole answer when nothing relevant was found: said plainly, never a guess
NO_ANSWER = "I could not find anything about that in the knowledge base."

#: the roles a history turn may have
HISTORY_ROLES = ("user", "assistant")


class Passage(BaseModel):
    """One retrieved chunk of the knowledge base."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    document_id: str
    version: int
    page: int
    text: str
    #: relevance to the question from the search (fused or cosine), higher is better
    score: float
    #: the document's title and the chunk's section heading: what the passage is about (a
    #: product name, a section), which its sentences may not repeat
    title: str = ""
    heading: str | None = None


class Citation(BaseModel):
    """Where a statement of the answer comes from: one passage, by its chunk and page."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    version: int
    page: int
    chunk_id: str

    @classmethod
    def of(cls, passage: Passage) -> Citation:
        return cls(
            document_id=passage.document_id,
            version=passage.version,
            page=passage.page,
            chunk_id=passage.chunk_id,
        )


class AnswerPart(BaseModel):
    """The next piece of a streamed answer."""

    model_config = ConfigDict(frozen=True)

    #: the next piece of the answer text (may be empty, e.g. a part that only cites)
    text: str = ""
    #: citations supported by the text so far that no earlier part carried (new ones only)
    citations: tuple[Citation, ...] = ()


class AnswerRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    question: str
    #: best first, already filtered by the relevance threshold; may be empty
    passages: tuple[Passage, ...]
    #: the language to answer in (a BCP 47 tag such as ``"en"`` or ``"fr-CA"``); None: the
    #: question's language
    language: str | None = None
    #: earlier turns, oldest first, as ``(role, text)`` with role ``"user"`` or ``"assistant"``
    history: tuple[tuple[str, str], ...] = ()

    @field_validator("history")
    @classmethod
    def _known_roles(cls, history: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for role, _ in history:
            if role not in HISTORY_ROLES:
                raise ValueError(f"history roles must be 'user' or 'assistant', not {role!r}")
        return history


class AnswerEngine(Protocol):
    """Answers a question from the passages it is given, and only from them.

    Contract every engine follows:

    * The concatenation of the ``text`` of all parts is the answer. Parts arrive as soon as the
      engine has them, so the caller can speak the first sentence while the rest streams.
    * Every citation references one of ``request.passages`` and is reported once, in the first
      part whose text (so far) it supports.
    * With no passages, or when the passages do not contain the answer, the answer says so
      plainly (:data:`NO_ANSWER` when the engine cannot phrase it itself); an engine never guesses.
    * Stopping early is normal (the user interrupted): the caller closes the iterator
      (``aclose()``; engines implement ``answer`` as an async generator) or cancels the task
      iterating it. Either must stop the work promptly and release what the answer held
      (connections, streams), with no task left behind.
    * Errors are :mod:`avatarstack.ports.errors` types: ``UnavailableError`` when a remote
      model cannot be reached, times out or is overloaded (retrying later may work),
      ``UpstreamError`` when it refuses the request (wrong API key, unknown model, broken
      answer). An engine with a fallback may answer from it instead, as long as it has not
      yielded anything yet.
    """

    #: stable name; ``AVATARSTACK_ANSWER__ENGINE`` picks an engine by it
    name: str

    def answer(self, request: AnswerRequest) -> AsyncIterator[AnswerPart]:
        """The answer as a stream of parts (an async generator)."""
        ...

    async def close(self) -> None:
        """Release what the engine holds (HTTP sessions); calling it twice is harmless."""
