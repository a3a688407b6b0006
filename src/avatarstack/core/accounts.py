"""Account rules: e-mail normalisation, password policy, roles and permissions, secrets."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Iterable

from avatarstack.ports.errors import FieldError, InvalidInputError

MAX_EMAIL_LENGTH = 254
MIN_PASSWORD_LENGTH = 8
#: argon2 hashes any length, but a 1 MB password is a denial-of-service vector, not a password
MAX_PASSWORD_LENGTH = 1024
MAX_DISPLAY_NAME_LENGTH = 100

_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)

# ----------------------------------------------------------------------------- roles

ADMIN = "admin"
EDITOR = "editor"
MEMBER = "member"
ROLES: tuple[str, ...] = (ADMIN, EDITOR, MEMBER)

_MEMBER_PERMISSIONS = frozenset(
    {"profile:read", "profile:write", "kb:read", "avatar:use", "conversations:use"}
)
_EDITOR_PERMISSIONS = _MEMBER_PERMISSIONS | {"kb:write"}
_ADMIN_PERMISSIONS = _EDITOR_PERMISSIONS | {"users:admin", "audit:read"}

#: what each role may do; routes declare one of these permissions (or public/authenticated)
PERMISSIONS_BY_ROLE: dict[str, frozenset[str]] = {
    MEMBER: _MEMBER_PERMISSIONS,
    EDITOR: _EDITOR_PERMISSIONS,
    ADMIN: _ADMIN_PERMISSIONS,
}
ALL_PERMISSIONS: frozenset[str] = _ADMIN_PERMISSIONS


def permissions_for(roles: Iterable[str]) -> frozenset[str]:
    granted: set[str] = set()
    for role in roles:
        granted |= PERMISSIONS_BY_ROLE.get(role, frozenset())
    return frozenset(granted)


def validate_roles(roles: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(roles)
    if not wanted:
        raise InvalidInputError(
            "a user needs at least one role", [FieldError("roles", "at least one role")]
        )
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise InvalidInputError(
            "unknown roles",
            [
                FieldError("roles", f"unknown role {r!r}; known: {', '.join(ROLES)}")
                for r in unknown
            ],
        )
    return wanted


# ----------------------------------------------------------------------------- input rules


def normalise_email(raw: str) -> str:
    """Canonical form used for lookups and uniqueness: NFKC (folds full-width and other
    compatibility look-alikes), trimmed, lower-cased. Refuses anything that is not a plain
    ``local@domain.tld`` address."""
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email) or ".." in email:
        raise InvalidInputError(
            "invalid e-mail address", [FieldError("email", "not a valid e-mail address")]
        )
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        message = f"use at least {MIN_PASSWORD_LENGTH} characters"
    elif len(password) > MAX_PASSWORD_LENGTH:
        message = f"use at most {MAX_PASSWORD_LENGTH} characters"
    elif not password.strip():
        message = "a password cannot be only white space"
    else:
        return password
    raise InvalidInputError(
        "the password does not meet the policy", [FieldError("password", message)]
    )


def clean_display_name(raw: str | None) -> str | None:
    """Trim, fold to NFC, drop control characters; empty becomes None. Markup is kept as text
    (it is data; every renderer escapes it)."""
    if raw is None:
        return None
    text = unicodedata.normalize("NFC", raw)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    if len(text) > MAX_DISPLAY_NAME_LENGTH:
        raise InvalidInputError(
            "display name too long",
            [FieldError("display_name", f"use at most {MAX_DISPLAY_NAME_LENGTH} characters")],
        )
    return text or None


# ----------------------------------------------------------------------------- secrets


def new_secret() -> str:
    """A random URL-safe token carrying 32 bytes of entropy."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What is stored for a token: its SHA-256, hex. Tokens are high-entropy, so no salt."""
    return hashlib.sha256(secret.encode()).hexdigest()
