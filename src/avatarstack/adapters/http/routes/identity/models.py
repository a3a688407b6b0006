"""The identity routes' request and response models, and what the route modules share."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.body import Offset, RowId
from avatarstack.core.identity import Profile, TokenPair
from avatarstack.ports.storage import AuditEvent, AuthSession

API = "/api/v1"
AUTH = ("auth",)
USERS = ("users",)
ADMIN = ("admin",)

INPUT = {400: "Malformed JSON", 422: "Invalid input", 429: "Too many attempts"}


def body_limit(request: web.Request) -> int:
    """The largest JSON body the routes read."""
    return request.app[keys.CONFIG].max_body_bytes


# ----------------------------------------------------------------------------- models


class IdentityOut(BaseModel):
    id: str
    provider: str
    email: str | None
    created_at: datetime


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str | None
    email_verified: bool
    roles: list[str]
    identities: list[IdentityOut]
    has_password: bool
    created_at: datetime

    @classmethod
    def of(cls, profile: Profile) -> UserOut:
        user = profile.user
        return cls(
            id=user.id,
            email=user.email,
            display_name=user.display_name,
            email_verified=user.email_verified,
            roles=sorted(profile.roles),
            identities=[
                IdentityOut(id=i.id, provider=i.provider, email=i.email, created_at=i.created_at)
                for i in profile.identities
            ],
            has_password=user.password_hash is not None,
            created_at=user.created_at,
        )


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str | None = Field(
        description="The refresh token; null in cookie mode (it is in the HttpOnly cookie)."
    )
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name
    expires_in: int
    user: UserOut

    @classmethod
    def of(cls, pair: TokenPair) -> TokenOut:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            user=UserOut.of(pair.profile),
        )


class RegisterIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    display_name: str | None = Field(None, max_length=1000)


class RegisterOut(BaseModel):
    status: Literal["verification_sent"] = "verification_sent"
    verification_url: str | None = Field(None, description="Development only.")


class TokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=512)


class EmailIn(BaseModel):
    email: str = Field(max_length=320)


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    refresh_cookie: bool = Field(
        False,
        description="Put the refresh token in an HttpOnly cookie instead of the body "
        "(browsers; needs an Origin header of this site).",
    )


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(None, max_length=512)


class ResetIn(BaseModel):
    token: str = Field(min_length=1, max_length=512)
    password: str = Field(max_length=4096)


class ResetOut(BaseModel):
    status: Literal["password_reset"] = "password_reset"


class VerifyOut(BaseModel):
    user: UserOut


class VerifyQuery(BaseModel):
    token: str = Field("", max_length=512)


class ProviderOut(BaseModel):
    name: str
    display_name: str
    authorize_url: str


class ProvidersOut(BaseModel):
    password: bool = True
    oauth: list[ProviderOut]


class AuthorizeQuery(BaseModel):
    redirect_to: str | None = Field(None, max_length=2048)


class CallbackQuery(BaseModel):
    code: str | None = Field(None, max_length=2048)
    state: str | None = Field(None, max_length=512)
    error: str | None = Field(None, max_length=256)


class CodeIn(BaseModel):
    code: str = Field(min_length=1, max_length=512)
    refresh_cookie: bool = Field(
        False, description="Put the refresh token in an HttpOnly cookie (see login)."
    )


class LinkIn(BaseModel):
    redirect_to: str | None = Field(None, max_length=2048)


class LinkOut(BaseModel):
    authorize_url: str


class ProfilePatch(BaseModel):
    display_name: str | None = Field(None, max_length=1000)


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool

    @classmethod
    def of(cls, session: AuthSession, current_id: str) -> SessionOut:
        return cls(
            id=session.id,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            user_agent=session.user_agent,
            ip=session.ip,
            current=session.id == current_id,
        )


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class UsersQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    offset: Offset = 0


class UsersOut(BaseModel):
    users: list[UserOut]
    total: int


class RolesIn(BaseModel):
    roles: list[str] = Field(min_length=1, max_length=10)


class AuditQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    before_id: RowId | None = None
    subject_id: str | None = Field(None, max_length=64, pattern=r"^[\x20-\x7e]*$")


class AuditOut(BaseModel):
    events: list[AuditEvent]
