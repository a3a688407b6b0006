"""Fake Google (OpenID Connect) and GitHub (OAuth 2) servers: real aiohttp servers on 127.0.0.1.

They implement the parts of the real services a login uses, with the same checks and the same
error bodies: client credentials, registered redirect URIs, single-use codes that expire, PKCE
S256, signed ID tokens and a JWKS (Google), bearer-protected ``/user`` and ``/user/emails``
(GitHub). The authorize endpoints log a configurable test user in at once and redirect back.
Public switches inject faults (``fail_token_with_status``, ``malformed_token_json``, …); lists
record what clients sent (``token_requests``, …). Use them as async context managers::

    async with FakeGoogle() as google:
        provider = GoogleOAuthProvider(google.client_id, google.client_secret, google.metadata_url)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from avatarstack.testkit._server import LocalServer

__all__ = [
    "OMIT",
    "FakeGitHub",
    "FakeGitHubEmail",
    "FakeGitHubUser",
    "FakeGoogle",
    "FakeGoogleUser",
]

#: an ``id_token_overrides`` value that removes the claim from the ID token
OMIT: Any = object()

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _pkce_ok(verifier: str | None, challenge: str | None) -> bool:
    if challenge is None:
        return True
    if verifier is None or not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(_s256(verifier), challenge)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _redirect(target: str, params: dict[str, str]) -> web.HTTPFound:
    separator = "&" if urlsplit(target).query else "?"
    return web.HTTPFound(f"{target}{separator}{urlencode(params)}")


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    nonce: str | None
    user: Any
    issued_at: float
    used: bool = False


class _FakeServer(LocalServer):
    """An OAuth fake: records every request and can delay its token endpoint."""

    def __init__(self) -> None:
        super().__init__()
        #: seconds the token endpoint waits before answering (cut short by ``stop()``)
        self.delay_token_seconds = 0.0
        self.requests: list[str] = []  # "METHOD /path" of every request, in order

    def _routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def _build_app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path}")
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[record])
        app.add_routes(self._routes())
        return app

    async def _delay_token(self) -> None:
        await self._sleep(self.delay_token_seconds)


# =========================================================================== Google


@dataclass
class FakeGoogleUser:
    sub: str = "108234567890123456789"
    email: str | None = "ada@example.com"
    email_verified: bool | str = True
    name: str | None = "Ada Lovelace"


class FakeGoogle(_FakeServer):
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
        self._grants: dict[str, _Grant] = {}
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
            raise _redirect(redirect_uri, {"error": problem, **back})
        code = "4/0" + secrets.token_urlsafe(32)
        self._grants[code] = _Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=query["code_challenge"],
            nonce=query.get("nonce"),
            user=self.user,
            issued_at=time.monotonic(),
        )
        raise _redirect(redirect_uri, {"code": code, **back, "scope": query.get("scope", "")})

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
        if not _pkce_ok(form.get("code_verifier"), grant.code_challenge):
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

    def _id_token(self, grant: _Grant) -> str:
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
            head = _b64(json.dumps(header).encode())
            return f"{head}.{_b64(json.dumps(claims).encode())}."
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


# =========================================================================== GitHub


@dataclass
class FakeGitHubEmail:
    email: str
    primary: bool = False
    verified: bool = False
    visibility: str | None = None


@dataclass
class FakeGitHubUser:
    id: int = 583231
    login: str = "octocat"
    name: str | None = "The Octocat"
    emails: list[FakeGitHubEmail] = field(
        default_factory=lambda: [
            FakeGitHubEmail("octocat@github.com", primary=True, verified=True, visibility="public")
        ]
    )


class FakeGitHub(_FakeServer):
    """GitHub's OAuth app endpoints and the two REST calls a login needs.

    Endpoints: ``/login/oauth/authorize``, ``/login/oauth/access_token`` (errors as HTTP 200
    with an ``error`` field, as GitHub does; JSON for ``Accept: application/json``, otherwise
    form-encoded), ``/user`` and ``/user/emails`` (``Authorization: Bearer`` with an issued
    token, else 401 ``Bad credentials``). A ``redirect_uri`` must have the host and port of the
    registered callback URL and a path inside it, as on GitHub.

    Switches: ``fail_token_with_status``, ``malformed_token_json``, ``fail_api_with_status``
    (``/user`` and ``/user/emails`` answer that status), ``code_lifetime`` (seconds, default
    600), ``delay_token_seconds``, :meth:`login_as`. Records: ``authorize_requests``,
    ``token_requests``, ``api_requests`` (``"GET /user"``…, only the authorised ones) and
    ``requests``.
    """

    def __init__(
        self,
        *,
        client_id: str = "Iv1.fakegithubclient",
        client_secret: str = "fake-github-client-secret",  # noqa: S107 - a test credential
        callback_url: str = "http://127.0.0.1:8080/api/v1/auth/oauth/github/callback",
        user: FakeGitHubUser | None = None,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.callback_url = callback_url
        self.user = user or FakeGitHubUser()
        self.code_lifetime = 600.0
        self.fail_token_with_status: int | None = None
        self.malformed_token_json = False
        self.fail_api_with_status: int | None = None
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.api_requests: list[str] = []
        self._grants: dict[str, _Grant] = {}
        self._tokens: dict[str, FakeGitHubUser] = {}

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/login/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/login/oauth/access_token"

    @property
    def api_base_url(self) -> str:
        return self.base_url

    def login_as(self, user: FakeGitHubUser) -> None:
        """The user who logs in at the next authorize requests."""
        self.user = user

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/login/oauth/authorize", self._authorize),
            web.post("/login/oauth/access_token", self._access_token),
            web.get("/user", self._user),
            web.get("/user/emails", self._emails),
        ]

    def _redirect_allowed(self, redirect_uri: str) -> bool:
        wanted, given = urlsplit(self.callback_url), urlsplit(redirect_uri)
        path = wanted.path.rstrip("/")
        return (
            (given.scheme, given.netloc) == (wanted.scheme, wanted.netloc)
            and (given.path == wanted.path or given.path.startswith(path + "/"))
            and ".." not in given.path.split("/")
        )

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorize_requests.append(query)
        if query.get("client_id") != self.client_id:
            return web.Response(status=404, text="Not Found")
        redirect_uri = query.get("redirect_uri") or self.callback_url
        if not self._redirect_allowed(redirect_uri):
            return web.Response(
                status=400,
                text="The redirect_uri is not associated with this application.",
            )
        state = query.get("state")
        back = {"state": state} if state is not None else {}
        challenge = query.get("code_challenge")
        method = query.get("code_challenge_method")
        if (challenge or method) and (method != "S256" or not challenge):
            raise _redirect(redirect_uri, {"error": "invalid_request", **back})
        code = secrets.token_hex(10)
        self._grants[code] = _Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            nonce=None,
            user=self.user,
            issued_at=time.monotonic(),
        )
        raise _redirect(redirect_uri, {"code": code, **back})

    async def _access_token(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.token_requests.append(form)
        await self._delay_token()
        as_json = "application/json" in request.headers.get("Accept", "")
        if self.fail_token_with_status is not None:
            return web.Response(status=self.fail_token_with_status, text="Whoa there!")
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
            form.get("client_secret", "").encode(), self.client_secret.encode()
        ):
            return _github_error(
                as_json,
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            )
        grant = self._grants.get(form.get("code", ""))
        bad_code = "The code passed is incorrect or expired."
        if grant is None or grant.used:
            return _github_error(as_json, "bad_verification_code", bad_code)
        grant.used = True
        if time.monotonic() - grant.issued_at > self.code_lifetime:
            return _github_error(as_json, "bad_verification_code", bad_code)
        redirect_uri = form.get("redirect_uri")
        if redirect_uri is not None and redirect_uri != grant.redirect_uri:
            return _github_error(
                as_json,
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            )
        if not _pkce_ok(form.get("code_verifier"), grant.code_challenge):
            return _github_error(as_json, "bad_verification_code", bad_code)
        if self.malformed_token_json:
            return web.Response(text='{"access_token": "gho_', content_type="application/json")
        token = "gho_" + secrets.token_hex(18)
        self._tokens[token] = grant.user
        body = {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}
        if as_json:
            return web.json_response(body)
        return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")

    def _authorised_user(self, request: web.Request) -> FakeGitHubUser | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in {"bearer", "token"}:
            return None
        return self._tokens.get(token)

    async def _user(self, request: web.Request) -> web.Response:
        user = self._authorised_user(request)
        if user is None:
            return _bad_credentials()
        self.api_requests.append("GET /user")
        if self.fail_api_with_status is not None:
            return _api_failure(self.fail_api_with_status)
        public = next(
            (e.email for e in user.emails if e.primary and e.visibility == "public"), None
        )
        return web.json_response(
            {
                "login": user.login,
                "id": user.id,
                "node_id": _b64(f"04:User{user.id}".encode()),
                "type": "User",
                "site_admin": False,
                "name": user.name,
                "email": public,
            }
        )

    async def _emails(self, request: web.Request) -> web.Response:
        user = self._authorised_user(request)
        if user is None:
            return _bad_credentials()
        self.api_requests.append("GET /user/emails")
        if self.fail_api_with_status is not None:
            return _api_failure(self.fail_api_with_status)
        return web.json_response(
            [
                {
                    "email": e.email,
                    "primary": e.primary,
                    "verified": e.verified,
                    "visibility": e.visibility,
                }
                for e in user.emails
            ]
        )


def _github_error(as_json: bool, error: str, description: str) -> web.Response:
    body = {
        "error": error,
        "error_description": description,
        "error_uri": "https://docs.github.com/apps/managing-oauth-apps/"
        "troubleshooting-oauth-app-access-token-request-errors/",
    }
    if as_json:
        return web.json_response(body)  # GitHub answers these with HTTP 200
    return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")


def _bad_credentials() -> web.Response:
    return web.json_response(
        {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
        status=401,
    )


def _api_failure(status: int) -> web.Response:
    if status == 401:
        return _bad_credentials()
    return web.json_response({"message": "Server Error"}, status=status)
