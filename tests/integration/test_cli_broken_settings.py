"""Every CLI command under broken settings says what to fix in one line, never a traceback.

The commands come from the CLI itself (every command and subcommand of ``avatarstack``), so a
new command is walked as soon as it exists; each runs as a real process, as operators run it."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest

from avatarstack.bootstrap.cli import cli

#: arguments a command needs to get past click's own parsing
ARGUMENTS: dict[str, list[str]] = {
    "serve": ["--port", "0"],
    "ingest": ["{file}"],
    "users create": ["someone@example.test"],
    "users set-roles": ["someone@example.test", "member"],
    "kb activate": ["no-such-generation"],
}

BROKEN = {
    "an embedder that is not installed": (
        {"AVATARSTACK_KB__EMBEDDER": "st:/nonexistent"},
        "AVATARSTACK_KB__EMBEDDER",
    ),
    "a database URL of an unknown kind": (
        {"AVATARSTACK_DATABASE_URL": "mysql://someone@db.example/app"},
        "AVATARSTACK_DATABASE_URL",
    ),
    "a database nobody answers on": (
        {
            "AVATARSTACK_DATABASE_URL": "postgresql://someone:pw@127.0.0.1:9/app",
            "AVATARSTACK_DATABASE__STARTUP_TIMEOUT": "0",
        },
        "AVATARSTACK_DATABASE_URL",
    ),
    "a short secret in production": (
        {"AVATARSTACK_ENV": "production", "AVATARSTACK_SECRET_KEY": "short"},
        "AVATARSTACK_SECRET_KEY",
    ),
}


def commands(group: click.Group = cli, prefix: str = "") -> list[str]:
    found: list[str] = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found += commands(command, f"{path} ")
        else:
            found.append(path)
    return found


def test_the_walk_covers_the_commands_help_lists() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "avatarstack", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert {c.split()[0] for c in commands()} <= set(listed.split())
    assert len(commands()) >= 10


@pytest.mark.parametrize("broken", list(BROKEN), ids=list(BROKEN))
def test_every_command_under_broken_settings_fails_in_one_line_naming_the_variable(
    broken: str, tmp_path: Path
) -> None:
    settings, variable = BROKEN[broken]
    document = tmp_path / "notes.txt"
    document.write_text("A short note.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    env.update(AVATARSTACK_DATA_DIR=str(tmp_path / "data"), AVATARSTACK_LOAD_PLUGINS="", **settings)

    def run(command: str) -> subprocess.CompletedProcess[str] | None:
        args = [a.replace("{file}", str(document)) for a in ARGUMENTS.get(command, [])]
        try:
            return subprocess.run(
                [sys.executable, "-m", "avatarstack", *command.split(), *args],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(commands(), pool.map(run, commands()), strict=True))
    failures: list[str] = []
    for command, done in results.items():
        if done is None:
            failures.append(f"{command}: still running after 90 s")
            continue
        output = done.stdout + done.stderr
        if "Traceback" in output:
            failures.append(f"{command}: a traceback\n{output[-1500:]}")
        elif done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            if not last.startswith("Error: ") or variable not in last:
                failures.append(f"{command}: exit {done.returncode}, last line {last!r}")
    assert failures == [], "\n".join(failures)
