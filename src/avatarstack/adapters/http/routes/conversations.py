"""Conversation history: /api/v1/conversations (the user's own; ``conversations:use``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from avatarstack.adapters.http.auth import principal
from avatarstack.adapters.http.body import Offset, Seq, model_response, path_id, read_query
from avatarstack.adapters.http.realtime.hub import REALTIME
from avatarstack.adapters.http.routing import Route

API = "/api/v1/conversations"
TAGS = ("conversations",)
USE = "conversations:use"


class ConversationOut(BaseModel):
    conversation_id: str
    title: str | None
    last_seq: int
    created_at: datetime
    updated_at: datetime


class ConversationsOut(BaseModel):
    conversations: list[ConversationOut]


class EventOut(BaseModel):
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


class EventsOut(BaseModel):
    conversation_id: str
    last_seq: int
    events: list[EventOut]


class ListQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    offset: Offset = 0


class EventsQuery(BaseModel):
    after_seq: Seq = Field(0, description="Events after this seq (0 = from the start).")
    limit: int = Field(500, ge=1, le=1000)


async def list_conversations(request: web.Request) -> web.Response:
    query = read_query(request, ListQuery)
    items = await request.app[REALTIME].conversations.log.list_conversations(
        principal(request).user.id, limit=query.limit, offset=query.offset
    )
    return model_response(
        ConversationsOut(
            conversations=[
                ConversationOut(
                    conversation_id=c.id,
                    title=c.title,
                    last_seq=c.last_seq,
                    created_at=c.created_at,
                    updated_at=c.updated_at,
                )
                for c in items
            ]
        )
    )


async def list_events(request: web.Request) -> web.Response:
    query = read_query(request, EventsQuery)
    conversation, events = await request.app[REALTIME].conversations.log.events(
        principal(request).user.id,
        path_id(request, "conversation_id", "conversation"),
        after_seq=query.after_seq,
        limit=query.limit,
    )
    return model_response(
        EventsOut(
            conversation_id=conversation.id,
            last_seq=conversation.last_seq,
            events=[
                EventOut(seq=e.seq, type=e.type, data=e.data, created_at=e.created_at)
                for e in events
            ],
        )
    )


ROUTES = [
    Route(
        "GET",
        API,
        list_conversations,
        USE,
        "conversations",
        "Your conversations, most recently active first.",
        TAGS,
        query_model=ListQuery,
        response_model=ConversationsOut,
    ),
    Route(
        "GET",
        f"{API}/{{conversation_id}}/events",
        list_events,
        USE,
        "conversation_events",
        "A conversation's stored events after `after_seq`, ascending (the WebSocket replays "
        "the same).",
        TAGS,
        query_model=EventsQuery,
        response_model=EventsOut,
        responses={404: "No such conversation", 422: "after_seq negative or beyond the last"},
    ),
]
