"""The answer job: a knowledge-grounded answer to each user message, spoken by the avatar.

The job (``conversation.answer``, queued with the message) searches the active knowledge
generation, streams the :class:`~avatarstack.ports.answers.AnswerEngine`'s parts as
``answer.delta`` events and ends with ``answer.completed {text, citations}``; the conversation's
avatar speaks each finished sentence. Every event the job writes carries a deterministic
``client_id`` (``answer:<seq>:…``), so a job retried after its instance died continues without
duplicating what was already stored. An interrupt (from any instance) stores
``answer.interrupted`` and stops the stream and the avatar's speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from avatarstack.core.avatars import AvatarService
from avatarstack.core.conversations.avatar import ConversationAvatar
from avatarstack.core.conversations.config import ConversationConfig, ConversationServiceStorage
from avatarstack.core.conversations.log import ANSWER_JOB, ConversationLog
from avatarstack.core.conversations.topics import conversation_topic
from avatarstack.core.jobs import JobContext, JobHandler
from avatarstack.core.knowledge import SearchService
from avatarstack.ports.answers import NO_ANSWER, AnswerEngine, AnswerRequest, Citation, Passage
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    InvalidInputError,
    NoAvatarViewError,
    NotFoundError,
)
from avatarstack.ports.storage import AvatarSession, ConversationEvent

log = structlog.get_logger("avatarstack.conversations")

#: said when an answer failed for good (the engine and its fallback, or the search, are down)
UNAVAILABLE = "Sorry, I cannot answer right now. Please try again in a moment."
#: how many recent events an answer or an interrupt looks at (history, running answers): the
#: cost of a turn must not grow with the conversation
WINDOW = 200
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


class ConversationAnswers:
    """The answer job and the interruption of running answers; one per application."""

    def __init__(
        self,
        storage: ConversationServiceStorage,
        conversation_log: ConversationLog,
        avatar: ConversationAvatar,
        broadcaster: Broadcaster,
        knowledge: SearchService,
        engine: AnswerEngine,
        avatars: AvatarService,
        *,
        config: ConversationConfig | None = None,
    ) -> None:
        self._storage = storage
        self._log = conversation_log
        self._avatar = avatar
        self._broadcaster = broadcaster
        self._knowledge = knowledge
        self._engine = engine
        self._avatars = avatars
        self.config = config or ConversationConfig()

    def job_handlers(self) -> dict[str, JobHandler]:
        return {ANSWER_JOB: self.run}

    async def run(self, ctx: JobContext) -> Mapping[str, Any]:
        """The answer job: search, stream the engine's parts as events, complete, speak."""
        conversation_id = str(ctx.job.payload["conversation_id"])
        seq = int(ctx.job.payload["message_seq"])
        # subscribe before reading: an interrupt stored after the read still arrives
        watcher = self._broadcaster.subscribe(conversation_topic(conversation_id))
        try:
            return await self._answer(conversation_id, seq, watcher)
        except Exception as exc:
            if ctx.fails_for_good(exc):  # the user must not wait for an answer forever
                await self._log.append(
                    conversation_id,
                    "answer.completed",
                    {
                        "reply_to": seq,
                        "text": UNAVAILABLE,
                        "citations": [],
                        "interrupted": False,
                        "error": getattr(exc, "code", "internal-error"),
                    },
                    client_id=f"answer:{seq}:completed",
                )
            raise
        finally:
            await watcher.close()

    async def _answer(self, conversation_id: str, seq: int, watcher: Any) -> Mapping[str, Any]:
        prefix = f"answer:{seq}"
        async with self._storage.unit_of_work() as uow:
            conversation = await uow.conversations.get(conversation_id)
            # the turns before the message (history) and everything stored for it since
            earlier = list(
                await uow.conversations.list_events(
                    conversation_id, after_seq=max(0, seq - WINDOW), limit=100_000
                )
            )
        if conversation is None:
            raise InvalidInputError("the conversation is gone")
        message = next((e for e in earlier if e.seq == seq), None)
        if message is None or message.type != "message.created":
            raise InvalidInputError(f"event {seq} is not a user message")
        done = [e for e in earlier if e.client_id == f"{prefix}:completed"]
        if done:  # a retry after the outcome was stored
            return {"conversation_id": conversation_id, "seq": done[0].seq}
        state = _AnswerState(
            user_id=conversation.user_id,
            conversation_id=conversation_id,
            seq=seq,
            interrupted=_interrupted(earlier, seq),
        )
        stored = [e for e in earlier if (e.client_id or "").startswith(f"{prefix}:delta:")]
        state.resume(stored)
        # the conversation's avatar, looked up once: it speaks every finished sentence
        state.avatar = await self._avatar.session(state.user_id, conversation_id)
        if not state.interrupted:
            request = AnswerRequest(
                question=str(message.data.get("text", "")),
                passages=tuple(await self._passages(str(message.data.get("text", "")), state)),
                history=tuple(self._history(earlier, seq)),
            )
            streaming = asyncio.create_task(self._stream(request, state, len(stored)))
            watching = asyncio.create_task(self._watch(watcher, state, streaming))
            try:
                await streaming
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not state.interrupted or (current is not None and current.cancelling()):
                    raise
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
        if not state.interrupted:
            for sentence in _sentences(state.text, final=True)[state.spoken :]:
                await self._speak(state, sentence)
        if not state.said and state.avatar is not None:  # the user's message is activity too
            with contextlib.suppress(AvatarstackError):
                await self._avatars.touch(state.user_id, state.avatar.id)
        outcome: dict[str, Any] = {
            "reply_to": seq,
            "text": state.text.strip() or NO_ANSWER,
            "citations": [c.model_dump() for c in state.citations.values()],
            "interrupted": state.interrupted,
        }
        if state.avatar_error is not None:
            outcome["avatar_error"] = state.avatar_error
        completed = await self._log.append(
            conversation_id, "answer.completed", outcome, client_id=f"{prefix}:completed"
        )
        log.info(
            "conversation.answered",
            conversation_id=conversation_id,
            seq=seq,
            citations=len(state.citations),
            interrupted=state.interrupted,
        )
        return {"conversation_id": conversation_id, "seq": completed.seq}

    async def _stream(self, request: AnswerRequest, state: _AnswerState, skip: int) -> None:
        """Store each part as an ``answer.delta`` (parts an earlier attempt stored are skipped:
        engines are asked again from the start) and speak each finished sentence."""
        n = 0
        parts = self._engine.answer(request)
        try:
            async for part in parts:
                n += 1
                if n <= skip:
                    continue
                fresh = [c for c in part.citations if c.chunk_id not in state.citations]
                if not part.text and not fresh:
                    continue
                for c in fresh:
                    state.citations[c.chunk_id] = c
                state.text += part.text
                await self._log.append(
                    state.conversation_id,
                    "answer.delta",
                    {
                        "reply_to": state.seq,
                        "text": part.text,
                        "citations": [c.model_dump() for c in fresh],
                    },
                    client_id=f"answer:{state.seq}:delta:{n}",
                )
                sentences = _sentences(state.text, final=False)
                for sentence in sentences[state.spoken :]:
                    await self._speak(state, sentence)
                state.spoken = len(sentences)
        finally:
            close = getattr(parts, "aclose", None)
            if close is not None:  # an interrupted engine stops its work (and HTTP stream) now
                await close()

    async def _watch(
        self, watcher: Any, state: _AnswerState, streaming: asyncio.Task[None]
    ) -> None:
        """Cancel the stream when this answer is interrupted (a notice from any instance, or
        a stored ``answer.interrupted`` found after a resync)."""
        async for notice in watcher:
            hit = notice.payload.get("interrupt") == state.seq
            if not hit and notice.resync:
                async with self._storage.unit_of_work() as uow:
                    events = await uow.conversations.list_events(
                        state.conversation_id, after_seq=state.seq, limit=100_000
                    )
                hit = _interrupted(events, state.seq)
            if hit:
                state.interrupted = True
                streaming.cancel()
                return

    async def _passages(self, question: str, state: _AnswerState) -> list[Passage]:
        result = await self._knowledge.search(
            question, k=self.config.passages, user_id=state.user_id
        )
        state.generation_id = result.generation_id
        return [
            Passage(
                chunk_id=h.chunk_id,
                document_id=h.document_id,
                version=h.version,
                page=h.page,
                text=h.text,
                score=h.score,
                # what the passage is about (a product's name, a section): the engine reads it
                title=h.title,
                heading=h.heading,
            )
            for h in result.hits
            if h.score >= self.config.min_score
        ]

    def _history(self, events: Sequence[ConversationEvent], before: int) -> list[tuple[str, str]]:
        turns: list[tuple[str, str]] = []
        for event in events:
            if event.seq >= before:
                break
            if event.type == "message.created":
                turns.append(("user", str(event.data.get("text", ""))))
            elif event.type == "answer.completed" and not event.data.get("interrupted"):
                turns.append(("assistant", str(event.data.get("text", ""))))
        keep = self.config.history_turns
        return turns[-keep:] if keep else []

    async def interrupt(self, user_id: str, conversation_id: str) -> None:
        """Stop the running answer (on whichever instance runs it) and the avatar's speech."""
        conversation = await self._log.get(user_id, conversation_id)
        async with self._storage.unit_of_work() as uow:
            events = list(
                await uow.conversations.list_events(
                    conversation_id, after_seq=max(0, conversation.last_seq - WINDOW), limit=WINDOW
                )
            )
        answered = {e.data.get("reply_to") for e in events if e.type == "answer.completed"}
        running = [e.seq for e in events if e.type == "message.created" and e.seq not in answered]
        for seq in running:
            await self._log.append(
                conversation_id,
                "answer.interrupted",
                {"reply_to": seq},
                client_id=f"answer:{seq}:interrupted",
            )
            await self._broadcaster.publish(conversation_topic(conversation_id), {"interrupt": seq})
        await self._avatar.interrupt(user_id, conversation_id)

    async def _speak(self, state: _AnswerState, sentence: str) -> None:
        """Have the conversation's avatar say one sentence of the answer. The answer stands
        when the avatar cannot say it; when no browser carries the avatar's commands
        (:class:`NoAvatarViewError`), the rest of the answer is not offered to it either and
        ``answer.completed`` records why (``avatar_error``)."""
        if state.avatar_error is not None:
            return
        session = state.avatar
        if session is None or session.status != "active":
            return
        try:
            try:
                await self._avatars.speak(state.user_id, session.id, sentence, "repeat")
            except NoAvatarViewError:
                raise
            except (ConflictError, NotFoundError):
                # it ended (or was replaced) since the answer began: look again, once
                state.avatar = await self._avatar.session(state.user_id, state.conversation_id)
                if state.avatar is None or state.avatar.id == session.id:
                    state.avatar = None
                    raise
                await self._avatars.speak(state.user_id, state.avatar.id, sentence, "repeat")
            state.said += 1
        except NoAvatarViewError as exc:
            state.avatar_error = exc.code
            log.info("conversation.avatar_not_attached", conversation_id=state.conversation_id)
        except AvatarstackError as exc:  # the answer stands even when the avatar cannot say it
            log.warning(
                "conversation.speak_failed", conversation_id=state.conversation_id, error=exc.code
            )


@dataclass
class _AnswerState:
    user_id: str
    conversation_id: str
    seq: int
    interrupted: bool = False
    text: str = ""
    citations: dict[str, Citation] = field(default_factory=dict)
    #: sentences of ``text`` already sent to the avatar
    spoken: int = 0
    #: why the avatar could not say the answer (an error code), if it could not
    avatar_error: str | None = None
    generation_id: str | None = None
    #: the conversation's live avatar session (looked up once per answer), None without one
    avatar: AvatarSession | None = None
    #: sentences the avatar accepted in this attempt
    said: int = 0

    def resume(self, stored: Sequence[ConversationEvent]) -> None:
        """Continue after the deltas an earlier attempt stored."""
        for event in stored:
            self.text += str(event.data.get("text", ""))
            for raw in event.data.get("citations", []):
                citation = Citation.model_validate(raw)
                self.citations.setdefault(citation.chunk_id, citation)
        self.spoken = len(_sentences(self.text, final=False))


def _interrupted(events: Sequence[ConversationEvent], seq: int) -> bool:
    return any(e.type == "answer.interrupted" and e.data.get("reply_to") == seq for e in events)


def _sentences(text: str, *, final: bool) -> list[str]:
    """Finished sentences of ``text``; with ``final`` the unfinished tail counts too."""
    parts = _SENTENCE_END.split(text)
    if not final:
        parts = parts[:-1]  # the last piece may still grow
    return [p.strip() for p in parts if p.strip()]
