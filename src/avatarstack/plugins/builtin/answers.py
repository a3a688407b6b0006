"""Built-in plugin: the answer engines ``extractive`` (offline, the default) and ``openai``.

``openai`` talks to any OpenAI-compatible chat-completions API configured by
``AVATARSTACK_ANSWER__OPENAI__*`` and falls back to ``extractive`` when the API cannot be reached
before it has said anything. Registering creates the objects only: nothing is contacted until
the first answer.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from pydantic import BaseModel

from avatarstack.adapters.answers import ExtractiveAnswerEngine, OpenAIAnswerEngine
from avatarstack.plugins.builtin.settings import OpenAISettings
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.answers import AnswerEngine

#: the hosted API that always needs a key (self-hosted compatible servers often do not)
OPENAI_API_HOST = "api.openai.com"


class AnswersSettings(BaseModel):
    """What this plugin reads: the chosen engine's name and the OpenAI-compatible API."""

    engine: str
    openai: OpenAISettings


#: handed to the hook below as ``settings``, from ``AVATARSTACK_ANSWER__ENGINE`` and
#: ``AVATARSTACK_ANSWER__OPENAI__*``; nothing else
settings_model = AnswersSettings
settings_section = {"engine": "answer.engine", "openai": "answer.openai"}


@hookimpl
def register_answer_engines(
    register: Callable[[AnswerEngine], None], settings: AnswersSettings
) -> None:
    extractive = ExtractiveAnswerEngine()
    register(extractive)
    openai = settings.openai
    api_key = openai.api_key.get_secret_value() if openai.api_key is not None else None
    if (
        settings.engine == "openai"
        and not api_key
        and urlsplit(openai.base_url).hostname == OPENAI_API_HOST
    ):
        raise ValueError(
            "AVATARSTACK_ANSWER__OPENAI__API_KEY must be set when AVATARSTACK_ANSWER__ENGINE is "
            f"'openai' and the base URL is {OPENAI_API_HOST}"
        )
    register(
        OpenAIAnswerEngine(
            openai.base_url,
            api_key,
            openai.model,
            timeout_seconds=openai.timeout_seconds,
            temperature=openai.temperature,
            fallback=extractive,
        )
    )
