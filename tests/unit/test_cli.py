"""The command line: version, config show (masked), plugins, migrate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from avatarstack import __version__
from avatarstack.adapters.sql import load_migrations
from avatarstack.bootstrap.cli import cli


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVATARSTACK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AVATARSTACK_LOAD_PLUGINS", "")
    monkeypatch.setenv("AVATARSTACK_LOG_LEVEL", "warning")
    return CliRunner()


def test_version_prints_the_package_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_config_show_prints_settings_with_secrets_masked(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVATARSTACK_DATABASE_URL", "postgresql://u:topsecret@db/x")
    monkeypatch.setenv("AVATARSTACK_AVATAR__HEYGEN__API_KEY", "hg-secret")
    result = runner.invoke(cli, ["config", "show"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["database_url"] == "postgresql://u:***@db/x"
    assert shown["avatar"]["heygen"]["api_key"] == "***"
    assert "topsecret" not in result.output
    assert "hg-secret" not in result.output


def test_invalid_settings_are_reported_without_a_traceback(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVATARSTACK_HTTP__PORT", "not-a-port")
    result = runner.invoke(cli, ["config", "show"])
    assert result.exit_code != 0
    assert "invalid settings" in result.output
    assert "AVATARSTACK_HTTP__PORT" in result.output  # the variable to fix
    assert "Traceback" not in result.output


def test_plugins_lists_the_builtins_as_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert listed["routes"]["hooks"] == ["register_routes"]
    assert listed["routes"]["version"] == __version__


def test_plugins_prints_a_table(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert "routes" in result.output
    assert "register_routes" in result.output


def test_migrate_applies_once_then_reports_up_to_date(runner: CliRunner, tmp_path: Path) -> None:
    first = runner.invoke(cli, ["migrate"])
    assert first.exit_code == 0, first.output
    versions = ", ".join(m.version for m in load_migrations("avatarstack.adapters.sqlite"))
    assert f"applied migrations: {versions}" in first.output
    assert (tmp_path / "data" / "avatarstack.db").exists()
    second = runner.invoke(cli, ["migrate"])
    assert second.exit_code == 0
    assert "up to date" in second.output


def test_migrate_against_an_unreachable_database_fails_clearly(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVATARSTACK_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("AVATARSTACK_DATABASE__STARTUP_TIMEOUT", "0")
    result = runner.invoke(cli, ["migrate"])
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert "Traceback" not in result.output


def test_users_create_makes_a_verified_user_with_roles_and_a_password_from_stdin(
    runner: CliRunner,
) -> None:
    result = runner.invoke(
        cli,
        ["users", "create", "Admin@Example.com", "--role", "admin", "--password-stdin"],
        input="correct horse battery\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin@example.com" in result.output
    assert "roles admin" in result.output


def test_users_create_without_a_password_sets_none(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["users", "create", "bob@example.com"], input="")
    assert result.exit_code == 0, result.output
    assert "no password set" in result.output


def test_users_create_refuses_a_weak_password_and_a_duplicate(runner: CliRunner) -> None:
    weak = runner.invoke(cli, ["users", "create", "c@example.com", "--password-stdin"], input="x\n")
    assert weak.exit_code == 1
    assert "at least 8 characters" in weak.output
    assert runner.invoke(cli, ["users", "create", "d@example.com"], input="").exit_code == 0
    again = runner.invoke(cli, ["users", "create", "D@example.com"], input="")
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_users_set_roles_replaces_roles_but_keeps_the_last_admin(runner: CliRunner) -> None:
    runner.invoke(cli, ["users", "create", "a@example.com", "--role", "admin"], input="")
    runner.invoke(cli, ["users", "create", "e@example.com"], input="")
    changed = runner.invoke(cli, ["users", "set-roles", "e@example.com", "editor", "member"])
    assert changed.exit_code == 0, changed.output
    assert "e@example.com: editor, member" in changed.output
    last_admin = runner.invoke(cli, ["users", "set-roles", "a@example.com", "member"])
    assert last_admin.exit_code == 1
    assert "last admin" in last_admin.output
    unknown = runner.invoke(cli, ["users", "set-roles", "nobody@example.com", "member"])
    assert unknown.exit_code == 1
    assert "no user" in unknown.output
