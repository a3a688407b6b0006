"""Settings: environment names from the public contract, production refusals, masking."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from avatarstack.bootstrap.settings import Settings, mask_url, masked

STRONG = "k" * 48


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(__import__("os").environ):
        if name.startswith("AVATARSTACK_"):
            monkeypatch.delenv(name)


def test_defaults_are_embedded_and_offline() -> None:
    settings = Settings()
    assert settings.env == "development"
    assert settings.storage_backend == "sqlite"
    assert settings.resolved_database_url == "sqlite:///.avatarstack/avatarstack.db"
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8080
    assert settings.resolved_public_url == "http://127.0.0.1:8080"
    assert settings.mail.backend == "console"
    assert settings.avatar.provider == "text"
    assert settings.answer.engine == "extractive"
    assert settings.chroma_path == Path(".avatarstack/chroma")


def test_environment_names_follow_the_public_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "AVATARSTACK_DATABASE_URL": "postgresql://u:pw@db.example/app?sslmode=require",
        "AVATARSTACK_HTTP__PORT": "9001",
        "AVATARSTACK_MAIL__BACKEND": "smtp",
        "AVATARSTACK_MAIL__SMTP_PASSWORD": "hunter2",
        "AVATARSTACK_MAIL__FROM": "Team <team@example.com>",
        "AVATARSTACK_OAUTH__GITHUB__CLIENT_ID": "gh-id",
        "AVATARSTACK_KB__CHROMA_URL": "http://chroma:8000",
        "AVATARSTACK_AVATAR__PROVIDER": "liveavatar",
        "AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY": "la-key",
        "AVATARSTACK_ANSWER__OPENAI__MODEL": "my-model",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.storage_backend == "postgres"
    assert settings.http.port == 9001
    assert settings.mail.from_ == "Team <team@example.com>"
    assert settings.mail.smtp_password is not None
    assert settings.oauth.github.client_id == "gh-id"
    assert settings.kb.chroma_url == "http://chroma:8000"
    assert settings.avatar.liveavatar.api_key is not None
    assert settings.answer.openai.model == "my-model"


def test_an_unknown_database_scheme_is_refused() -> None:
    with pytest.raises(ValidationError, match="sqlite:///path"):
        Settings(database_url="mysql://x")


def test_production_refuses_unsafe_settings_and_says_what_to_fix() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(env="production", secret_key="short")
    message = str(info.value)
    assert "AVATARSTACK_SECRET_KEY" in message
    assert "AVATARSTACK_PUBLIC_URL" in message
    assert "AVATARSTACK_MAIL__BACKEND=console" in message


def test_production_accepts_safe_settings() -> None:
    settings = Settings(
        env="production",
        secret_key=STRONG,
        public_url="https://avatars.example.com/",
        mail={"backend": "smtp", "smtp_host": "smtp.example.com"},
    )
    assert settings.resolved_public_url == "https://avatars.example.com"


def test_the_development_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = settings.resolved_secret_key().get_secret_value()
    second = Settings(data_dir=tmp_path / "data").resolved_secret_key().get_secret_value()
    assert first == second
    assert len(first) >= 32
    mode = (tmp_path / "data" / "secret_key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_sqlite_urls_resolve_relative_and_absolute_paths() -> None:
    assert Settings(database_url="sqlite:///rel/x.db").sqlite_path == "rel/x.db"
    assert Settings(database_url="sqlite:////abs/x.db").sqlite_path == "/abs/x.db"


def test_masking_hides_every_secret_and_database_passwords() -> None:
    settings = Settings(
        database_url="postgresql://app:s3cret@db/app",
        secret_key=STRONG,
        mail={"smtp_password": "hunter2"},
        avatar={"heygen": {"api_key": "hg-key"}},
    )
    shown = masked(settings)
    flat = repr(shown)
    for secret in ("s3cret", STRONG, "hunter2", "hg-key"):
        assert secret not in flat
    assert shown["database_url"] == "postgresql://app:***@db/app"
    assert shown["avatar"]["heygen"]["api_key"] == "***"
    assert shown["mail"]["from"].startswith("avatarstack")


def test_mask_url_leaves_urls_without_password_alone() -> None:
    assert mask_url("postgresql://app@db/app") == "postgresql://app@db/app"


def test_driver_suffixes_and_upper_case_schemes_select_the_right_backend() -> None:
    assert Settings(database_url="SQLITE:///x.db").storage_backend == "sqlite"
    assert Settings(database_url="sqlite+aiosqlite:///x.db").storage_backend == "sqlite"
    assert Settings(database_url="postgresql+asyncpg://db/x").storage_backend == "postgres"


def test_mask_url_hides_secret_query_parameters() -> None:
    masked_url = mask_url("postgresql://u@db/x?sslmode=require&password=pw&sslkey=k")
    assert masked_url == "postgresql://u@db/x?sslmode=require&password=***&sslkey=***"


def test_plugin_settings_come_from_nested_variables_and_secrets_are_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AVATARSTACK_PLUGINS__OIDC__CLIENT_ID", "abc")
    monkeypatch.setenv("AVATARSTACK_PLUGINS__OIDC__CLIENT_SECRET", "s3cret")
    settings = Settings()
    assert settings.plugins == {"oidc": {"client_id": "abc", "client_secret": "s3cret"}}
    assert masked(settings)["plugins"] == {"oidc": {"client_id": "abc", "client_secret": "***"}}


SAFE_PRODUCTION: dict[str, object] = {
    "env": "production",
    "secret_key": STRONG,
    "public_url": "https://avatars.example.com/",
    "mail": {"backend": "smtp", "smtp_host": "smtp.example.com"},
}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db.example.com/app",
        "postgresql://app:pw@db.example.com/app?sslmode=prefer",
        "postgres://app@10.0.0.5:5432/app?sslmode=disable",
        "postgresql://app@/app?host=db.internal",
    ],
)
def test_production_refuses_a_remote_database_without_tls_and_names_the_setting(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**SAFE_PRODUCTION, database_url=url)
    message = str(info.value)
    assert "AVATARSTACK_DATABASE_URL" in message
    assert "sslmode=require" in message
    assert "pw" not in message.replace("sslmode", "")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db.example.com/app?sslmode=require",
        "postgresql://app:pw@db.example.com/app?sslmode=verify-ca&sslrootcert=/etc/ca.pem",
        "postgresql://app:pw@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        "postgresql://app@127.0.0.1:5432/app",
        "postgresql://app@localhost/app?sslmode=disable",
        "postgresql://app@[::1]/app",
        "postgresql://app@/app?host=/var/run/postgresql",
        "sqlite:////srv/avatarstack.db",
    ],
)
def test_production_accepts_tls_or_a_database_on_this_machine(url: str) -> None:
    assert Settings(**SAFE_PRODUCTION, database_url=url).database_url == url


def test_production_checks_the_listen_url_too() -> None:
    with pytest.raises(ValidationError, match="AVATARSTACK_DATABASE__LISTEN_URL"):
        Settings(
            **SAFE_PRODUCTION,
            database_url="postgresql://app@db-pooler.example.com/app?sslmode=require",
            database={"listen_url": "postgresql://app@db.example.com/app"},
        )


def test_development_accepts_a_remote_database_without_tls() -> None:
    assert Settings(database_url="postgresql://app@db.example.com/app").env == "development"
