"""The access-token contract over JwtAccessTokens with HS256 (shared secret) and EdDSA (Ed25519).

Every forged or broken token is crafted by hand here, so the tests do not depend on what PyJWT
is willing to produce. Times are fixed (2026): verification uses the ``now`` it is given, never
the wall clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from avatarstack.adapters.jwt import JwtAccessTokens
from avatarstack.ports.errors import AuthenticationError
from avatarstack.ports.security import AccessClaims

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://avatarstack.test"
AUDIENCE = "avatarstack-api"
LIFETIME = 900
LEEWAY = 5
GENERIC_DETAILS = {"the access token is invalid", "the access token has expired"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), signature


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ed25519_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(private_pem: bytes) -> bytes:
    private = serialization.load_pem_private_key(private_pem, password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Kit:
    """One algorithm's configuration: how to make keys and build the adapter."""

    algorithm: str
    new_key: Callable[[], str | bytes]

    def tokens(
        self, keys: dict[str, str | bytes], current_kid: str = "k1", **options: Any
    ) -> JwtAccessTokens:
        options.setdefault("issuer", ISSUER)
        options.setdefault("audience", AUDIENCE)
        options.setdefault("lifetime_seconds", LIFETIME)
        options.setdefault("leeway_seconds", LEEWAY)
        return JwtAccessTokens(keys, current_kid, algorithm=self.algorithm, **options)

    def sign(self, claims: dict[str, Any], key: str | bytes, kid: str | None = "k1") -> str:
        """A correctly signed token with arbitrary claims (PyJWT as a neutral signer)."""
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(claims, key, algorithm=self.algorithm, headers=headers)


KITS = {
    "HS256": Kit("HS256", lambda: secrets.token_urlsafe(48)),
    "EdDSA": Kit("EdDSA", ed25519_pem),
}


@pytest.fixture(params=sorted(KITS))
def kit(request: pytest.FixtureRequest) -> Kit:
    return KITS[str(request.param)]


@pytest.fixture
def key(kit: Kit) -> str | bytes:
    return kit.new_key()


@pytest.fixture
def tokens(kit: Kit, key: str | bytes) -> JwtAccessTokens:
    return kit.tokens({"k1": key})


def valid_claims(**changes: Any) -> dict[str, Any]:
    issued = int(T0.timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "sid": "session-1",
        "iat": issued,
        "nbf": issued,
        "exp": issued + LIFETIME,
        "jti": "token-1",
        "roles": ["member"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def assert_rejected(tokens: JwtAccessTokens, token: str, *, now: datetime = T0) -> None:
    with pytest.raises(AuthenticationError) as raised:
        tokens.verify(token, now=now)
    # a short generic sentence: nothing from the token is echoed back
    assert raised.value.detail in GENERIC_DETAILS


# =========================================================================== round trip


def test_an_issued_token_verifies_to_its_claims(tokens: JwtAccessTokens) -> None:
    token = tokens.issue(subject="user-1", session_id="session-1", roles=("admin",), now=T0)

    claims = tokens.verify(token, now=T0 + timedelta(seconds=60))

    assert claims == AccessClaims(
        subject="user-1",
        session_id="session-1",
        token_id=claims.token_id,
        issued_at=T0,
        expires_at=T0 + timedelta(seconds=LIFETIME),
        roles=("admin",),
    )
    assert claims.token_id
    assert tokens.lifetime_seconds == LIFETIME


def test_issued_tokens_carry_the_standard_claims_and_the_key_id(
    tokens: JwtAccessTokens, kit: Kit
) -> None:
    token = tokens.issue(subject="user-1", session_id="session-1", roles=(), now=T0)

    header, payload, _ = parts(token)

    assert header["kid"] == "k1"
    assert header["alg"] == kit.algorithm
    assert set(payload) == {"iss", "aud", "sub", "sid", "exp", "iat", "nbf", "jti", "roles"}
    assert payload["iat"] == payload["nbf"] == int(T0.timestamp())
    assert payload["exp"] == payload["iat"] + LIFETIME


def test_every_token_gets_its_own_id(tokens: JwtAccessTokens) -> None:
    ids = {
        tokens.verify(tokens.issue(subject="u", session_id="s", roles=(), now=T0), now=T0).token_id
        for _ in range(20)
    }

    assert len(ids) == 20


def test_a_token_verifies_until_it_expires_plus_leeway(tokens: JwtAccessTokens) -> None:
    token = tokens.issue(subject="u", session_id="s", roles=(), now=T0)
    expiry = T0 + timedelta(seconds=LIFETIME)

    tokens.verify(token, now=expiry + timedelta(seconds=LEEWAY - 1))
    assert_rejected(tokens, token, now=expiry + timedelta(seconds=LEEWAY))
    assert_rejected(tokens, token, now=expiry + timedelta(days=1))


def test_an_expired_token_says_so(tokens: JwtAccessTokens) -> None:
    token = tokens.issue(subject="u", session_id="s", roles=(), now=T0)

    with pytest.raises(AuthenticationError, match="expired"):
        tokens.verify(token, now=T0 + timedelta(hours=1))


# =========================================================================== forgeries


def test_an_unsigned_alg_none_token_is_rejected(tokens: JwtAccessTokens) -> None:
    for alg in ("none", "None", "NONE"):
        forged = f"{b64url_json({'alg': alg, 'typ': 'JWT', 'kid': 'k1'})}."
        forged += f"{b64url_json(valid_claims())}."
        assert_rejected(tokens, forged)


def test_a_token_with_another_algorithm_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes
) -> None:
    """Algorithm confusion: sign with a key a confused verifier would accept.

    EdDSA: an HS256 token whose HMAC secret is the public key PEM (which is public). HS256: an
    HS512 token with the right secret (the configured algorithm is the only one accepted).
    """
    if kit.algorithm == "EdDSA":
        assert isinstance(key, bytes)
        alg, secret = "HS256", public_pem(key)
        digest = hashlib.sha256
    else:
        alg, secret = "HS512", key.encode() if isinstance(key, str) else key
        digest = hashlib.sha512
    signing_input = f"{b64url_json({'alg': alg, 'typ': 'JWT', 'kid': 'k1'})}."
    signing_input += b64url_json(valid_claims())
    signature = hmac.new(secret, signing_input.encode(), digest).digest()

    assert_rejected(tokens, f"{signing_input}.{b64url(signature)}")


def test_a_token_signed_with_another_key_is_rejected(tokens: JwtAccessTokens, kit: Kit) -> None:
    assert_rejected(tokens, kit.sign(valid_claims(), kit.new_key()))


def test_a_tampered_payload_is_rejected(tokens: JwtAccessTokens) -> None:
    token = tokens.issue(subject="user-1", session_id="s", roles=("member",), now=T0)
    header, _, signature = token.split(".")
    claims = parts(token)[1]

    for change in ({"sub": "admin"}, {"roles": ["admin"]}, {"exp": claims["exp"] + 86400}):
        forged = ".".join((header, b64url_json({**claims, **change}), signature))
        assert_rejected(tokens, forged)


def test_a_tampered_signature_is_rejected(tokens: JwtAccessTokens) -> None:
    token = tokens.issue(subject="u", session_id="s", roles=(), now=T0)
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    assert_rejected(tokens, ".".join((header, payload, flipped)))
    assert_rejected(tokens, ".".join((header, payload, "")))


def test_a_token_not_yet_valid_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes
) -> None:
    start = int(T0.timestamp())
    later = kit.sign(valid_claims(nbf=start + 60), key)
    within_leeway = kit.sign(valid_claims(nbf=start + LEEWAY - 1), key)

    assert_rejected(tokens, later)
    tokens.verify(within_leeway, now=T0)
    tokens.verify(later, now=T0 + timedelta(seconds=60))


def test_a_token_issued_in_the_future_beyond_the_leeway_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes
) -> None:
    start = int(T0.timestamp())

    assert_rejected(tokens, kit.sign(valid_claims(iat=start + 60), key))
    tokens.verify(kit.sign(valid_claims(iat=start + LEEWAY - 1), key), now=T0)


def test_a_token_for_another_audience_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes
) -> None:
    other = kit.tokens({"k1": key}, audience="another-api")
    token = other.issue(subject="u", session_id="s", roles=(), now=T0)

    assert_rejected(tokens, token)
    assert_rejected(tokens, kit.sign(valid_claims(aud=[AUDIENCE, "another-api"]), key))


def test_a_token_from_another_issuer_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes
) -> None:
    other = kit.tokens({"k1": key}, issuer="https://evil.test")

    assert_rejected(tokens, other.issue(subject="u", session_id="s", roles=(), now=T0))


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "sid", "jti"])
def test_a_token_missing_a_required_claim_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes, claim: str
) -> None:
    claims = valid_claims()
    del claims[claim]

    assert_rejected(tokens, kit.sign(claims, key))


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": 42},
        {"sid": ""},
        {"jti": ["x"]},
        {"exp": "tomorrow"},
        {"roles": "admin"},
        {"roles": [1, 2]},
    ],
)
def test_a_token_with_ill_typed_claims_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes, changes: dict[str, Any]
) -> None:
    assert_rejected(tokens, kit.sign(valid_claims(**changes), key))


def test_a_token_with_an_unknown_or_missing_key_id_is_rejected(
    tokens: JwtAccessTokens, kit: Kit, key: str | bytes
) -> None:
    assert_rejected(tokens, kit.sign(valid_claims(), key, kid="k9"))
    assert_rejected(tokens, kit.sign(valid_claims(), key, kid=None))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not-a-token",
        "a.b",
        "a.b.c",
        "...",
        "a.b.c.d.e",
        "eyJhbGciOiJIUzI1NiJ9",
        f"{b64url(b'not json')}.{b64url(b'[]')}.",
        f"{b64url_json({'alg': 'HS256'})}.{b64url(b'[1,2]')}.c2ln",
        "Bearer x.y.z",
        "x" * 100_000,
        "ä.ö.ü",
    ],
)
def test_malformed_strings_are_rejected(tokens: JwtAccessTokens, garbage: str) -> None:
    assert_rejected(tokens, garbage)


def test_a_truncated_token_is_rejected(tokens: JwtAccessTokens) -> None:
    token = tokens.issue(subject="u", session_id="s", roles=(), now=T0)

    for cut in (1, 5, len(token) // 2):
        assert_rejected(tokens, token[:-cut])


# =========================================================================== rotation


def test_tokens_from_a_retired_key_verify_until_the_key_is_removed(kit: Kit) -> None:
    old_key, new_key = kit.new_key(), kit.new_key()
    before = kit.tokens({"k1": old_key}, "k1")
    old_token = before.issue(subject="u", session_id="s", roles=(), now=T0)

    rotating = kit.tokens({"k1": old_key, "k2": new_key}, "k2")
    new_token = rotating.issue(subject="u", session_id="s", roles=(), now=T0)
    assert parts(new_token)[0]["kid"] == "k2"
    assert rotating.verify(old_token, now=T0).subject == "u"
    assert rotating.verify(new_token, now=T0).subject == "u"

    after = kit.tokens({"k2": new_key}, "k2")
    assert_rejected(after, old_token)
    assert after.verify(new_token, now=T0).subject == "u"


def test_a_known_kid_with_another_kids_key_is_rejected(kit: Kit) -> None:
    first, second = kit.new_key(), kit.new_key()
    tokens = kit.tokens({"k1": first, "k2": second}, "k1")

    assert_rejected(tokens, kit.sign(valid_claims(), second, kid="k1"))


# =========================================================================== construction


def test_construction_refuses_a_current_kid_without_a_key(kit: Kit, key: str | bytes) -> None:
    with pytest.raises(ValueError, match="k2"):
        kit.tokens({"k1": key}, "k2")


@pytest.mark.parametrize("algorithm", ["none", "None", "NONE", "HS1", "RS1"])
def test_construction_refuses_none_and_unknown_algorithms(algorithm: str) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        JwtAccessTokens(
            {"k1": "x" * 64}, "k1", algorithm=algorithm, issuer=ISSUER, audience=AUDIENCE
        )


def test_construction_refuses_short_hmac_secrets() -> None:
    short = "s" * 31
    with pytest.raises(ValueError, match="32 bytes") as raised:
        JwtAccessTokens({"k1": short}, "k1", issuer=ISSUER, audience=AUDIENCE)
    assert short not in str(raised.value)
    JwtAccessTokens({"k1": "s" * 32}, "k1", issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="'k0'"):  # every key counts, not only the current one
        JwtAccessTokens({"k1": "s" * 32, "k0": "old"}, "k1", issuer=ISSUER, audience=AUDIENCE)


def test_construction_refuses_an_asymmetric_key_as_an_hmac_secret() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        JwtAccessTokens({"k1": public_pem(ed25519_pem())}, "k1", issuer=ISSUER, audience=AUDIENCE)


def test_construction_refuses_keys_that_do_not_fit_the_algorithm() -> None:
    for bad in ("x" * 64, b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"):
        with pytest.raises(ValueError, match="PEM private key") as raised:
            JwtAccessTokens({"k1": bad}, "k1", algorithm="EdDSA", issuer=ISSUER, audience=AUDIENCE)
        assert "broken" not in str(raised.value)
    with pytest.raises(ValueError, match="ES256"):
        JwtAccessTokens(
            {"k1": ed25519_pem()}, "k1", algorithm="ES256", issuer=ISSUER, audience=AUDIENCE
        )


def test_naive_datetimes_are_refused(tokens: JwtAccessTokens) -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="aware"):
        tokens.issue(subject="u", session_id="s", roles=(), now=naive)
