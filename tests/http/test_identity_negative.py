"""Hostile and broken input to the identity routes: every answer is a problem+json 4xx with
the right status and type, never a 5xx.

Forged access tokens are built by hand (PyJWT as a neutral signer, or raw base64) with the
application's real issuer, audience, key id and secret where a forgery needs them; a control
token built the same way with valid claims is accepted, so each rejection is the claim's doing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import jwt
import pytest
from identity_helpers import (
    API,
    BACKENDS,
    NEW_PASSWORD,
    PASSWORD,
    PUBLIC_URL,
    SECRET_KEY,
    Api,
    MakeApi,
    assert_problem,
    claims_of,
    database_settings,
)

from avatarstack.bootstrap.wiring.identity import key_id

KID = key_id(SECRET_KEY)
AUDIENCE = "avatarstack"


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for SQLite, then for PostgreSQL."""
    return await database_settings(request, request.param)


@pytest.fixture
async def any_api(make_api: MakeApi, backend: dict[str, Any]) -> Api:
    """The application on SQLite and on PostgreSQL."""
    return await make_api(**backend)


# =========================================================================== access tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def signed(
    claims: dict[str, Any], *, key: str = SECRET_KEY, kid: str = KID, alg: str = "HS256"
) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def hand_signed(header: dict[str, Any], claims: dict[str, Any], key: str, digest: Any) -> str:
    """A JWS signed with HMAC by hand (PyJWT refuses or warns about some combinations)."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    mac = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(mac)}"


def valid_claims(subject: str, session_id: str, now: datetime, **changes: Any) -> dict[str, Any]:
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": PUBLIC_URL,
        "aud": AUDIENCE,
        "sub": subject,
        "sid": session_id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + 900,
        "jti": secrets.token_urlsafe(8),
        "roles": ["member"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def tamper(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64json(claims)}.{signature}"


@pytest.fixture
async def victim(api: Api) -> dict[str, Any]:
    """A logged-in member: its token pair, with ``sub`` and ``sid`` read from the token."""
    pair = await api.verified_user("victim@example.test")
    claims = claims_of(pair["access_token"])
    return {**pair, "sub": claims["sub"], "sid": claims["sid"]}


Forge = Callable[[dict[str, Any], datetime], str]

FORGERIES: dict[str, Forge] = {
    "alg none": lambda v, now: (
        f"{b64json({'alg': 'none', 'typ': 'JWT', 'kid': KID})}."
        f"{b64json(valid_claims(v['sub'], v['sid'], now))}."
    ),
    "alg None with a signature": lambda v, now: (
        f"{b64json({'alg': 'None', 'kid': KID})}."
        f"{b64json(valid_claims(v['sub'], v['sid'], now))}.{v['access_token'].split('.')[2]}"
    ),
    "HS256 with a wrong key": lambda v, now: signed(
        valid_claims(v["sub"], v["sid"], now), key=secrets.token_urlsafe(48)
    ),
    "HS512 with the right key": lambda v, now: hand_signed(
        {"alg": "HS512", "typ": "JWT", "kid": KID},
        valid_claims(v["sub"], v["sid"], now),
        SECRET_KEY,
        hashlib.sha512,
    ),
    "expired": lambda v, now: signed(
        valid_claims(
            v["sub"],
            v["sid"],
            now,
            iat=int(now.timestamp()) - 1000,
            nbf=int(now.timestamp()) - 1000,
            exp=int(now.timestamp()) - 100,
        )
    ),
    "nbf in the future": lambda v, now: signed(
        valid_claims(v["sub"], v["sid"], now, nbf=int(now.timestamp()) + 3600)
    ),
    "iat in the future": lambda v, now: signed(
        valid_claims(v["sub"], v["sid"], now, iat=int(now.timestamp()) + 3600)
    ),
    "wrong audience": lambda v, now: signed(
        valid_claims(v["sub"], v["sid"], now, aud="someone-else")
    ),
    "audience list": lambda v, now: signed(
        valid_claims(v["sub"], v["sid"], now, aud=[AUDIENCE, "someone-else"])
    ),
    "wrong issuer": lambda v, now: signed(
        valid_claims(v["sub"], v["sid"], now, iss="https://evil.example")
    ),
    "no session claim": lambda v, now: signed(valid_claims(v["sub"], v["sid"], now, sid=None)),
    "no expiry": lambda v, now: signed(valid_claims(v["sub"], v["sid"], now, exp=None)),
    "string expiry": lambda v, now: signed(valid_claims(v["sub"], v["sid"], now, exp="never")),
    "tampered roles": lambda v, now: tamper(v["access_token"], roles=["admin"]),
    "tampered subject": lambda v, now: tamper(v["access_token"], sub="another-user"),
    "tampered expiry": lambda v, now: tamper(v["access_token"], exp=4102444800),
    "unknown kid": lambda v, now: signed(valid_claims(v["sub"], v["sid"], now), kid="retired"),
    "no kid": lambda v, now: jwt.encode(valid_claims(v["sub"], v["sid"], now), SECRET_KEY),
    "unknown session": lambda v, now: signed(
        valid_claims(v["sub"], "00000000-0000-0000-0000-000000000000", now)
    ),
    "unknown user": lambda v, now: signed(
        valid_claims("00000000-0000-0000-0000-000000000000", v["sid"], now)
    ),
    "NUL in the ids": lambda v, now: signed(valid_claims("\x00", "\x00", now)),
    "garbage": lambda v, now: "not-a-token",
    "three empty parts": lambda v, now: "..",
    "random base64": lambda v, now: ".".join(b64url(secrets.token_bytes(30)) for _ in range(3)),
    "a JSON array payload": lambda v, now: (
        f"{b64json({'alg': 'HS256', 'kid': KID})}.{b64url(b'[1]')}.x"
    ),
    "refresh token as access token": lambda v, now: v["refresh_token"],
    "very long": lambda v, now: "a" * 8000,
}


async def test_a_control_token_forged_with_valid_claims_is_accepted(
    api: Api, victim: dict[str, Any]
) -> None:
    claims = valid_claims(victim["sub"], victim["sid"], api.clock.now())
    by_pyjwt = signed(claims)
    by_hand = hand_signed(
        {"alg": "HS256", "typ": "JWT", "kid": KID}, claims, SECRET_KEY, hashlib.sha256
    )

    for token in (by_pyjwt, by_hand):
        response = await api.me(token)
        assert response.status == 200
        assert (await response.json())["email"] == "victim@example.test"


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_a_forged_or_broken_access_token_is_refused(
    api: Api, victim: dict[str, Any], forgery: str
) -> None:
    token = FORGERIES[forgery](victim, api.clock.now())

    for path in ("/users/me", "/admin/audit"):
        response = await api.get(path, token=token)
        await assert_problem(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "Token {token}", "{token}"],
)
async def test_a_request_without_a_bearer_token_is_refused(
    api: Api, victim: dict[str, Any], authorization: str | None
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=victim["access_token"])

    response = await api.client.get(f"{API}/users/me", headers=headers)

    await assert_problem(response, 401, "unauthenticated")


async def test_the_bearer_scheme_name_is_case_insensitive(api: Api, victim: dict[str, Any]) -> None:
    response = await api.client.get(
        f"{API}/users/me", headers={"Authorization": f"bearer {victim['access_token']}"}
    )
    assert response.status == 200


async def test_the_access_token_of_a_logged_out_session_is_refused(
    any_api: Api,
) -> None:
    api = any_api
    pair = await api.verified_user("leaver@example.test")
    assert (await api.post("/auth/logout", token=pair["access_token"])).status == 204

    await assert_problem(await api.me(pair["access_token"]), 401, "unauthenticated")
    await assert_problem(
        await api.post("/auth/logout", token=pair["access_token"]), 401, "unauthenticated"
    )
    await assert_problem(
        await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]}),
        401,
        "unauthenticated",
    )


# =========================================================================== refresh tokens


@pytest.mark.parametrize(
    ("refresh_token", "status", "code"),
    [
        ("x", 401, "unauthenticated"),
        ("A" * 43, 401, "unauthenticated"),
        ("\x00", 401, "unauthenticated"),
        ("", 422, "validation-error"),
        ("x" * 513, 422, "validation-error"),
        (None, 422, "validation-error"),
        (12345, 422, "validation-error"),
        ("\ud800", 422, "validation-error"),
    ],
)
async def test_a_made_up_refresh_token_is_refused(
    api: Api, refresh_token: Any, status: int, code: str
) -> None:
    response = await api.post("/auth/refresh", {"refresh_token": refresh_token})
    await assert_problem(response, status, code)


async def test_a_reused_refresh_token_is_refused_and_ends_the_session(api: Api) -> None:
    pair = await api.verified_user("twice@example.test")
    rotated = await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert rotated.status == 200
    api.clock.advance(seconds=11)  # past the grace window for tabs refreshing at once

    again = await api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})

    await assert_problem(again, 401, "unauthenticated")
    fresh = await rotated.json()
    await assert_problem(await api.me(fresh["access_token"]), 401, "unauthenticated")
    # the access token cannot be used as a refresh token either
    await assert_problem(
        await api.post("/auth/refresh", {"refresh_token": pair["access_token"][:512]}),
        401,
        "unauthenticated",
    )


# =========================================================================== one-time tokens


async def test_a_verification_token_is_single_use_and_only_for_verification(api: Api) -> None:
    email = "purpose@example.test"
    await api.register(email)
    token = api.mail.verification_token(email)

    # presented as a reset token: refused, and not spent by the attempt
    wrong_purpose = await api.post(
        "/auth/password/reset", {"token": token, "password": NEW_PASSWORD}
    )
    await assert_problem(wrong_purpose, 400, "invalid-token")
    assert (await api.post("/auth/verify", {"token": token})).status == 200
    assert (await api.login(email, NEW_PASSWORD)).status == 401

    await assert_problem(await api.post("/auth/verify", {"token": token}), 400, "invalid-token")


async def test_a_reset_token_is_single_use_and_only_for_resets(api: Api) -> None:
    email = "reset@example.test"
    await api.verified(email)
    await api.post("/auth/password/forgot", {"email": email})
    token = api.mail.reset_token(email)

    await assert_problem(await api.post("/auth/verify", {"token": token}), 400, "invalid-token")
    # a password the policy refuses does not spend the token
    await assert_problem(
        await api.post("/auth/password/reset", {"token": token, "password": "short"}),
        422,
        "validation-error",
    )
    assert (
        await api.post("/auth/password/reset", {"token": token, "password": NEW_PASSWORD})
    ).status == 200

    reused = await api.post("/auth/password/reset", {"token": token, "password": "third password!"})
    await assert_problem(reused, 400, "invalid-token")
    assert (await api.login(email, NEW_PASSWORD)).status == 200


async def test_expired_one_time_tokens_are_refused(api: Api) -> None:
    await api.register("late-verify@example.test")
    await api.verified("late-reset@example.test")
    await api.post("/auth/password/forgot", {"email": "late-reset@example.test"})

    api.clock.advance(hours=24)

    verify = await api.post(
        "/auth/verify", {"token": api.mail.verification_token("late-verify@example.test")}
    )
    await assert_problem(verify, 400, "invalid-token")
    reset = await api.post(
        "/auth/password/reset",
        {"token": api.mail.reset_token("late-reset@example.test"), "password": NEW_PASSWORD},
    )
    await assert_problem(reset, 400, "invalid-token")


@pytest.mark.parametrize("token", ["", "x" * 513, None, 7, ["a"], "\ud800"])
async def test_malformed_one_time_tokens_are_invalid_input(api: Api, token: Any) -> None:
    for path in ("/auth/verify", "/auth/password/reset", "/auth/oauth/exchange"):
        body = {"token": token, "password": NEW_PASSWORD, "code": token}
        await assert_problem(await api.post(path, body), 422, "validation-error")


@pytest.mark.parametrize("token", ["made-up", "\x00", "A" * 43])
async def test_unknown_one_time_tokens_are_invalid_tokens(api: Api, token: str) -> None:
    for path in ("/auth/verify", "/auth/password/reset", "/auth/oauth/exchange"):
        body = {"token": token, "password": NEW_PASSWORD, "code": token}
        await assert_problem(await api.post(path, body), 400, "invalid-token")
    link = await api.client.get(
        f"{API}/auth/verify", params={"token": token}, allow_redirects=False
    )
    assert link.headers["Location"] == f"{PUBLIC_URL}/?verify_error=invalid-token"


async def test_a_broken_verification_link_still_lands_on_the_site(api: Api) -> None:
    for query, code in [
        ("", "invalid-token"),
        ("?token=", "invalid-token"),
        ("?token=%00", "invalid-token"),
        (f"?token={'x' * 600}", "validation-error"),
    ]:
        link = await api.client.get(f"{API}/auth/verify{query}", allow_redirects=False)
        assert link.status == 303, query
        assert link.headers["Location"] == f"{PUBLIC_URL}/?verify_error={code}"


# =========================================================================== e-mail addresses


async def test_case_and_unicode_variants_of_an_address_are_one_account(api: Api) -> None:
    await api.verified("admin@x.com")
    account = (await api.login_ok("admin@x.com"))["user"]["id"]

    for variant in (
        "Admin@X.com",
        "ADMIN@x.COM",
        "\uff41dmin@x.com",
        "  admin@x.com\t",
        "admin@\uff58.com",
    ):
        assert (await api.login_ok(variant))["user"]["id"] == account, variant

    again = await api.register("\uff21DMIN@X.COM", "some other password")
    assert again.status == 202
    assert "already exists" in api.mail.last("admin@x.com", "tried to register").text
    assert (await api.login("admin@x.com", "some other password")).status == 401


LONG_LOCAL = "a" * 65 + "@x.com"
#: 64 + 1 + 189 = 254 characters, the most an address may have (RFC 5321)
LONGEST_ADDRESS = "a" * 64 + "@" + ".".join(["b" * 62, "c" * 62, "d" * 59]) + ".com"
#: one more, each part still within its own limit
LONG_ADDRESS = "a" * 64 + "@" + ".".join(["b" * 62, "c" * 62, "d" * 60]) + ".com"
assert (len(LONGEST_ADDRESS), len(LONG_ADDRESS)) == (254, 255)


async def test_the_longest_valid_address_is_accepted(api: Api) -> None:
    assert (await api.register(LONGEST_ADDRESS.upper())).status == 202
    api.mail.last(LONGEST_ADDRESS, "confirm")


@pytest.mark.parametrize(
    "address",
    [
        "",
        "   ",
        "not-an-email",
        "a@b",
        "@x.com",
        "a@",
        "a..b@x.com",
        "a@x..com",
        "a@-x.com",
        "a b@x.com",
        "<script>@x.com",
        "a@x.com\nBcc: victim@y.com",
        "a\x00@x.com",
        "a@x.com,b@y.com",
        "İstanbul@x.com",
        LONG_LOCAL,
        LONG_ADDRESS,
        "a" * 300 + "@x.com",
        "a" * 400 + "@x.com",
    ],
)
async def test_registering_an_invalid_address_names_the_field(api: Api, address: str) -> None:
    response = await api.register(address)

    body = await assert_problem(response, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body.email"]
    assert not api.mail.messages


@pytest.mark.parametrize("email_", [None, 42, ["a@x.com"], {"a": 1}])
async def test_an_address_of_the_wrong_type_is_invalid_input(api: Api, email_: Any) -> None:
    for path in ("/auth/register", "/auth/login", "/auth/verify/resend", "/auth/password/forgot"):
        body = {"email": email_, "password": PASSWORD}
        response = await assert_problem(await api.post(path, body), 422, "validation-error")
        assert [e["field"] for e in response["errors"]] == ["body.email"]


# =========================================================================== passwords


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("x" * 5000, False),
        ("x" * 1025, False),
        ("x" * 1024, True),
        ("short", False),
        (" " * 12, False),
        ("\ud800" * 10, False),
    ],
)
async def test_password_length_limits_at_registration(
    api: Api, password: str, accepted: bool
) -> None:
    response = await api.register("long@example.test", password)

    if accepted:
        assert response.status == 202
        return
    body = await assert_problem(response, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body.password"]
    assert not api.mail.messages


@pytest.mark.parametrize("length", [5000, 1025])
async def test_over_long_passwords_are_refused_at_reset_and_login(api: Api, length: int) -> None:
    await api.verified("reset-long@example.test")
    await api.post("/auth/password/forgot", {"email": "reset-long@example.test"})
    token = api.mail.reset_token("reset-long@example.test")

    reset = await api.post("/auth/password/reset", {"token": token, "password": "x" * length})
    body = await assert_problem(reset, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body.password"]
    # the token survived the refusal
    fine = await api.post("/auth/password/reset", {"token": token, "password": NEW_PASSWORD})
    assert fine.status == 200

    login = await api.login("reset-long@example.test", "x" * length)
    # beyond the body limit: invalid input; within it: simply not the password
    if length > 4096:
        await assert_problem(login, 422, "validation-error")
    else:
        await assert_problem(login, 401, "unauthenticated")


# =========================================================================== display names


@pytest.mark.parametrize(
    "name",
    [
        "'); DROP TABLE users;--",
        "<script>alert(1)</script>",
        "Robert'); DELETE FROM auth_sessions; --",
        '" OR 1=1 --',
        "{{7*7}} ${7*7}",
        "Zoë 🦊 日本",
    ],
)
async def test_markup_and_sql_in_a_display_name_are_kept_as_data(any_api: Api, name: str) -> None:
    api = any_api
    admin = await api.admin()
    registered = await api.register("bobby@example.test", display_name=name)
    assert registered.status == 202
    await api.client.get(api.mail.verification_link("bobby@example.test"), allow_redirects=False)
    pair = await api.login_ok("bobby@example.test")
    assert pair["user"]["display_name"] == name

    patched = await api.client.patch(
        f"{API}/users/me",
        json={"display_name": f"{name} (2)"},
        headers={"Authorization": f"Bearer {pair['access_token']}"},
    )
    assert patched.status == 200
    assert (await patched.json())["display_name"] == f"{name} (2)"
    me = await api.me(pair["access_token"])
    assert (await me.json())["display_name"] == f"{name} (2)"
    assert me.content_type == "application/json"  # data, never markup

    # the users table and the sessions are intact
    listed = await api.get("/admin/users", token=admin["access_token"])
    users = await listed.json()
    assert users["total"] == 2
    assert {u["display_name"] for u in users["users"]} == {None, f"{name} (2)"}
    assert (await api.login("bobby@example.test")).status == 200
    assert (await api.me(pair["access_token"])).status == 200


async def test_a_display_name_is_limited_and_control_characters_are_dropped(api: Api) -> None:
    pair = await api.verified_user("names@example.test")
    headers = {"Authorization": f"Bearer {pair['access_token']}"}

    too_long = await api.client.patch(
        f"{API}/users/me", json={"display_name": "n" * 101}, headers=headers
    )
    body = await assert_problem(too_long, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body.display_name"]
    way_too_long = await api.client.patch(
        f"{API}/users/me", json={"display_name": "n" * 5000}, headers=headers
    )
    await assert_problem(way_too_long, 422, "validation-error")
    controlled = await api.client.patch(
        f"{API}/users/me", json={"display_name": "a\x00b\u202ec\r\nd"}, headers=headers
    )
    assert (await controlled.json())["display_name"] == "abcd"


# =========================================================================== request bodies

#: every identity route that reads a JSON body: (method, path, needs a token)
JSON_ROUTES = [
    ("POST", "/auth/register", False),
    ("POST", "/auth/verify", False),
    ("POST", "/auth/verify/resend", False),
    ("POST", "/auth/login", False),
    ("POST", "/auth/refresh", False),
    ("POST", "/auth/logout", True),
    ("POST", "/auth/password/forgot", False),
    ("POST", "/auth/password/reset", False),
    ("POST", "/auth/oauth/exchange", False),
    ("POST", "/auth/oauth/google/link", True),
    ("PATCH", "/users/me", True),
    ("PUT", "/admin/users/{user_id}/roles", True),
]

BAD_BODIES = [
    pytest.param("text/plain", b'{"email": "a@x.com"}', 415, "unsupported-media-type", id="text"),
    pytest.param(
        "application/x-www-form-urlencoded",
        b"email=a%40x.com&password=x",
        415,
        "unsupported-media-type",
        id="form",
    ),
    pytest.param("application/xml", b"<email/>", 415, "unsupported-media-type", id="xml"),
    pytest.param(None, b'{"email": "a@x.com"}', 415, "unsupported-media-type", id="no-type"),
    pytest.param("application/json", b"{", 400, "malformed-request", id="truncated"),
    pytest.param("application/json", b"{'email': 1}", 400, "malformed-request", id="quotes"),
    pytest.param("application/json", b"\xff\xfe{}", 400, "malformed-request", id="not-utf8"),
    pytest.param("application/json", b"[" * 100_000, 400, "malformed-request", id="deep"),
    pytest.param(
        "application/json", b'{"email": ' + b"1" * 5000 + b"}", 400, "malformed-request", id="int"
    ),
    pytest.param("application/json", b"", 422, "validation-error", id="empty"),
    pytest.param("application/json", b"[]", 422, "validation-error", id="array"),
    pytest.param("application/json", b'"text"', 422, "validation-error", id="string"),
]


@pytest.mark.parametrize(("content_type", "raw", "status", "code"), BAD_BODIES)
async def test_every_json_route_refuses_broken_bodies_with_a_4xx_problem(
    api: Api, content_type: str | None, raw: bytes, status: int, code: str
) -> None:
    admin = await api.admin()
    user_id = admin["user"]["id"]
    headers = {"Authorization": f"Bearer {admin['access_token']}"}
    if content_type is not None:
        headers["Content-Type"] = content_type

    for method, path, _ in JSON_ROUTES:
        url = API + path.format(user_id=user_id)
        response = await api.client.request(
            method, url, data=raw, headers=headers, skip_auto_headers={"Content-Type"}
        )
        if path == "/auth/logout" and not raw:
            assert response.status == 204  # logout needs no body
            admin = await api.login_ok("root@avatarstack.test")
            headers["Authorization"] = f"Bearer {admin['access_token']}"
            continue
        await assert_problem(response, status, code)
    # the admin session survived every refused logout
    assert (await api.me(admin["access_token"])).status == 200


async def test_an_oversized_body_is_refused_before_it_is_parsed(api: Api) -> None:
    raw = json.dumps({"email": "a@x.com", "password": "x" * (2 * 1024 * 1024)}).encode()
    response = await api.client.post(
        f"{API}/auth/login", data=raw, headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 413, "payload-too-large")


async def test_routes_that_need_a_token_check_it_before_the_body(api: Api) -> None:
    for method, path, needs_token in JSON_ROUTES:
        if not needs_token:
            continue
        response = await api.client.request(
            method,
            API + path.format(user_id="x"),
            data=b"{",
            headers={"Content-Type": "text/plain"},
        )
        await assert_problem(response, 401, "unauthenticated")


# =========================================================================== roles


async def test_an_unknown_role_is_invalid_input(any_api: Api) -> None:
    api = any_api
    admin = await api.admin()
    member = await api.verified_user("member@example.test")

    for roles in (["superuser"], ["member", "root"], ["ADMIN"], [""], ["member"] * 11, "admin"):
        response = await api.client.put(
            f"{API}/admin/users/{member['user']['id']}/roles",
            json={"roles": roles},
            headers={"Authorization": f"Bearer {admin['access_token']}"},
        )
        body = await assert_problem(response, 422, "validation-error")
        assert body["errors"]
        assert {e["field"].split(".")[1] for e in body["errors"]} == {"roles"}
    assert (await (await api.me(member["access_token"])).json())["roles"] == ["member"]


async def test_only_an_admin_may_change_roles(any_api: Api) -> None:
    api = any_api
    await api.admin()
    member = await api.verified_user("climber@example.test")
    editor_pair = await api.verified_user("editor@example.test")
    admin = await api.login_ok("root@avatarstack.test")
    promoted = await api.client.put(
        f"{API}/admin/users/{editor_pair['user']['id']}/roles",
        json={"roles": ["editor"]},
        headers={"Authorization": f"Bearer {admin['access_token']}"},
    )
    assert promoted.status == 200

    for caller in (member, editor_pair):
        response = await api.client.put(
            f"{API}/admin/users/{member['user']['id']}/roles",
            json={"roles": ["admin"]},
            headers={"Authorization": f"Bearer {caller['access_token']}"},
        )
        await assert_problem(response, 403, "forbidden")
    # a token claiming admin does not help either (the claim is not trusted)
    forged = tamper(member["access_token"], roles=["admin"])
    response = await api.client.put(
        f"{API}/admin/users/{member['user']['id']}/roles",
        json={"roles": ["admin"]},
        headers={"Authorization": f"Bearer {forged}"},
    )
    await assert_problem(response, 401, "unauthenticated")
    assert (await (await api.me(member["access_token"])).json())["roles"] == ["member"]


async def test_the_last_admin_cannot_lose_the_admin_role(any_api: Api) -> None:
    api = any_api
    admin = await api.admin()
    headers = {"Authorization": f"Bearer {admin['access_token']}"}
    url = f"{API}/admin/users/{admin['user']['id']}/roles"

    await assert_problem(
        await api.client.put(url, json={"roles": ["member"]}, headers=headers), 409, "conflict"
    )
    await assert_problem(
        await api.client.put(url, json={"roles": ["editor"]}, headers=headers), 409, "conflict"
    )
    # no roles at all is refused before anything else (issue 13, finding 9)
    await assert_problem(
        await api.client.put(url, json={"roles": []}, headers=headers), 422, "validation-error"
    )
    assert (await api.get("/admin/audit", token=admin["access_token"])).status == 200

    # with a second admin it works
    second = await api.verified_user("second@example.test")
    made = await api.client.put(
        f"{API}/admin/users/{second['user']['id']}/roles",
        json={"roles": ["admin"]},
        headers=headers,
    )
    assert made.status == 200
    stepped_down = await api.client.put(url, json={"roles": ["member"]}, headers=headers)
    assert stepped_down.status == 200
    await assert_problem(
        await api.get("/admin/audit", token=admin["access_token"]), 403, "forbidden"
    )


async def test_roles_of_a_missing_user_are_not_found(any_api: Api) -> None:
    api = any_api
    admin = await api.admin()
    headers = {"Authorization": f"Bearer {admin['access_token']}"}

    for user_id in ("00000000-0000-0000-0000-000000000000", "%00", "x" * 65, "'%20OR%201=1"):
        response = await api.client.put(
            f"{API}/admin/users/{user_id}/roles", json={"roles": ["member"]}, headers=headers
        )
        await assert_problem(response, 404, "not-found")
    audit = await api.get("/admin/audit?subject_id=%00", token=admin["access_token"])
    await assert_problem(audit, 422, "validation-error")
    audit = await api.get("/admin/audit?limit=0", token=admin["access_token"])
    await assert_problem(audit, 422, "validation-error")


# =========================================================================== OAuth redirect targets


@pytest.mark.parametrize(
    "redirect_to",
    [
        f"{PUBLIC_URL}/a%00b",
        "/a%00b",
        "https://evil.example/",
        "//evil.example/",
        f"{PUBLIC_URL}@evil.example/",
    ],
)
async def test_an_oauth_redirect_target_that_is_not_a_plain_local_url_is_invalid_input(
    make_api: MakeApi, backend: dict[str, Any], redirect_to: str
) -> None:
    api = await make_api(
        oauth={"github": {"client_id": "id", "client_secret": "secret"}}, **backend
    )

    response = await api.client.get(
        f"{API}/auth/oauth/github/authorize?redirect_to={redirect_to}", allow_redirects=False
    )

    body = await assert_problem(response, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["query.redirect_to"]
