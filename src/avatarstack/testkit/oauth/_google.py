"""A fake Google: OpenID Connect for one registered web client."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from avatarstack.testkit.oauth._common import Grant, OAuthServer, b64, pkce_ok, redirect_to

#: an ``id_token_overrides`` value that removes the claim from the ID token
OMIT: Any = object()


@dataclass
class FakeGoogleUser:
    sub: str = "108234567890123456789"
    email: str | None = "ada@example.com"
    email_verified: bool | str = True
    name: str | None = "Ada Lovelace"


class FakeGoogle(OAuthServer):
    """Google's OpenID Connect endpoints for one registered web client.

    Endpoints: ``/.well-known/openid-configuration``, ``/o/oauth2/v2/auth``, ``/token``,
    ``/oauth2/v3/certs``. ID tokens are RS256 with a ``kid`` from an RSA-2048 key made at
    construction; ``iss`` is :attr:`base_url`, ``aud`` and ``azp`` the client id.

    Switches: ``fail_token_with_status`` (the token endpoint answers that status),
    ``malformed_token_json`` (a 200 whose body is cut off), ``id_token_overrides`` (merged into
    the claims; :data:`OMIT` removes one), ``id_token_alg`` (``"RS256"``, ``"HS256"`` signed with
    the client secret, or ``"none"``), ``sign_with_other_key`` (a key not in the JWKS, same
    kid), :meth:`rotate_keys`, ``code_lifetime`` (seconds, default 60), ``delay_token_seconds``.
    Records: ``authorize_requests`` and ``token_requests`` (the query / form fields),
    ``issued_id_tokens`` and ``requests``.
    """

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id.apps.googleusercontent.com",
        client_secret: str = "fake-google-client-secret",  # noqa: S107 - a test credential
        redirect_uris: tuple[str, ...] = (
            "http://127.0.0.1:8080/api/v1/auth/oauth/google/callback",
        ),
        user: FakeGoogleUser | None = None,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris)
        self.user = user or FakeGoogleUser()
        self.code_lifetime = 60.0
        self.fail_token_with_status: int | None = None
        self.malformed_token_json = False
        self.id_token_overrides: dict[str, Any] = {}
        self.id_token_alg = "RS256"  # noqa: S105 - an algorithm name
        self.sign_with_other_key = False
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.issued_id_tokens: list[str] = []
        self._grants: dict[str, Grant] = {}
        self._keys: list[RSAKey] = [_new_rsa_key()]  # newest first; the first one signs
        self._other_key: RSAKey | None = None

    # ---------------------------------------------------------------- configuration

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    def login_as(self, user: FakeGoogleUser) -> None:
        """The user who logs in at the next authorize requests."""
        self.user = user

    def rotate_keys(self) -> None:
        """Sign with a new key (new kid); the JWKS publishes it and the previous one."""
        self._keys = [_new_rsa_key(), self._keys[0]]

    @property
    def kids(self) -> list[str]:
        return [str(key.kid) for key in self._keys]

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/.well-known/openid-configuration", self._discovery),
            web.get("/o/oauth2/v2/auth", self._authorize),
            web.post("/token", self._token),
            web.get("/oauth2/v3/certs", self._certs),
        ]

    # ---------------------------------------------------------------- endpoints

    async def _discovery(self, request: web.Request) -> web.Response:
        base = self.base_url
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/o/oauth2/v2/auth",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/oauth2/v3/certs",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
            }
        )

    async def _certs(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [key.as_dict(private=False) for key in self._keys]})

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorize_requests.append(query)
        if query.get("client_id") != self.client_id:
            return web.Response(status=401, text="Error 401: invalid_client")
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in self.redirect_uris:
            return web.Response(status=400, text="Error 400: redirect_uri_mismatch")
        state = query.get("state")
        back = {"state": state} if state is not None else {}
        problem = None
        if query.get("response_type") != "code":
            problem = "unsupported_response_type"
        elif "openid" not in query.get("scope", "").split():
            problem = "invalid_scope"
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problem = "invalid_request"
        if problem:
            raise redirect_to(redirect_uri, {"error": problem, **back})
        code = "4/0" + secrets.token_urlsafe(32)
        self._grants[code] = Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=query["code_challenge"],
            nonce=query.get("nonce"),
            user=self.user,
            issued_at=time.monotonic(),
        )
        raise redirect_to(redirect_uri, {"code": code, **back, "scope": query.get("scope", "")})

    async def _token(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.token_requests.append(form)
        await self._delay_token()
        if self.fail_token_with_status is not None:
            return web.json_response(
                {"error": "internal_failure"}, status=self.fail_token_with_status
            )
        client_id, client_secret = _client_credentials(request, form)
        if client_id != self.client_id or not hmac.compare_digest(
            (client_secret or "").encode(), self.client_secret.encode()
        ):
            return _oauth_error(401, "invalid_client", "Unauthorized")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type")
        grant = self._grants.get(form.get("code", ""))
        if grant is None or grant.used:
            return _oauth_error(400, "invalid_grant", "Malformed auth code.")
        grant.used = True  # one attempt per code, successful or not
        if time.monotonic() - grant.issued_at > self.code_lifetime:
            return _oauth_error(400, "invalid_grant", "Bad Request")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if not pkce_ok(form.get("code_verifier"), grant.code_challenge):
            return _oauth_error(400, "invalid_grant", "Invalid code verifier.")
        if self.malformed_token_json:
            return web.Response(
                status=200, text='{"access_token": "ya29.trunc', content_type="application/json"
            )
        access_token = "ya29." + secrets.token_urlsafe(48)
        id_token = self._id_token(grant)
        self.issued_id_tokens.append(id_token)
        return web.json_response(
            {
                "access_token": access_token,
                "expires_in": 3599,
                "scope": "openid https://www.googleapis.com/auth/userinfo.email "
                "https://www.googleapis.com/auth/userinfo.profile",
                "token_type": "Bearer",
                "id_token": id_token,
            },
            headers={"Cache-Control": "no-store"},
        )

    # ---------------------------------------------------------------- ID tokens

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        user: FakeGoogleUser = grant.user
        claims: dict[str, Any] = {
            "iss": self.base_url,
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": user.sub,
            "iat": now,
            "exp": now + 3600,
        }
        if user.email is not None:
            claims["email"] = user.email
            claims["email_verified"] = user.email_verified
        if user.name is not None:
            claims["name"] = user.name
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        for name, value in self.id_token_overrides.items():
            if value is OMIT:
                claims.pop(name, None)
            else:
                claims[name] = value
        return self.sign(claims)

    def sign(self, claims: dict[str, Any]) -> str:
        """An ID token with these claims, signed as the switches say."""
        signing = self._keys[0]
        alg = self.id_token_alg
        if alg == "none":
            header = {"alg": "none", "kid": signing.kid, "typ": "JWT"}
            head = b64(json.dumps(header).encode())
            return f"{head}.{b64(json.dumps(claims).encode())}."
        if alg == "HS256":
            secret = OctKey.import_key(self.client_secret.encode())
            header = {"alg": "HS256", "kid": signing.kid, "typ": "JWT"}
            return jwt.encode(header, claims, secret, algorithms=["HS256"])
        key = signing
        if self.sign_with_other_key:
            if self._other_key is None:
                self._other_key = _new_rsa_key()
            key = self._other_key
        if key.get("alg") != self.id_token_alg:  # another RSA algorithm, e.g. RS512
            data = {k: v for k, v in key.as_dict(private=True).items() if k != "alg"}
            key = RSAKey.import_key(data)
        header = {"alg": self.id_token_alg, "kid": signing.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key, algorithms=[self.id_token_alg])


def _new_rsa_key() -> RSAKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return RSAKey.import_key(
        pem, parameters={"kid": secrets.token_hex(20), "use": "sig", "alg": "RS256"}
    )


def _client_credentials(
    request: web.Request, form: dict[str, str]
) -> tuple[str | None, str | None]:
    """``client_secret_basic`` (Authorization header) or ``client_secret_post`` (form)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return None, None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)
