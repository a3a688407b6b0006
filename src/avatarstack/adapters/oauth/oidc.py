"""OpenID Connect login (authorization code flow with PKCE) for any conforming issuer.

The discovery document and the issuer's signing keys are fetched once and cached; a token signed
with a key id the cache does not know triggers one refetch of the keys (the issuer rotated them).
The ID token is checked the way OpenID Connect Core §3.1.3.7 asks: signature with an allowed
algorithm, ``iss``, ``aud``/``azp``, ``exp``, ``iat`` and ``nonce``. JOSE is done by ``joserfc``.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, JoseError
from joserfc.jwk import Key as JsonWebKey
from joserfc.jwk import KeySet, RSAKey

from avatarstack.adapters.oauth._http import (
    DEFAULT_TIMEOUT,
    OAuthHttpClient,
    log,
    oauth_error_code,
)
from avatarstack.ports.errors import AuthenticationError, UpstreamError
from avatarstack.ports.oauth import AuthorizationRequest, OAuthProfile

__all__ = ["OpenIDConnectProvider", "ProviderMetadata"]

WELL_KNOWN_SUFFIX = "/.well-known/openid-configuration"
#: signature algorithms that are never acceptable for an ID token checked against public keys
_FORBIDDEN_ALGORITHMS = {"none", "HS256", "HS384", "HS512"}
#: token endpoint errors that mean "this login attempt is invalid", not "we are misconfigured"
_REJECTED_GRANT_ERRORS = {"invalid_grant", "redirect_uri_mismatch"}


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of an OpenID discovery document this client uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class OpenIDConnectProvider:
    """An ``OAuthProvider`` for an OpenID Connect issuer found through its discovery document.

    Reusable by plugins for any issuer (Keycloak, Okta, Entra ID with a tenant, …): give it the
    client credentials, the discovery URL, a ``name``/``display_name``, and optionally
    ``scopes``, the accepted signature ``algorithms`` (asymmetric only; RS256 by default),
    ``leeway`` (seconds of clock skew tolerated), ``max_id_token_age`` (seconds an ID token's
    ``iat`` may lie in the past), ``timeout`` (seconds per HTTP request) and
    ``extra_authorize_params`` (e.g. ``{"prompt": "select_account"}``).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        server_metadata_url: str,
        *,
        name: str,
        display_name: str,
        scopes: Collection[str] = ("openid", "email", "profile"),
        algorithms: Collection[str] = ("RS256",),
        leeway: int = 60,
        max_id_token_age: int = 600,
        timeout: float = DEFAULT_TIMEOUT,
        extra_authorize_params: Mapping[str, str] | None = None,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError(f"OAuth provider {name!r} needs a client id and a client secret")
        forbidden = sorted(set(algorithms) & _FORBIDDEN_ALGORITHMS)
        if forbidden or not algorithms:
            raise ValueError(f"ID token algorithms must be asymmetric ones, not {forbidden}")
        if "openid" not in scopes:
            raise ValueError("an OpenID Connect login needs the 'openid' scope")
        self.name = name
        self.display_name = display_name
        self.client_id = client_id
        self._client_secret = client_secret
        self.server_metadata_url = server_metadata_url
        self.scopes = tuple(scopes)
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.max_id_token_age = max_id_token_age
        self.extra_authorize_params = dict(extra_authorize_params or {})
        self._http = OAuthHttpClient(name, display_name, timeout=timeout)
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._metadata_lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, client_id={self.client_id!r})"

    # ------------------------------------------------------------------ the port

    async def authorization_url(self, request: AuthorizationRequest) -> str:
        if request.code_challenge_method != "S256":
            raise ValueError("only the S256 PKCE method is supported")
        metadata = await self.metadata()
        params = {
            **self.extra_authorize_params,
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": request.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": request.state,
            "nonce": request.nonce,
            "code_challenge": request.code_challenge,
            "code_challenge_method": "S256",
        }
        return _with_query(metadata.authorization_endpoint, params)

    async def complete(
        self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> OAuthProfile:
        metadata = await self.metadata()
        answer = await self._http.request_json(
            "POST",
            metadata.token_endpoint,
            endpoint="token endpoint",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "code_verifier": code_verifier,
            },
            headers={"Accept": "application/json"},
        )
        if answer.status != 200:
            error = oauth_error_code(answer.body)
            if answer.status in {400, 401} and error in _REJECTED_GRANT_ERRORS:
                raise AuthenticationError(
                    f"{self.display_name} rejected the login ({error}); please sign in again"
                )
            raise UpstreamError(
                f"{self.display_name} token endpoint refused the request "
                f"(HTTP {answer.status}, {error or 'no error code'})"
            )
        id_token = answer.body.get("id_token") if isinstance(answer.body, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise UpstreamError(f"{self.display_name} token endpoint returned no id_token")
        claims = await self.verify_id_token(id_token, nonce=nonce)
        return self.profile_from_claims(claims)

    async def close(self) -> None:
        await self._http.close()

    # ------------------------------------------------------------------ discovery and keys

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, fetched on first use and then cached."""
        if self._metadata is not None:
            return self._metadata
        async with self._metadata_lock:
            if self._metadata is None:
                self._metadata = await self._fetch_metadata()
        return self._metadata

    async def _fetch_metadata(self) -> ProviderMetadata:
        answer = await self._http.request_json(
            "GET", self.server_metadata_url, endpoint="discovery document"
        )
        body = answer.body
        fields = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
        if answer.status != 200 or not isinstance(body, dict):
            raise UpstreamError(
                f"{self.display_name} discovery document unavailable (HTTP {answer.status})"
            )
        missing = [f for f in fields if not isinstance(body.get(f), str) or not body[f]]
        if missing:
            raise UpstreamError(
                f"{self.display_name} discovery document lacks {', '.join(missing)}"
            )
        metadata = ProviderMetadata(**{f: body[f] for f in fields})
        # OpenID Connect Discovery §4.3: the issuer is the URL the document was fetched under
        if self.server_metadata_url.endswith(WELL_KNOWN_SUFFIX):
            expected = self.server_metadata_url.removesuffix(WELL_KNOWN_SUFFIX)
            if metadata.issuer.rstrip("/") != expected.rstrip("/"):
                raise UpstreamError(f"{self.display_name} discovery document names another issuer")
        return metadata

    async def _signing_key(self, metadata: ProviderMetadata, kid: str | None, alg: str) -> Any:
        keys = self._keys
        refreshed = False
        if keys is None:
            keys = await self._refresh_keys(metadata, stale=None)
            refreshed = True
        key = _find_key(keys, kid, alg)
        if key is None and not refreshed:
            log.info("oauth_jwks_refresh", provider=self.name, kid=kid)
            keys = await self._refresh_keys(metadata, stale=keys)
            key = _find_key(keys, kid, alg)
        if key is None:
            raise AuthenticationError(
                f"{self.display_name} identity token is signed with an unknown key"
            )
        return key

    async def _refresh_keys(self, metadata: ProviderMetadata, *, stale: KeySet | None) -> KeySet:
        async with self._keys_lock:
            if self._keys is not None and self._keys is not stale:
                return self._keys  # another request refreshed them meanwhile
            self._keys = await self._fetch_keys(metadata)
            return self._keys

    async def _fetch_keys(self, metadata: ProviderMetadata) -> KeySet:
        answer = await self._http.request_json("GET", metadata.jwks_uri, endpoint="JWKS")
        entries = answer.body.get("keys") if isinstance(answer.body, dict) else None
        if answer.status != 200 or not isinstance(entries, list):
            raise UpstreamError(f"{self.display_name} JWKS unavailable (HTTP {answer.status})")
        keys: list[JsonWebKey] = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue  # only RSA algorithms are accepted; skip other key types
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(RSAKey.import_key(entry))
            except (JoseError, ValueError, TypeError):
                log.warning("oauth_jwks_key_skipped", provider=self.name, kid=entry.get("kid"))
        if not keys:
            raise UpstreamError(f"{self.display_name} JWKS has no usable signing key")
        return KeySet(keys)

    # ------------------------------------------------------------------ the ID token

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of ``id_token`` once every check passed; AuthenticationError otherwise."""
        metadata = await self.metadata()
        failed = f"{self.display_name} identity token"
        try:
            header = jws.extract_compact(id_token.encode("ascii")).headers()
        except (JoseError, ValueError, TypeError, UnicodeError) as exc:
            raise AuthenticationError(f"{failed} is not a valid signed token") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthenticationError(f"{failed} uses a signature algorithm that is not allowed")
        kid = header.get("kid")
        key = await self._signing_key(metadata, kid if isinstance(kid, str) else None, alg)
        try:
            token = jwt.decode(id_token, key, algorithms=[alg])
        except BadSignatureError as exc:
            raise AuthenticationError(f"{failed} has an invalid signature") from exc
        except (JoseError, ValueError, TypeError) as exc:
            raise AuthenticationError(f"{failed} cannot be verified") from exc
        claims: dict[str, Any] = dict(token.claims)
        self._check_claims(claims, metadata, nonce)
        return claims

    def accepted_issuers(self, metadata: ProviderMetadata) -> list[str]:
        """The ``iss`` values accepted in ID tokens: the discovery document's issuer."""
        return [metadata.issuer]

    def _check_claims(self, claims: dict[str, Any], metadata: ProviderMetadata, nonce: str) -> None:
        failed = f"{self.display_name} identity token"
        for claim in ("exp", "iat", "nbf"):  # NumericDate: a finite number, not a boolean
            value = claims.get(claim)
            if claim in claims and not _is_numeric_date(value):
                raise AuthenticationError(f"{failed} failed its check of {claim}")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError(f"{failed} failed its check of sub")
        now = int(time.time())
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=self.leeway,
            iss={"essential": True, "values": self.accepted_issuers(metadata)},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise AuthenticationError(f"{failed} has expired") from exc
        except JoseError as exc:
            claim = getattr(exc, "claim", None) or "a claim"
            raise AuthenticationError(f"{failed} failed its check of {claim}") from exc
        if claims["iat"] < now - self.max_id_token_age - self.leeway:
            raise AuthenticationError(f"{failed} was issued too long ago")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.client_id:
            raise AuthenticationError(f"{failed} was issued to another party (azp)")
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(
            token_nonce.encode(), nonce.encode()
        ):
            raise AuthenticationError(f"{failed} does not answer this login (nonce)")

    def profile_from_claims(self, claims: Mapping[str, Any]) -> OAuthProfile:
        """The profile asserted by verified claims (``sub``, ``email``, ``name``)."""
        email = claims.get("email")
        name = claims.get("name")
        return OAuthProfile(
            provider=self.name,
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            email_verified=isinstance(email, str) and _is_true(claims.get("email_verified")),
            name=name if isinstance(name, str) and name else None,
        )


def _is_numeric_date(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _is_true(value: object) -> bool:
    """OIDC booleans; some issuers (Google among them) have sent the string ``"true"``."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _find_key(keys: KeySet, kid: str | None, alg: str) -> Any:
    candidates = [key for key in keys.keys if key.get("alg") in (None, alg)]
    if kid is None:
        return candidates[0] if len(candidates) == 1 else None
    return next((key for key in candidates if key.kid == kid), None)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{urlencode(params)}"
