"""Realtime and conversation wiring: the broadcaster, the answer engines, the conversation
settings."""

from __future__ import annotations

from avatarstack.adapters.broadcast import LocalBroadcaster
from avatarstack.adapters.postgres.broadcast import PostgresBroadcaster
from avatarstack.bootstrap.settings import Settings
from avatarstack.bootstrap.wiring.choosing import pick
from avatarstack.core.conversations import ConversationConfig
from avatarstack.plugins.manager import PluginManager, collect
from avatarstack.ports.answers import AnswerEngine
from avatarstack.ports.broadcast import Broadcaster


def make_broadcaster(settings: Settings) -> Broadcaster:
    """LISTEN/NOTIFY between the instances sharing a PostgreSQL database; in-process
    otherwise (SQLite and memory storage serve one process)."""
    if settings.storage_backend == "postgres":
        return PostgresBroadcaster(
            settings.resolved_database_url, listen_url=settings.database.listen_url
        )
    return LocalBroadcaster()


def several_instances(settings: Settings) -> bool:
    """Instances share work (and avatar commands) only through PostgreSQL."""
    return settings.storage_backend == "postgres"


def collect_answer_engines(pm: PluginManager, settings: Settings) -> dict[str, AnswerEngine]:
    found: dict[str, AnswerEngine] = collect(
        pm, "register_answer_engines", key=lambda e: e.name, kind="answer engine", settings=settings
    )
    return found


def pick_answer_engine(available: dict[str, AnswerEngine], settings: Settings) -> AnswerEngine:
    return pick(available, settings.answer.engine, "AVATARSTACK_ANSWER__ENGINE")


def make_conversation_config(settings: Settings) -> ConversationConfig:
    return ConversationConfig(
        passages=settings.answer.passages, min_score=settings.answer.min_score
    )
