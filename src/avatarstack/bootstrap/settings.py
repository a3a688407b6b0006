"""Settings: one pydantic-settings model, read once in bootstrap; nothing else reads the env.

Environment variables use the prefix ``AVATARSTACK_`` and ``__`` between nested names, e.g.
``AVATARSTACK_HTTP__PORT=9000``. A ``.env`` file in the working directory is read too. The
reference of every setting is ``docs/configuration.md`` (a test keeps the two in sync).

Why this file is a little over 500 lines: it holds every built-in section, so the settings are
read and checked in one place; the vendors' sections already live with their plugins
(``plugins/builtin/settings``).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# defined with the plugins that read them; re-exported (``as``) for existing imports
from avatarstack.plugins.builtin.settings import GitHubSettings as GitHubSettings
from avatarstack.plugins.builtin.settings import GoogleSettings as GoogleSettings
from avatarstack.plugins.builtin.settings import HeyGenSettings as HeyGenSettings
from avatarstack.plugins.builtin.settings import LiveAvatarSettings as LiveAvatarSettings
from avatarstack.plugins.builtin.settings import OpenAISettings as OpenAISettings

MIN_SECRET_BYTES = 32


def _scheme(url: str) -> str:
    """``postgresql+asyncpg://…`` → ``postgresql``; ``SQLITE:///x`` → ``sqlite``."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


#: ``sslmode`` values that encrypt the connection (libpq's names, which asyncpg honours)
TLS_SSLMODES = ("require", "verify-ca", "verify-full")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _untrusted_transport(name: str, url: str) -> str | None:
    """Why a PostgreSQL URL is unsafe in production: a database on another host reached without
    TLS (``sslmode`` missing, ``disable``, ``allow`` or ``prefer``). None when it is safe."""
    if _scheme(url) not in {"postgres", "postgresql"}:
        return None
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    hosts = [h.strip() for h in (parts.hostname or query.get("host", "")).split(",") if h.strip()]
    remote = [h for h in hosts if h.strip("[]") not in _LOOPBACK_HOSTS and not h.startswith("/")]
    mode = query.get("sslmode", "").lower()
    if not remote or mode in TLS_SSLMODES:
        return None
    return (
        f"{name} reaches {remote[0]} without TLS (sslmode={mode or 'unset'}); add "
        "?sslmode=require, or sslmode=verify-full&sslrootcert=/path/to/ca.pem to also check "
        "the server's certificate"
    )


class HttpSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface `serve` binds to.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port `serve` listens on.")
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted on JSON routes (413)."
    )
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest multipart upload (document files)."
    )
    shutdown_timeout: float = Field(
        30.0, gt=0, description="Seconds in-flight requests get to finish on SIGTERM."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy addresses/networks whose X-Forwarded-* headers are honoured.",
    )
    access_log: bool = Field(True, description="Log one line per request.")


class DatabaseSettings(BaseModel):
    pool_min_size: int = Field(1, ge=0, description="PostgreSQL: connections kept open.")
    pool_max_size: int = Field(10, ge=1, description="PostgreSQL: most connections per process.")
    command_timeout: float = Field(30.0, gt=0, description="Seconds before a query is cancelled.")
    acquire_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a free pooled connection before a 503."
    )
    connect_timeout: float = Field(10.0, gt=0, description="Seconds for one connection attempt.")
    startup_timeout: float = Field(
        30.0, ge=0, description="Seconds `serve` keeps retrying while the database starts."
    )
    statement_cache_size: int | None = Field(
        None,
        ge=0,
        description="asyncpg prepared-statement cache; unset = 100, or 0 for pooled hosts "
        "(PgBouncer, Neon `-pooler`, `?pgbouncer=true`).",
    )
    sqlite_busy_timeout: float = Field(5.0, gt=0, description="SQLite: seconds to wait for a lock.")
    listen_url: str | None = Field(
        None,
        description="PostgreSQL: direct (non-pooler) URL for LISTEN/NOTIFY between instances; "
        "default: the database URL, with `-pooler` dropped from Neon hosts.",
    )


class AuthSettings(BaseModel):
    access_token_ttl: int = Field(
        900, ge=1, le=900, description="Access-token lifetime in seconds (at most 15 min)."
    )
    refresh_token_ttl_days: int = Field(
        30, ge=1, le=365, description="Days a login session lasts without use."
    )
    verification_ttl_hours: int = Field(
        24, ge=1, le=168, description="Hours an e-mail verification link stays valid."
    )
    reset_ttl_minutes: int = Field(
        60, ge=5, le=60, description="Minutes a password-reset link stays valid."
    )
    first_account_admin: bool = Field(
        True,
        description="Outside production, the first account registered on an empty "
        "installation becomes its admin, so a person trying avatarstack can upload and build "
        "from the console alone. Production never does this: create admins with "
        "`avatarstack users create --role admin`.",
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        "HS256", description="Access-token signature (keyed by the secret key)."
    )
    jwt_issuer: str | None = Field(None, description="`iss` claim; default: the public URL.")
    jwt_audience: str = Field("avatarstack", description="`aud` claim.")
    previous_secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Retired secret keys whose access tokens still verify (key rotation).",
    )
    password_hasher: Literal["argon2id", "scrypt"] = Field(
        "argon2id", description="`argon2id` (OWASP parameters) or `scrypt`."
    )
    max_concurrent_hashes: int | None = Field(
        None, ge=1, description="Password hashes running at once; default: CPU count."
    )
    rate_limits: bool = Field(True, description="Per-IP and per-account abuse limits.")
    principal_cache_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="How long a verified access token's caller is remembered per instance; "
        "changes on another instance apply within this time (0: check the database on every "
        "request).",
    )
    refresh_reuse_grace_seconds: float = Field(
        10.0,
        ge=0,
        le=60,
        description="A used refresh token presented again within this time returns the same "
        "successor (tabs refreshing at once); later it ends the session (0: never).",
    )


class MailSettings(BaseModel):
    backend: Literal["console", "smtp"] = Field("console", description="`console` or `smtp`.")
    smtp_host: str | None = Field(None, description="SMTP server host.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(None, description="SMTP user name.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_timeout: float = Field(10.0, gt=0, description="Seconds per SMTP operation.")
    from_: str = Field(
        "avatarstack <no-reply@localhost>",
        alias="from",
        description="Sender address (`AVATARSTACK_MAIL__FROM`).",
    )

    model_config = {"populate_by_name": True}


class OAuthSettings(BaseModel):
    google: GoogleSettings = Field(default_factory=GoogleSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)


class KbSettings(BaseModel):
    chroma_path: Path | None = Field(
        None, description="Embedded Chroma folder (default: data dir)."
    )
    chroma_url: str | None = Field(
        None,
        description="Chroma server URL; set ⇒ HttpClient. `memory://`: in-process index (tests).",
    )
    embedder: str = Field("hashing", description="Name of a registered embedder.")
    parsers: list[str] = Field(
        default_factory=list,
        description="Preferred parser names, first wins when several accept a file type "
        '(e.g. `["pdfium", "pypdf"]`); default: registration order.',
    )
    parse_timeout_seconds: float = Field(
        120.0, gt=0, description="Wall-clock limit for parsing one file (child process)."
    )
    parse_memory_mb: int = Field(
        1024, ge=64, description="Address-space limit of the parsing child process."
    )
    hnsw_m: int = Field(
        64, ge=4, le=256, description="Chroma HNSW links per node of new generations."
    )
    hnsw_construction_ef: int = Field(
        400, ge=10, description="Chroma HNSW candidate list while building new generations."
    )
    hnsw_search_ef: int = Field(
        400, ge=10, description="Chroma HNSW candidate list per search (recall against speed)."
    )
    chunk_chars: int = Field(
        300,
        ge=100,
        description="Target characters per chunk (300: measured on benchmarks/retrieval.py).",
    )
    chunk_overlap_chars: int = Field(
        100, ge=0, description="Characters repeated from the previous chunk."
    )
    keep_generations: int = Field(
        5, ge=1, description="Index generations kept (the active one is never dropped)."
    )
    auto_activate: bool = Field(
        False,
        description="After each successful ingestion build a generation and activate it "
        "when the golden set does not regress.",
    )
    search_k: int = Field(5, ge=1, le=50, description="Results per search when `k` is omitted.")
    dense_weight: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Weight of the dense (vector) channel in the fused search score, the "
        "lexical (BM25) channel gets the rest; unset: 0.1 with the `hashing` embedder, 0.5 "
        "with any other.",
    )
    search_candidates: int = Field(
        50, ge=1, le=1000, description="Results each channel contributes to the fusion."
    )
    related_terms: dict[str, str] = Field(
        default_factory=dict,
        description="Everyday equivalents the lexical channel adds to a question, on top of "
        'the built-in table: a word → space-separated words, e.g. {"mains": "power supply"} '
        "(JSON in the environment variable). Query-side only: no rebuild needed.",
    )
    worker_concurrency: int = Field(
        2, ge=1, le=32, description="Jobs one worker runs at once (`serve` and `worker`)."
    )
    job_lease_seconds: float = Field(
        60.0, ge=5, description="A job whose worker stops heartbeating is retried after this."
    )


class AvatarSettings(BaseModel):
    provider: str = Field("text", description="`text`, `liveavatar`, `heygen` or a plugin's.")
    sessions_per_user: int = Field(1, ge=1, le=20, description="Avatar sessions one user may run.")
    sessions_total: int = Field(
        3, ge=1, description="Avatar sessions the deployment may run (below the vendor's limit)."
    )
    keep_alive_seconds: float = Field(
        60.0, gt=0, description="Keep-alive cadence for sessions in use."
    )
    stop_idle_after_seconds: float = Field(
        300.0, gt=0, description="Stop a session nobody used for this long (it costs money)."
    )
    renew_before_seconds: float = Field(
        90.0, ge=0, description="Start a replacement this long before the vendor's duration cap."
    )
    maintenance_seconds: float = Field(
        10.0, gt=0, description="How often keep-alive, idle stop and renewal are checked."
    )
    heygen: HeyGenSettings = Field(default_factory=HeyGenSettings)
    liveavatar: LiveAvatarSettings = Field(default_factory=LiveAvatarSettings)


class AnswerSettings(BaseModel):
    engine: str = Field("extractive", description="`extractive` or `openai`.")
    passages: int = Field(5, ge=1, le=20, description="Search results given to the engine.")
    min_score: float = Field(
        0.15,
        ge=-1,
        le=1,
        description="Results below this search score (the fused 0..1 score of both channels) "
        "count as not relevant.",
    )
    openai: OpenAISettings = Field(default_factory=OpenAISettings)


class RealtimeSettings(BaseModel):
    heartbeat_seconds: float = Field(
        20.0, gt=0, description="WebSocket ping interval; a peer that misses a pong is dropped."
    )
    auth_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a new socket has to send its `auth` frame."
    )
    max_message_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest client frame (larger: close 1009)."
    )
    connections_per_user: int = Field(
        10, ge=1, description="Open sockets one user may have on one instance (more: 4429)."
    )
    messages_per_second: float = Field(
        10.0, gt=0, description="Client frames per second per socket (bursts of three times that)."
    )
    queue_size: int = Field(
        512, ge=16, description="Frames waiting for a slow client before it must resume (4008)."
    )
    recheck_seconds: float = Field(
        30.0, gt=0, description="How often a socket's token and session are checked again."
    )
    answer_workers: int = Field(
        16, ge=1, le=256, description="Answers one instance computes at once."
    )
    answer_lease_seconds: float = Field(
        15.0,
        ge=1,
        description="An answer whose instance died is resumed by another instance after this.",
    )
    command_ack_seconds: float = Field(
        2.0,
        gt=0,
        le=30,
        description="How long an avatar command relayed to another instance's socket may take "
        "to be acknowledged (then: no browser is connected, 409).",
    )


class ConsoleSettings(BaseModel):
    enabled: bool = Field(True, description="Serve the web console at `/` (and `/console/…`).")
    livekit_client_url: str = Field(
        "/console/vendor/livekit-client/livekit-client.esm.mjs",
        description="URL of the livekit-client ES module the console imports (default: the "
        "vendored copy); another origin is added to the console's `script-src`.",
    )
    livekit_connect_src: list[str] = Field(
        default_factory=lambda: ["wss://*.livekit.cloud", "https://*.livekit.cloud"],
        description="Origins the LiveKit client may connect to (the console's `connect-src`).",
    )


class Settings(BaseSettings):
    """Every setting of avatarstack. Build it once (``Settings()``) and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="AVATARSTACK_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses unsafe settings, hides dev helpers."
    )
    data_dir: Path = Field(Path(".avatarstack"), description="Embedded data folder.")
    database_url: str | None = Field(
        None,
        description="`sqlite:///path`, `postgresql://…` or `memory://` (tests; not kept); "
        "default: SQLite in the data dir.",
    )
    public_url: str | None = Field(
        None, description="Base URL for links in e-mails and OAuth callbacks."
    )
    secret_key: SecretStr | None = Field(
        None, description="JWT signing secret; dev default generated into the data dir."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest log level written."
    )
    log_format: Literal["auto", "console", "json"] = Field(
        "auto", description="`auto` = console in development, JSON in production."
    )
    load_plugins: str | None = Field(
        None,
        description="Comma-separated entry-point names to load; empty string loads none; "
        "unset loads all installed plugins.",
    )
    maintenance_interval: float = Field(
        3600.0, gt=0, description="Seconds between purges of expired tokens and limit windows."
    )
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of third-party plugins by plugin name "
        "(`AVATARSTACK_PLUGINS__<NAME>__<KEY>`); secret-looking keys are masked when shown.",
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    oauth: OAuthSettings = Field(default_factory=OAuthSettings)
    kb: KbSettings = Field(default_factory=KbSettings)
    avatar: AvatarSettings = Field(default_factory=AvatarSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = _scheme(value)
        if scheme not in {"sqlite", "postgres", "postgresql", "memory"}:
            raise ValueError("use sqlite:///path, postgresql://user@host/db or memory://")
        return value

    @model_validator(mode="after")
    def _production_is_safe(self) -> Settings:
        if self.env != "production":
            return self
        problems: list[str] = []
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(key.encode()) < MIN_SECRET_BYTES:
            problems.append(
                f"AVATARSTACK_SECRET_KEY must be set to at least {MIN_SECRET_BYTES} bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if not self.public_url:
            problems.append("AVATARSTACK_PUBLIC_URL must be set (links in e-mails use it)")
        if self.mail.backend == "console":
            problems.append(
                "AVATARSTACK_MAIL__BACKEND=console writes login links to the log; use smtp"
            )
        if self.mail.backend == "smtp" and not self.mail.smtp_host:
            problems.append("AVATARSTACK_MAIL__SMTP_HOST is required with the smtp backend")
        for name, url in (
            ("AVATARSTACK_DATABASE_URL", self.database_url),
            ("AVATARSTACK_DATABASE__LISTEN_URL", self.database.listen_url),
        ):
            if url and (problem := _untrusted_transport(name, url)):
                problems.append(problem)
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    # ------------------------------------------------------------------ derived values

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'avatarstack.db').as_posix()}"

    @property
    def storage_backend(self) -> Literal["sqlite", "postgres", "memory"]:
        scheme = _scheme(self.resolved_database_url)
        if scheme == "sqlite":
            return "sqlite"
        return "memory" if scheme == "memory" else "postgres"

    @property
    def sqlite_path(self) -> str:
        """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
        url = self.resolved_database_url
        path = url.split(":///", 1)[1] if ":///" in url else url.split(":", 1)[1]
        return path or ":memory:"

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.http.host in {"0.0.0.0", "::", ""} else self.http.host  # noqa: S104
        return f"http://{host}:{self.http.port}"

    @property
    def chroma_path(self) -> Path:
        return self.kb.chroma_path or self.data_dir / "chroma"

    def resolved_secret_key(self) -> SecretStr:
        """The configured key, or (development only) one generated once into the data dir."""
        if self.secret_key is not None:
            return self.secret_key
        if self.is_production:  # pragma: no cover - prevented by validation
            raise ValueError("AVATARSTACK_SECRET_KEY is required in production")
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return SecretStr(path.read_text().strip())


_SECRET_QUERY_KEYS = re.compile(r"(?i)pass|secret|token|key|auth|credential")


def mask_url(url: str) -> str:
    """Hide the password of a URL and secret-looking query values
    (``postgresql://u:***@host/db?sslmode=require&password=***``)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(
        f"{k}=***" if _SECRET_QUERY_KEYS.search(k) else (f"{k}={v}" if v else k)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def masked(settings: Settings) -> dict[str, Any]:
    """All settings as plain data with every secret replaced by ``***`` (``config show``)."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "***" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {name: walk(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, tuple):
            return [walk(v) for v in value]
        return value

    data: dict[str, Any] = walk(settings)
    data["plugins"] = {
        name: {k: "***" if _SECRET_QUERY_KEYS.search(k) else v for k, v in values.items()}
        for name, values in settings.plugins.items()
    }
    data["database_url"] = mask_url(settings.resolved_database_url)
    if settings.kb.chroma_url:
        data["kb"]["chroma_url"] = mask_url(settings.kb.chroma_url)
    if settings.database.listen_url:
        data["database"]["listen_url"] = mask_url(settings.database.listen_url)
    if data.get("secret_key") is None:
        data["secret_key"] = "(generated in data dir)" if not settings.is_production else None
    if data["mail"].get("from_") is not None:
        data["mail"]["from"] = data["mail"].pop("from_")
    return data
