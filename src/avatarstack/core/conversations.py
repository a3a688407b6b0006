"""Conversations: persisted event streams, the knowledge-grounded answer pipeline, and the
conversation's avatar.

Every server event of a conversation is stored with the next per-conversation ``seq`` *before*
anyone is told about it; then a notice goes out on the topic ``conversation:<id>`` through the
:class:`~avatarstack.ports.broadcast.Broadcaster` (this instance and the others). Connections
never receive event data through the broadcaster: they re-read storage after the last ``seq``
they sent, which makes delivery exactly-once and gap-free across reconnects, restarts and
instances.

Answers are durable jobs (``conversation.answer``): a user message is stored and its answer job
queued in one transaction. The job searches the active knowledge generation, streams the
:class:`~avatarstack.ports.answers.AnswerEngine`'s parts as ``answer.delta`` events and ends with
``answer.completed {text, citations}``; the conversation's avatar speaks each finished sentence.
Every event the job writes carries a deterministic ``client_id`` (``answer:<seq>:…``), so a job
retried after its instance died continues without duplicating what was already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field

from avatarstack.core.avatars import LIVE, AvatarService, Renewal
from avatarstack.core.jobs import JobContext, new_job
from avatarstack.core.knowledge import SearchService
from avatarstack.ports.answers import (
    NO_ANSWER,
    AnswerEngine,
    AnswerRequest,
    Citation,
    Passage,
)
from avatarstack.ports.avatar import AvatarEvent, SessionRequest
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    FieldError,
    InvalidInputError,
    NoAvatarViewError,
    NotFoundError,
)
from avatarstack.ports.storage import (
    AvatarSession,
    AvatarUnitOfWork,
    Conversation,
    ConversationEvent,
    ConversationUnitOfWork,
    Job,
    JobUnitOfWork,
    new_id,
)

__all__ = [
    "ANSWER_JOB",
    "ConversationConfig",
    "ConversationService",
    "ConversationServiceStorage",
    "ConversationServiceUnitOfWork",
    "conversation_topic",
    "user_topic",
]

log = structlog.get_logger("avatarstack.conversations")


class ConversationServiceUnitOfWork(
    ConversationUnitOfWork, AvatarUnitOfWork, JobUnitOfWork, Protocol
):
    """The conversation log, the avatar sessions (renewals read the session they renew) and
    the job queue (answers are enqueued with the question that asks them)."""


class ConversationServiceStorage(Protocol):
    """What :class:`ConversationService` needs of a storage (a full ``Storage`` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[ConversationServiceUnitOfWork]: ...


ANSWER_JOB = "conversation.answer"
MAX_MESSAGE_CHARS = 4000
MAX_CLIENT_ID = 100
#: said when an answer failed for good (the engine and its fallback, or the search, are down)
UNAVAILABLE = "Sorry, I cannot answer right now. Please try again in a moment."
#: how many recent events an answer or an interrupt looks at (history, running answers): the
#: cost of a turn must not grow with the conversation
WINDOW = 200
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


def conversation_topic(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


def avatar_events_topic(session_id: str) -> str:
    """Where browsers' reports of an avatar session's events go (to the instance following
    the session)."""
    return f"avatar-events:{session_id}"


def user_topic(user_id: str) -> str:
    return f"user:{user_id}"


class ConversationConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: search results handed to the engine
    passages: int = Field(default=5, ge=1)
    #: results below this cosine score are not relevant
    min_score: float = 0.15
    #: earlier turns given to the engine
    history_turns: int = Field(default=6, ge=0)
    #: a worker that dies mid-answer: another instance resumes the answer after this
    answer_attempts: int = Field(default=3, ge=1)


class ConversationService:
    """Use cases of conversations; one per application."""

    def __init__(
        self,
        storage: ConversationServiceStorage,
        clock: Clock,
        broadcaster: Broadcaster,
        knowledge: SearchService,
        engine: AnswerEngine,
        avatars: AvatarService,
        *,
        config: ConversationConfig | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._broadcaster = broadcaster
        self._knowledge = knowledge
        self._engine = engine
        self._avatars = avatars
        self.config = config or ConversationConfig()
        self._job_listeners: list[Callable[[Job], None]] = []
        #: avatar event relays run by this instance, by avatar session id
        self._relays: dict[str, asyncio.Task[None]] = {}

    @property
    def broadcaster(self) -> Broadcaster:
        return self._broadcaster

    def on_job_queued(self, listener: Callable[[Job], None]) -> None:
        self._job_listeners.append(listener)

    def job_handlers(
        self,
    ) -> dict[str, Callable[[JobContext], Awaitable[Mapping[str, Any] | None]]]:
        return {ANSWER_JOB: self.run_answer}

    # ------------------------------------------------------------------ conversations

    async def open(self, user_id: str, conversation_id: str | None = None) -> Conversation:
        """The user's conversation ``conversation_id``, or a new one."""
        if conversation_id is not None:
            return await self.get(user_id, conversation_id)
        now = self._clock.now()
        conversation = Conversation(id=new_id(), user_id=user_id, created_at=now, updated_at=now)
        async with self._storage.unit_of_work() as uow:
            await uow.conversations.add(conversation)
            await uow.commit()
        log.info("conversation.created", conversation_id=conversation.id, user_id=user_id)
        return conversation

    async def get(self, user_id: str, conversation_id: str) -> Conversation:
        async with self._storage.unit_of_work() as uow:
            conversation = await uow.conversations.get(conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise NotFoundError("no such conversation")
        return conversation

    async def list_conversations(
        self, user_id: str, *, limit: int = 50, offset: int = 0
    ) -> list[Conversation]:
        async with self._storage.unit_of_work() as uow:
            return list(await uow.conversations.list_for_user(user_id, limit=limit, offset=offset))

    async def events(
        self, user_id: str, conversation_id: str, *, after_seq: int = 0, limit: int = 500
    ) -> tuple[Conversation, list[ConversationEvent]]:
        """Events after ``after_seq`` (0 = from the start); InvalidInputError for a negative
        one or one beyond the last event."""
        conversation = await self.get(user_id, conversation_id)
        check_after_seq(after_seq, conversation.last_seq)
        async with self._storage.unit_of_work() as uow:
            events = list(
                await uow.conversations.list_events(
                    conversation_id, after_seq=after_seq, limit=limit
                )
            )
        return conversation, events

    async def read_after(
        self, conversation_id: str, after_seq: int, limit: int = 200
    ) -> list[ConversationEvent]:
        """Events after ``after_seq`` without an owner check (the caller already did it)."""
        async with self._storage.unit_of_work() as uow:
            return list(
                await uow.conversations.list_events(
                    conversation_id, after_seq=after_seq, limit=limit
                )
            )

    async def append(
        self,
        conversation_id: str,
        type_: str,
        data: Mapping[str, Any],
        *,
        client_id: str | None = None,
    ) -> ConversationEvent:
        """Persist an event with the next seq, then notify every watcher."""
        async with self._storage.unit_of_work() as uow:
            event = await uow.conversations.append_event(
                conversation_id, type_, data, self._clock.now(), client_id=client_id
            )
            await uow.commit()
        await self._notify(conversation_id, event.seq)
        return event

    async def _notify(self, conversation_id: str, seq: int) -> None:
        try:
            await self._broadcaster.publish(conversation_topic(conversation_id), {"seq": seq})
        except AvatarstackError as exc:  # storage has it; watchers catch up on their next read
            log.warning(
                "conversation.notify_failed", conversation_id=conversation_id, error=exc.code
            )

    # ------------------------------------------------------------------ messages and answers

    async def post_message(
        self, user_id: str, conversation_id: str, client_id: str, text: str
    ) -> tuple[ConversationEvent, bool]:
        """Store the user's message and queue its answer, in one transaction. A retry with the
        same ``client_id`` returns the stored message (``False``) and queues nothing."""
        body = " ".join(text.split()) if text else ""
        errors: list[FieldError] = []
        if not body:
            errors.append(FieldError(field="data.text", message="empty"))
        elif len(body) > MAX_MESSAGE_CHARS:
            errors.append(
                FieldError(field="data.text", message=f"longer than {MAX_MESSAGE_CHARS} characters")
            )
        if not client_id or len(client_id) > MAX_CLIENT_ID or not client_id.isprintable():
            errors.append(
                FieldError(
                    field="data.client_id", message=f"1 to {MAX_CLIENT_ID} printable characters"
                )
            )
        if errors:
            raise InvalidInputError("the message is invalid", errors)
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            before = await uow.conversations.get(conversation_id)
            if before is None or before.user_id != user_id:
                raise NotFoundError("no such conversation")
            event = await uow.conversations.append_event(
                conversation_id,
                "message.created",
                {"role": "user", "text": body, "client_id": client_id},
                now,
                client_id=f"user:{client_id}",
            )
            job: Job | None = None
            if event.seq > before.last_seq:  # new; a retry gets the stored event back
                job = new_job(
                    ANSWER_JOB,
                    {"conversation_id": conversation_id, "message_seq": event.seq},
                    now,
                    owner_id=user_id,
                    max_attempts=self.config.answer_attempts,
                )
                await uow.jobs.enqueue(job)
            await uow.commit()
        if job is None:
            return event, False
        for listener in self._job_listeners:  # wake a worker first, then the sockets
            listener(job)
        await self._notify(conversation_id, event.seq)
        return event, True

    async def run_answer(self, ctx: JobContext) -> Mapping[str, Any]:
        """The answer job: search, stream the engine's parts as events, complete, speak."""
        conversation_id = str(ctx.job.payload["conversation_id"])
        seq = int(ctx.job.payload["message_seq"])
        # subscribe before reading: an interrupt stored after the read still arrives
        watcher = self._broadcaster.subscribe(conversation_topic(conversation_id))
        try:
            return await self._answer(conversation_id, seq, watcher)
        except Exception as exc:
            if ctx.fails_for_good(exc):  # the user must not wait for an answer forever
                await self.append(
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
        state.avatar = await self.avatar_session(state.user_id, conversation_id)
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
        completed = await self.append(
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
                await self.append(
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
        conversation = await self.get(user_id, conversation_id)
        async with self._storage.unit_of_work() as uow:
            events = list(
                await uow.conversations.list_events(
                    conversation_id, after_seq=max(0, conversation.last_seq - WINDOW), limit=WINDOW
                )
            )
        answered = {e.data.get("reply_to") for e in events if e.type == "answer.completed"}
        running = [e.seq for e in events if e.type == "message.created" and e.seq not in answered]
        for seq in running:
            await self.append(
                conversation_id,
                "answer.interrupted",
                {"reply_to": seq},
                client_id=f"answer:{seq}:interrupted",
            )
            await self._broadcaster.publish(conversation_topic(conversation_id), {"interrupt": seq})
        session = await self.avatar_session(user_id, conversation_id)
        if session is not None:
            with contextlib.suppress(ConflictError, NotFoundError):
                await self._avatars.interrupt(user_id, session.id)

    # ------------------------------------------------------------------ the avatar

    async def avatar_session(self, user_id: str, conversation_id: str) -> AvatarSession | None:
        for session in await self._avatars.list_sessions(user_id, active_only=True):
            if session.status in LIVE and session.data.get("conversation_id") == conversation_id:
                return session
        return None

    async def start_avatar(
        self, user_id: str, conversation_id: str, request: SessionRequest
    ) -> tuple[ConversationEvent, dict[str, Any] | None]:
        """Start (or reuse) the conversation's avatar. Returns the stored ``avatar.session``
        event and the browser's LiveKit credentials, which are never stored."""
        await self.get(user_id, conversation_id)
        existing = await self.avatar_session(user_id, conversation_id)
        if existing is not None:
            event = await self.append(conversation_id, "avatar.session", _session_data(existing))
            return event, None
        started = await self._avatars.start(
            user_id, request, data={"conversation_id": conversation_id}
        )
        event = await self.append(conversation_id, "avatar.session", _session_data(started.session))
        self._relay(user_id, conversation_id, started.session.id)
        livekit = started.livekit.model_dump() if started.livekit else None
        return event, livekit

    async def stop_avatar(self, user_id: str, conversation_id: str) -> None:
        session = await self.avatar_session(user_id, conversation_id)
        if session is None:
            raise ConflictError("this conversation has no running avatar")
        await self._avatars.stop(user_id, session.id)
        stopped = await self._avatars.get(user_id, session.id)
        await self.append(conversation_id, "avatar.session", _session_data(stopped))

    async def renewed(self, renewal: Renewal) -> None:
        """A session was replaced before the vendor's duration cap: record it in its
        conversation and hand the new LiveKit credentials to the owner's sockets (on every
        instance, through the broadcaster; they are never stored)."""
        async with self._storage.unit_of_work() as uow:
            session = await uow.avatar_sessions.get(renewal.session_id)
        if session is None:
            return
        conversation_id = session.data.get("conversation_id")
        if not isinstance(conversation_id, str):
            return
        await self.append(
            conversation_id, "avatar.session", {**_session_data(session), "renewed": True}
        )
        if renewal.livekit is not None:
            await self._broadcaster.publish(
                user_topic(session.owner_id),
                {
                    "credentials": {
                        "conversation_id": conversation_id,
                        "session_id": session.id,
                        "provider_session_id": renewal.new_provider_session_id,
                        "livekit": renewal.livekit.model_dump(),
                    }
                },
            )

    def _relay(self, user_id: str, conversation_id: str, session_id: str) -> None:
        """Store the avatar's speaking/idle events in the conversation while it runs (on the
        instance that started it: vendor events arrive there)."""

        reports = self._broadcaster.subscribe(avatar_events_topic(session_id))

        async def feed() -> None:
            async for notice in reports:
                event = notice.payload.get("event")
                if isinstance(event, dict):
                    with contextlib.suppress(AvatarstackError):
                        await self._avatars.feed(user_id, session_id, event)

        async def relay() -> None:
            feeding = asyncio.create_task(feed(), name=f"avatar-feed-{session_id}")
            try:
                async for event in self._avatars.events(user_id, session_id):
                    await self._record_avatar_event(conversation_id, session_id, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relay must not take the instance down
                log.warning("conversation.avatar_relay_failed", error=str(exc))
            finally:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feeding
                await reports.close()
                self._relays.pop(session_id, None)

        if session_id not in self._relays:
            self._relays[session_id] = asyncio.create_task(
                relay(), name=f"avatar-relay-{session_id}"
            )

    async def _record_avatar_event(
        self, conversation_id: str, session_id: str, event: AvatarEvent
    ) -> None:
        kind = {"speaking": "avatar.speaking", "idle": "avatar.idle"}.get(event.type)
        if kind is None:
            if event.type == "closed":
                await self.append(
                    conversation_id,
                    "avatar.session",
                    {"session_id": session_id, "status": "stopped", "reason": event.reason},
                )
            return
        data: dict[str, Any] = {"session_id": session_id, "task_id": event.task_id}
        if event.duration_seconds is not None:
            data["duration_seconds"] = event.duration_seconds
        if kind == "avatar.speaking" and event.text is not None:
            data["text"] = event.text  # captions
        await self.append(conversation_id, kind, data)

    async def avatar_event(
        self, user_id: str, session_id: str, event: Mapping[str, Any], *, voice_answers: bool
    ) -> ConversationEvent | None:
        """One ``agent-response`` event the owner's browser received from the avatar's room
        (LiveAvatar FULL mode), forwarded verbatim.

        ``avatar.speak_started``/``avatar.speak_ended``/``session.stopped`` go to the instance
        that follows the session's events (through the broadcaster), which records them as
        ``avatar.speaking``/``avatar.idle``/``avatar.session {status: stopped}``. A final
        ``user.transcription`` becomes the user's message (``client_id`` ``voice:<event_id>``:
        the same event forwarded twice, e.g. by two tabs, gives one message and one answer)
        when ``voice_answers`` is on; LiveAvatar's own reply to it is interrupted first.
        Other events are ignored. Returns the stored message, if one was stored."""
        session = await self._avatars.get(user_id, session_id)
        conversation_id = session.data.get("conversation_id")
        kind = event.get("event_type")
        if kind in {"avatar.speak_started", "avatar.speak_ended", "session.stopped"}:
            await self._broadcaster.publish(avatar_events_topic(session_id), {"event": dict(event)})
            return None
        if kind != "user.transcription" or not voice_answers:
            return None
        text, event_id = event.get("text"), event.get("event_id")
        if not isinstance(conversation_id, str) or not isinstance(text, str) or not text.strip():
            return None
        if not isinstance(event_id, str) or not event_id:
            raise InvalidInputError(
                "a user.transcription needs its event_id",
                [FieldError(field="data.event.event_id", message="missing")],
            )
        if session.status in LIVE:
            with contextlib.suppress(AvatarstackError):
                await self._avatars.interrupt(user_id, session_id)
        message, _new = await self.post_message(
            user_id, conversation_id, f"voice:{event_id[: MAX_CLIENT_ID - 6]}", text
        )
        return message

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
                state.avatar = await self.avatar_session(state.user_id, state.conversation_id)
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

    async def close(self) -> None:
        relays = list(self._relays.values())
        for task in relays:
            task.cancel()
        for task in relays:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


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


def check_after_seq(after_seq: int, last_seq: int) -> None:
    if after_seq < 0:
        raise InvalidInputError(
            "after_seq must not be negative", [FieldError(field="after_seq", message="negative")]
        )
    if after_seq > last_seq:
        raise InvalidInputError(
            f"after_seq {after_seq} is beyond the last event ({last_seq})",
            [FieldError(field="after_seq", message=f"beyond the last event ({last_seq})")],
        )


def _session_data(session: AvatarSession) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "provider": session.provider,
        "status": session.status,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
    }


def _sentences(text: str, *, final: bool) -> list[str]:
    """Finished sentences of ``text``; with ``final`` the unfinished tail counts too."""
    parts = _SENTENCE_END.split(text)
    if not final:
        parts = parts[:-1]  # the last piece may still grow
    return [p.strip() for p in parts if p.strip()]
