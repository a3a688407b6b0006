"""Signed access tokens (JWT) with PyJWT: one configured algorithm, key ids, key rotation.

``keys`` maps a key id (``kid``) to a key: an HMAC secret for HS256/HS384/HS512, a PEM private
key for the asymmetric algorithms (the public key is derived from it for verification). New
tokens are signed with ``current_kid``; tokens signed with any other kid in ``keys`` still
verify, so rotation is: add the new key, make it current, drop the old one after
``lifetime_seconds``.

Verification accepts the configured algorithm only (no ``none``, no HS256 token checked with an
asymmetric public key), requires every claim we issue, and checks time claims against the
``now`` it is given rather than the wall clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from avatarstack.ports.errors import AuthenticationError
from avatarstack.ports.security import AccessClaims

__all__ = ["JwtAccessTokens"]

_HMAC = {"HS256": 32, "HS384": 48, "HS512": 64}  # minimum secret bytes (RFC 7518 §3.2)
_ASYMMETRIC: dict[str, tuple[type, ...]] = {
    "EdDSA": (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey),
    "ES256": (ec.EllipticCurvePrivateKey,),
    "ES384": (ec.EllipticCurvePrivateKey,),
    "ES512": (ec.EllipticCurvePrivateKey,),
    "RS256": (rsa.RSAPrivateKey,),
    "RS384": (rsa.RSAPrivateKey,),
    "RS512": (rsa.RSAPrivateKey,),
    "PS256": (rsa.RSAPrivateKey,),
    "PS384": (rsa.RSAPrivateKey,),
    "PS512": (rsa.RSAPrivateKey,),
}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub", "sid", "jti"]
_MAX_TOKEN_LENGTH = 8192

_INVALID = "the access token is invalid"
_EXPIRED = "the access token has expired"


class JwtAccessTokens:
    """Issues and verifies access tokens; every failure to verify is an AuthenticationError."""

    def __init__(
        self,
        keys: Mapping[str, str | bytes],
        current_kid: str,
        *,
        algorithm: str = "HS256",
        issuer: str,
        audience: str,
        lifetime_seconds: int = 900,
        leeway_seconds: int = 5,
    ) -> None:
        if algorithm.lower() == "none":
            raise ValueError("the 'none' algorithm signs nothing and is refused")
        if algorithm not in _HMAC and algorithm not in _ASYMMETRIC:
            supported = ", ".join([*_HMAC, *_ASYMMETRIC])
            raise ValueError(f"unsupported JWT algorithm {algorithm!r} (use one of {supported})")
        if not keys:
            raise ValueError("at least one signing key is required")
        if current_kid not in keys:
            raise ValueError(f"the current key id {current_kid!r} is not among the keys")
        if lifetime_seconds <= 0 or leeway_seconds < 0:
            raise ValueError("lifetime_seconds must be positive and leeway_seconds not negative")
        if not issuer or not audience:
            raise ValueError("issuer and audience must not be empty")
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds
        self.leeway_seconds = leeway_seconds
        self.current_kid = current_kid
        self._signing_keys: dict[str, Any] = {}
        self._verification_keys: dict[str, Any] = {}
        for kid, key in keys.items():
            if not isinstance(kid, str) or not kid:
                raise ValueError("key ids must be non-empty strings")
            signing, verification = self._load(kid, key)
            self._signing_keys[kid] = signing
            self._verification_keys[kid] = verification
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})

    def __repr__(self) -> str:
        return (
            f"JwtAccessTokens(algorithm={self.algorithm!r}, kids={sorted(self._signing_keys)!r},"
            f" current_kid={self.current_kid!r})"
        )

    # ------------------------------------------------------------------ port

    def issue(self, *, subject: str, session_id: str, roles: tuple[str, ...], now: datetime) -> str:
        issued = int(_aware(now).timestamp())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "sid": session_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.lifetime_seconds,
            "jti": secrets.token_urlsafe(16),
            "roles": list(roles),
        }
        return self._jwt.encode(
            claims,
            self._signing_keys[self.current_kid],
            algorithm=self.algorithm,
            headers={"kid": self.current_kid, "typ": "JWT"},
        )

    def verify(self, token: str, *, now: datetime) -> AccessClaims:
        moment = _aware(now).timestamp()
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
            raise AuthenticationError(_INVALID)
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if header.get("alg") != self.algorithm or not isinstance(kid, str):
                raise AuthenticationError(_INVALID)
            key = self._verification_keys.get(kid)
            if key is None:
                raise AuthenticationError(_INVALID)
            payload = self._jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                options={
                    "verify_signature": True,
                    "verify_iss": True,
                    "verify_aud": True,
                    "strict_aud": True,
                    # time claims are checked below against the ``now`` we were given
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": _REQUIRED,
                },
            )
            return self._claims(payload, moment)
        except AuthenticationError:
            raise
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError) as exc:
            raise AuthenticationError(_INVALID) from exc

    # ------------------------------------------------------------------ internals

    def _claims(self, payload: dict[str, Any], moment: float) -> AccessClaims:
        exp, iat, nbf = payload["exp"], payload["iat"], payload["nbf"]
        if not all(_is_number(value) for value in (exp, iat, nbf)):
            raise AuthenticationError(_INVALID)
        leeway = self.leeway_seconds
        if iat > moment + leeway or nbf > moment + leeway:
            raise AuthenticationError(_INVALID)
        if exp <= moment - leeway:
            raise AuthenticationError(_EXPIRED)
        subject, session_id, token_id = payload["sub"], payload["sid"], payload["jti"]
        roles = payload.get("roles", [])
        if not all(isinstance(value, str) and value for value in (subject, session_id, token_id)):
            raise AuthenticationError(_INVALID)
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise AuthenticationError(_INVALID)
        return AccessClaims(
            subject=subject,
            session_id=session_id,
            token_id=token_id,
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC),
            roles=tuple(roles),
        )

    def _load(self, kid: str, key: str | bytes) -> tuple[Any, Any]:
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if self.algorithm in _HMAC:
            minimum = _HMAC[self.algorithm]
            if len(raw) < minimum:
                raise ValueError(
                    f"the {self.algorithm} secret for key id {kid!r} is shorter than "
                    f"{minimum} bytes"
                )
            if b"-----BEGIN" in raw or raw.startswith(b"ssh-"):
                raise ValueError(f"key id {kid!r} looks like an asymmetric key, not an HMAC secret")
            return raw, raw
        try:
            private = load_pem_private_key(raw, password=None)
        except (ValueError, TypeError):
            # ``from None``: nothing about the key material belongs in a traceback
            raise ValueError(f"key id {kid!r} is not an unencrypted PEM private key") from None
        curve = _CURVES.get(self.algorithm)
        if not isinstance(private, _ASYMMETRIC[self.algorithm]) or (
            curve is not None
            and not (
                isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, curve)
            )
        ):
            raise ValueError(f"key id {kid!r} does not fit the {self.algorithm} algorithm")
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        public = private.public_key()
        message = algorithm.check_key_length(public)
        if message:
            raise ValueError(f"key id {kid!r}: {message}")
        return private, public


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("pass an aware datetime (UTC) as now")
    return now


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
