"""Answer engines: the offline extractive default and any OpenAI-compatible chat model.

``ExtractiveAnswerEngine`` quotes the passages' best-supported sentences; ``OpenAIAnswerEngine``
streams a model's answer from ``POST {base_url}/chat/completions`` and falls back to another
engine (the extractive one in production) when the model cannot be reached before it has said
anything.
"""

from avatarstack.adapters.answers.extractive import ExtractiveAnswerEngine
from avatarstack.adapters.answers.openai import OpenAIAnswerEngine

__all__ = ["ExtractiveAnswerEngine", "OpenAIAnswerEngine"]
