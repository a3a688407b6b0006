"""Forged, confused and tampered access tokens, and refresh-token reuse, against a real server.

Each case of :data:`TOKEN_ATTACKS` changes one thing about a real member token (a copy signed
correctly with the server's key is accepted, which shows the forging machinery is right) and
states what the server must answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest
from security_kit import (
    API,
    REFRESH_GRACE_SECONDS,
    SECRET_KEY,
    assert_problem,
    bearer,
    login,
    password_of,
)

from avatarstack.testkit.serve import ServedApp

KID = hashlib.sha256(SECRET_KEY.encode()).hexdigest()[:12]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(
    header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    """A JWT assembled by hand, so nothing (no library check) stands between us and the bytes."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hmac_with(key: str, digest: Any = hashlib.sha256) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(key.encode(), data, digest).digest()


def hs256(claims: dict[str, Any], **header: Any) -> str:
    return raw_token(
        {"alg": "HS256", "typ": "JWT", "kid": KID, **header}, claims, hmac_with(SECRET_KEY)
    )


def swap_payload(token: str, claims: dict[str, Any]) -> str:
    """``token`` with its payload replaced and its original signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


@dataclass(frozen=True)
class TokenAttack:
    name: str
    #: (a real member token, its claims) → the token to present
    forge: Callable[[str, dict[str, Any]], str]
    status: int
    #: the route presented to (admin routes for escalation attempts)
    path: str = f"{API}/users/me"


def _shift(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**claims, **changes}


NOW = int(time.time())

TOKEN_ATTACKS = [
    TokenAttack(
        "control: a faithful copy signed with the server's key", lambda t, c: hs256(c), 200
    ),
    TokenAttack(
        "alg none, no signature",
        lambda t, c: raw_token({"alg": "none", "typ": "JWT", "kid": KID}, c, lambda _: b""),
        401,
    ),
    TokenAttack(
        "alg None (capitalised), original signature",
        lambda t, c: (
            f"{b64(json.dumps({'alg': 'None', 'kid': KID}).encode())}.{t.split('.', 1)[1]}"
        ),
        401,
    ),
    TokenAttack(
        "alg confusion: HS512 with the same secret",
        lambda t, c: raw_token(
            {"alg": "HS512", "typ": "JWT", "kid": KID}, c, hmac_with(SECRET_KEY, hashlib.sha512)
        ),
        401,
    ),
    TokenAttack(
        "alg confusion: RS256 header over an HMAC signature",
        lambda t, c: raw_token(
            {"alg": "RS256", "typ": "JWT", "kid": KID}, c, hmac_with(SECRET_KEY)
        ),
        401,
    ),
    TokenAttack(
        "key confusion: signed with the public key id as the secret",
        lambda t, c: raw_token({"alg": "HS256", "typ": "JWT", "kid": KID}, c, hmac_with(KID)),
        401,
    ),
    TokenAttack(
        "signed with another secret under the real key id",
        lambda t, c: raw_token(
            {"alg": "HS256", "typ": "JWT", "kid": KID}, c, hmac_with("another secret " * 4)
        ),
        401,
    ),
    TokenAttack("an unknown key id", lambda t, c: hs256(c, kid="000000000000"), 401),
    TokenAttack(
        "no key id", lambda t, c: raw_token({"alg": "HS256"}, c, hmac_with(SECRET_KEY)), 401
    ),
    TokenAttack(
        "an embedded jwk header carrying the attacker's own key",
        lambda t, c: raw_token(
            {"alg": "HS256", "kid": KID, "jwk": {"kty": "oct", "k": b64(b"x" * 32)}},
            c,
            hmac_with("x" * 32),
        ),
        401,
    ),
    TokenAttack(
        "tampered claims: roles raised to admin, original signature",
        lambda t, c: swap_payload(t, _shift(c, roles=["admin"])),
        401,
        f"{API}/admin/users",
    ),
    TokenAttack(
        "tampered claims: a longer expiry, original signature",
        lambda t, c: swap_payload(t, _shift(c, exp=c["exp"] + 86400)),
        401,
    ),
    TokenAttack(
        "signed roles claim is not trusted: the user's stored roles decide",
        lambda t, c: hs256(_shift(c, roles=["admin"])),
        403,
        f"{API}/admin/users",
    ),
    TokenAttack(
        "expired",
        lambda t, c: hs256(_shift(c, iat=NOW - 7200, nbf=NOW - 7200, exp=NOW - 3600)),
        401,
    ),
    TokenAttack(
        "not yet valid (nbf in an hour)", lambda t, c: hs256(_shift(c, nbf=NOW + 3600)), 401
    ),
    TokenAttack(
        "issued in the future (iat in an hour)", lambda t, c: hs256(_shift(c, iat=NOW + 3600)), 401
    ),
    TokenAttack("another audience", lambda t, c: hs256(_shift(c, aud="someone-else")), 401),
    TokenAttack(
        "an audience list with ours in it", lambda t, c: hs256(_shift(c, aud=[c["aud"], "x"])), 401
    ),
    TokenAttack("another issuer", lambda t, c: hs256(_shift(c, iss="https://evil.example")), 401),
    TokenAttack(
        "no session id claim",
        lambda t, c: hs256({k: v for k, v in c.items() if k != "sid"}),
        401,
    ),
    TokenAttack("a session id that does not exist", lambda t, c: hs256(_shift(c, sid="nope")), 401),
    TokenAttack("exp as a string", lambda t, c: hs256(_shift(c, exp=str(c["exp"]))), 401),
    TokenAttack("sub as a number", lambda t, c: hs256(_shift(c, sub=12345)), 401),
    TokenAttack("7 KiB of padding", lambda t, c: t + "A" * 7000, 401),
    TokenAttack("not a JWT at all", lambda t, c: "not-a-jwt", 401),
    TokenAttack("two segments", lambda t, c: ".".join(t.split(".")[:2]), 401),
]


@pytest.fixture
async def member_token(server: ServedApp, tokens: dict[str, str]) -> tuple[str, dict[str, Any]]:
    token = tokens["member"]
    return token, jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("attack", TOKEN_ATTACKS, ids=lambda a: a.name)
async def test_a_forged_or_tampered_access_token_is_refused(
    attack: TokenAttack, http: aiohttp.ClientSession, member_token: tuple[str, dict[str, Any]]
) -> None:
    token, claims = member_token
    response = await http.get(attack.path, headers=bearer(attack.forge(token, claims)))
    if attack.status < 400:
        assert response.status == attack.status, await response.text()
        return
    problem = await assert_problem(response, attack.status)
    if attack.status == 401:
        assert problem["type"].endswith(":unauthenticated")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_access_token_of_a_logged_out_session_is_refused(
    server: ServedApp, http: aiohttp.ClientSession
) -> None:
    server.create_user("leaver@security.example.com", password_of("leaver@security.example.com"))
    session = await login(http, "leaver@security.example.com")
    headers = bearer(session["access_token"])
    assert (await http.get(f"{API}/users/me", headers=headers)).status == 200
    assert (await http.post(f"{API}/auth/logout", headers=headers)).status == 204
    await assert_problem(await http.get(f"{API}/users/me", headers=headers), 401)


async def test_refresh_token_reuse_revokes_the_whole_family(
    server: ServedApp, http: aiohttp.ClientSession
) -> None:
    email = "reuser@security.example.com"
    server.create_user(email, password_of(email), "member")
    first = await login(http, email)
    rotated = await http.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status == 200, await rotated.text()
    second = await rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    await _after_the_grace_window()
    # the stolen, already-used token comes back: refused, and the thief's find ends the family
    await assert_problem(
        await http.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        401,
    )
    await assert_problem(
        await http.post(f"{API}/auth/refresh", json={"refresh_token": second["refresh_token"]}),
        401,
    )
    await assert_problem(
        await http.get(f"{API}/users/me", headers=bearer(second["access_token"])), 401
    )


async def _after_the_grace_window() -> None:
    """Concurrent refreshes get a short grace window (finding 8); real reuse comes later."""
    if REFRESH_GRACE_SECONDS:
        await asyncio.sleep(REFRESH_GRACE_SECONDS + 0.5)
