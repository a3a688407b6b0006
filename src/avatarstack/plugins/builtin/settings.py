"""The settings sections the built-in vendor plugins read, each handed to its plugin alone.

They are part of :class:`avatarstack.bootstrap.settings.Settings` (``AVATARSTACK_OAUTH__GOOGLE__*``,
``AVATARSTACK_OAUTH__GITHUB__*``, ``AVATARSTACK_AVATAR__HEYGEN__*``,
``AVATARSTACK_AVATAR__LIVEAVATAR__*``, ``AVATARSTACK_ANSWER__OPENAI__*``) but defined here, so
that a plugin names the model it receives without importing the composition root.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class GoogleSettings(BaseModel):
    client_id: str | None = Field(None, description="Enables Google sign-in when set.")
    client_secret: SecretStr | None = Field(None, description="Google OAuth client secret.")
    server_metadata_url: str = Field(
        "https://accounts.google.com/.well-known/openid-configuration",
        description="OpenID discovery document.",
    )


class GitHubSettings(BaseModel):
    client_id: str | None = Field(None, description="Enables GitHub sign-in when set.")
    client_secret: SecretStr | None = Field(None, description="GitHub OAuth client secret.")
    authorize_url: str = Field(
        "https://github.com/login/oauth/authorize", description="Authorization endpoint."
    )
    token_url: str = Field(
        "https://github.com/login/oauth/access_token", description="Token endpoint."
    )
    api_base_url: str = Field("https://api.github.com", description="REST API base URL.")


class HeyGenSettings(BaseModel):
    api_key: SecretStr | None = Field(None, description="HeyGen API key (legacy API).")
    base_url: str = Field("https://api.heygen.com", description="HeyGen API base URL.")


class LiveAvatarSettings(BaseModel):
    api_key: SecretStr | None = Field(None, description="LiveAvatar API key.")
    base_url: str = Field("https://api.liveavatar.com", description="LiveAvatar API base URL.")
    context_id: str | None = Field(
        None, description="LiveAvatar context (persona prompt) used by `talk` in FULL mode."
    )
    sandbox: bool = Field(False, description="Free sandbox sessions (Wayne avatar, ~60 s).")
    voice_answers: Literal["knowledge", "liveavatar"] = Field(
        "knowledge",
        description="Who answers the user's speech: `knowledge` (it becomes a user message "
        "answered from the knowledge base; LiveAvatar's own reply is interrupted) or "
        "`liveavatar` (LiveAvatar's LLM answers with its context; transcriptions are ignored).",
    )


class OpenAISettings(BaseModel):
    base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible base URL.")
    api_key: SecretStr | None = Field(None, description="API key for the chat endpoint.")
    model: str = Field("gpt-4o-mini", description="Chat model name.")
    timeout_seconds: float = Field(
        30.0, gt=0, description="Whole-answer limit; the first token must come within a third."
    )
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature.")
