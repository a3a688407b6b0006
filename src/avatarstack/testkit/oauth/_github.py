"""A fake GitHub: OAuth 2 (no OpenID) and the ``/user`` API for one OAuth app."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from avatarstack.testkit.oauth._common import Grant, OAuthServer, b64, pkce_ok, redirect_to


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


class FakeGitHub(OAuthServer):
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
        self._grants: dict[str, Grant] = {}
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
            raise redirect_to(redirect_uri, {"error": "invalid_request", **back})
        code = secrets.token_hex(10)
        self._grants[code] = Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            nonce=None,
            user=self.user,
            issued_at=time.monotonic(),
        )
        raise redirect_to(redirect_uri, {"code": code, **back})

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
        if not pkce_ok(form.get("code_verifier"), grant.code_challenge):
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
                "node_id": b64(f"04:User{user.id}".encode()),
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
