"""OpenID Connect login (authorization code flow with PKCE) for any conforming issuer.

authlib sends the authorization request and the code exchange (see ``_http``) and checks the ID
token's claims the way OpenID Connect Core §3.1.3.7 asks (:class:`authlib.oidc.core.CodeIDToken`:
``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nonce``, ``at_hash``); joserfc, which authlib
uses for JOSE, verifies the signature with an allowed asymmetric algorithm. This module keeps
what authlib's plain OAuth 2 client leaves to its caller: the discovery document and the issuer's
signing keys, fetched once and cached (a token signed with a key id the cache does not know
triggers one refetch of the keys: the issuer rotated them), the ``max_id_token_age`` policy, and
the mapping of every failure onto our errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oidc.core import CodeIDToken
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import Key, KeySet, import_key

from avatarstack.adapters.oauth._http import (
    DEFAULT_TIMEOUT,
    OAuthHttpClient,
    TokenRefused,
    log,
)
from avatarstack.ports.errors import AuthenticationError, UpstreamError
from avatarstack.ports.oauth import AuthorizationRequest, OAuthProfile

__all__ = ["OpenIDConnectProvider", "ProviderMetadata"]

WELL_KNOWN_SUFFIX = "/.well-known/openid-configuration"
#: signature algorithms that are never acceptable for an ID token checked against public keys
_FORBIDDEN_ALGORITHMS = {"none", "HS256", "HS384", "HS512"}
#: token endpoint errors that mean "this login attempt is invalid", not "we are misconfigured"
_REJECTED_GRANT_ERRORS = {"invalid_grant", "redirect_uri_mismatch"}
#: JWKS key types that verify asymmetric signatures ("oct" keys never do)
_ASYMMETRIC_KEY_TYPES = {"RSA", "EC", "OKP"}
#: authorization request parameters this client sets itself
_RESERVED_PARAMS = {"response_type", "client_id", "redirect_uri", "scope", "state"}


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
        reserved = sorted(_RESERVED_PARAMS.intersection(extra_authorize_params or {}))
        if reserved:
            raise ValueError(f"extra_authorize_params cannot set {', '.join(reserved)}")
        self.name = name
        self.display_name = display_name
        self.client_id = client_id
        self.server_metadata_url = server_metadata_url
        self.scopes = tuple(scopes)
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.max_id_token_age = max_id_token_age
        self.extra_authorize_params = dict(extra_authorize_params or {})
        self._http = OAuthHttpClient(
            name, display_name, client_id=client_id, client_secret=client_secret, timeout=timeout
        )
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
        return self._http.authorization_url(
            metadata.authorization_endpoint,
            redirect_uri=request.redirect_uri,
            scope=" ".join(self.scopes),
            state=request.state,
            nonce=request.nonce,
            code_challenge=request.code_challenge,
            code_challenge_method="S256",
            **self.extra_authorize_params,
        )

    async def complete(
        self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> OAuthProfile:
        metadata = await self.metadata()
        try:
            token = await self._http.fetch_token(
                metadata.token_endpoint,
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
            )
        except TokenRefused as refused:
            if refused.code in _REJECTED_GRANT_ERRORS:
                raise AuthenticationError(
                    f"{self.display_name} rejected the login ({refused.code}); please sign in again"
                ) from None
            raise UpstreamError(
                f"{self.display_name} token endpoint refused the request ({refused})"
            ) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise UpstreamError(f"{self.display_name} token endpoint returned no id_token")
        access_token = token.get("access_token")
        claims = await self.verify_id_token(
            id_token,
            nonce=nonce,
            access_token=access_token if isinstance(access_token, str) else None,
        )
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

    async def _signing_keys(self, metadata: ProviderMetadata, kid: str | None, alg: str) -> KeySet:
        """The issuer's keys, refetched once when none of them is ``kid`` (a key rotation)."""
        keys = self._keys
        if keys is None:
            return await self._refresh_keys(metadata, stale=None)
        if not _has_key(keys, kid, alg):
            log.info("oauth_jwks_refresh", provider=self.name, kid=kid)
            keys = await self._refresh_keys(metadata, stale=keys)
        return keys

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
        keys: list[Key] = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") not in _ASYMMETRIC_KEY_TYPES:
                continue  # only asymmetric algorithms are accepted; skip other key types
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(import_key(entry))
            except (JoseError, ValueError, TypeError):
                log.warning("oauth_jwks_key_skipped", provider=self.name, kid=entry.get("kid"))
        if not keys:
            raise UpstreamError(f"{self.display_name} JWKS has no usable signing key")
        return KeySet(keys)

    # ------------------------------------------------------------------ the ID token

    async def verify_id_token(
        self, id_token: str, *, nonce: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """The claims of ``id_token`` once every check passed; AuthenticationError otherwise.

        ``access_token``, when given, is checked against the token's ``at_hash``.
        """
        metadata = await self.metadata()
        failed = f"{self.display_name} identity token"
        try:
            header = jws.extract_compact(id_token.encode("ascii")).headers()
        except (JoseError, ValueError, TypeError, UnicodeError) as exc:
            raise AuthenticationError(f"{failed} is not a valid signed token") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthenticationError(f"{failed} uses a signature algorithm that is not allowed")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys = await self._signing_keys(metadata, kid, alg)
        if not _has_key(keys, kid, alg):
            raise AuthenticationError(f"{failed} is signed with an unknown key")
        try:
            token = jwt.decode(id_token, keys, algorithms=[alg])
        except BadSignatureError as exc:
            raise AuthenticationError(f"{failed} has an invalid signature") from exc
        except (JoseError, ValueError, TypeError) as exc:
            raise AuthenticationError(f"{failed} cannot be verified") from exc
        claims: dict[str, Any] = dict(token.claims)
        self._check_claims(claims, token.header, metadata, nonce, access_token)
        return claims

    def accepted_issuers(self, metadata: ProviderMetadata) -> list[str]:
        """The ``iss`` values accepted in ID tokens: the discovery document's issuer."""
        return [metadata.issuer]

    def _check_claims(
        self,
        claims: dict[str, Any],
        header: Mapping[str, Any],
        metadata: ProviderMetadata,
        nonce: str,
        access_token: str | None,
    ) -> None:
        failed = f"{self.display_name} identity token"
        now = int(time.time())
        id_token = CodeIDToken(
            claims,
            dict(header),
            options={
                "iss": {"essential": True, "values": self.accepted_issuers(metadata)},
                "aud": {"essential": True, "value": self.client_id},
                "sub": {"essential": True},  # and not blank
                # authlib compares the nonce only when one is expected: never let it be empty
                "nonce": {"essential": True, "value": nonce},
            },
            params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
        )
        try:
            id_token.validate(now=now, leeway=self.leeway)
        except ExpiredTokenError as exc:
            raise AuthenticationError(f"{failed} has expired") from exc
        except ClaimError as exc:
            if exc.claim == "nonce":
                raise AuthenticationError(f"{failed} does not answer this login (nonce)") from exc
            if exc.claim == "azp":
                raise AuthenticationError(f"{failed} was issued to another party (azp)") from exc
            raise AuthenticationError(f"{failed} failed its check of {exc.claim}") from exc
        except (JoseError, ValueError, TypeError) as exc:
            raise AuthenticationError(f"{failed} cannot be verified") from exc
        if claims["iat"] < now - self.max_id_token_age - self.leeway:
            raise AuthenticationError(f"{failed} was issued too long ago")

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


def _is_true(value: object) -> bool:
    """OIDC booleans; some issuers (Google among them) have sent the string ``"true"``."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _has_key(keys: KeySet, kid: str | None, alg: str) -> bool:
    """Whether joserfc will find a key for a token with this ``kid`` and ``alg``."""
    try:
        keys.get_by_kid(kid, {"alg": alg, "use": "sig"})
    except JoseError:
        return False
    return True
