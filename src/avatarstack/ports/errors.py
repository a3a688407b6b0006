"""Error types shared by the core and every adapter.

Adapters translate library exceptions into these (``raise ... from exc``); the HTTP error
middleware maps each class to one RFC 9457 problem type, so no handler maps errors itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: ``field`` is a dotted path, ``message`` says why. The core names the
    field as it knows it (``email``, ``questions.2.question``); an adapter that read it from
    a request adds where (``body.email``: ``adapters/http/body.fields_in``)."""

    field: str
    message: str


class AvatarstackError(Exception):
    """Base of every error the framework raises on purpose.

    ``code`` is a stable slug (it ends the problem ``type`` URI); ``detail`` is the sentence a
    person reads. Neither may contain secrets.
    """

    code = "error"
    title = "Error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)


class InvalidInputError(AvatarstackError):
    """The request is well-formed but its content is invalid (HTTP 422)."""

    code = "validation-error"
    title = "Invalid input"

    def __init__(self, detail: str | None = None, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = list(errors or [])


class MalformedRequestError(AvatarstackError):
    """The request cannot be parsed at all, e.g. broken JSON (HTTP 400)."""

    code = "malformed-request"
    title = "Malformed request"


class UnsupportedMediaTypeError(AvatarstackError):
    """The request body has a media type the route does not accept (HTTP 415)."""

    code = "unsupported-media-type"
    title = "Unsupported media type"


class AuthenticationError(AvatarstackError):
    """Missing or invalid credentials (HTTP 401)."""

    code = "unauthenticated"
    title = "Authentication required"


class SessionEndedError(AuthenticationError):
    """The token is well formed but its session was revoked or ended (HTTP 401 with the same
    problem type as any other authentication failure; a realtime connection closes with
    4403)."""


class PermissionDeniedError(AvatarstackError):
    """Authenticated but not allowed (HTTP 403)."""

    code = "forbidden"
    title = "Forbidden"


class EmailNotVerifiedError(PermissionDeniedError):
    """The password was right but the e-mail address is not verified yet (HTTP 403)."""

    code = "email-not-verified"
    title = "E-mail address not verified"


class InvalidTokenError(AvatarstackError):
    """A one-time token (verification, reset, login code) is unknown, used or expired (400)."""

    code = "invalid-token"
    title = "Invalid or expired token"


class NotFoundError(AvatarstackError):
    """The addressed thing does not exist or is not visible to the caller (HTTP 404)."""

    code = "not-found"
    title = "Not found"


class ConflictError(AvatarstackError):
    """The request conflicts with the current state, e.g. a duplicate key (HTTP 409)."""

    code = "conflict"
    title = "Conflict"


class NoAvatarViewError(ConflictError):
    """A command for an avatar whose commands travel through its owner's browser (LiveAvatar
    FULL mode), while no browser of the owner has joined the avatar's room (HTTP 409)."""

    code = "avatar-not-attached"
    title = "No browser is connected to the avatar"


class IndexInUseError(ConflictError):
    """An embedded vector index is held by another process (a running server): this process
    may not open it (HTTP 409)."""

    code = "index-in-use"
    title = "The knowledge index is in use"

    def __init__(self, detail: str | None = None, *, holder: str | None = None) -> None:
        super().__init__(detail)
        #: who holds the index (``pid N``), when known
        self.holder = holder


class RateLimitedError(AvatarstackError):
    """Too many requests; ``retry_after`` is in seconds (HTTP 429)."""

    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UnavailableError(AvatarstackError):
    """A dependency we need is down; retrying later may work (HTTP 503)."""

    code = "service-unavailable"
    title = "Service unavailable"


class StorageError(AvatarstackError):
    """A storage operation failed for a reason other than availability."""

    code = "storage-error"
    title = "Storage error"


class StorageUnavailableError(UnavailableError):
    """The database cannot be reached (down, starting, pool exhausted past its timeout)."""

    code = "storage-unavailable"
    title = "Storage unavailable"


class DuplicateError(ConflictError):
    """A row with the same unique key already exists."""

    code = "duplicate"
    title = "Already exists"


class UpstreamError(AvatarstackError):
    """An external service answered with an error we cannot fix by retrying (HTTP 502)."""

    code = "upstream-error"
    title = "Upstream service error"
