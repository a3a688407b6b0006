"""Every CLI command under broken settings says what to fix in one line, never a traceback.

The commands come from the CLI itself (every command and subcommand of ``avatarstack``), so a
new command is walked as soon as it exists; each runs as a process of its own, forked from one
that imported the CLI once (as operators run it, minus the seconds of imports per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    "backup": ["{dir}/backup.tar.gz"],
    # an existing file: the settings are read before the archive is
    "restore": ["{file}"],
    "copy-data": ["--to", "postgresql://someone@127.0.0.1:9/target"],
}

#: commands given arguments that name nothing real (no archive, no reachable target): they
#: may fail on those before, or without, reading the broken setting, in one clear line all the
#: same
OWN_FAILURES = {"backup", "restore", "copy-data"}

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


#: runs every command given as JSON in argv[1] as its own process, forked from one that has
#: imported the CLI once (importing it costs seconds; a fork costs milliseconds), with the
#: child's stdout and stderr on files; prints {command: [exit code, output]} as JSON
RUNNER = """
import json, os, sys, tempfile, time, traceback
from avatarstack.bootstrap.cli import main
results = {}
for command, args in json.loads(sys.argv[1]).items():
    with tempfile.TemporaryFile() as out:
        pid = os.fork()
        if pid == 0:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            sys.argv = ["avatarstack", *command.split(), *args]
            code = 0
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                traceback.print_exc()
                code = 98
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                code = None
                break
            time.sleep(0.01)
        out.seek(0)
        results[command] = [code, out.read().decode(errors="replace")]
print(json.dumps(results))
"""


@pytest.mark.parametrize("broken", list(BROKEN), ids=list(BROKEN))
def test_every_command_under_broken_settings_fails_in_one_line_naming_the_variable(
    broken: str, tmp_path: Path
) -> None:
    settings, variable = BROKEN[broken]
    document = tmp_path / "notes.txt"
    document.write_text("A short note.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    env.update(AVATARSTACK_DATA_DIR=str(tmp_path / "data"), AVATARSTACK_LOAD_PLUGINS="", **settings)
    walk = {
        command: [
            a.replace("{file}", str(document)).replace("{dir}", str(tmp_path))
            for a in ARGUMENTS.get(command, [])
        ]
        for command in commands()
    }
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(walk)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) == set(walk)
    failures: list[str] = []
    for command, (code, output) in results.items():
        if code is None:
            failures.append(f"{command}: still running after 60 s")
        elif "Traceback" in output:
            failures.append(f"{command}: a traceback\n{output[-1500:]}")
        elif code != 0:
            last = output.strip().splitlines()[-1] if output.strip() else ""
            named = variable in last or command in OWN_FAILURES
            if not last.startswith("Error: ") or not named:
                failures.append(f"{command}: exit {code}, last line {last!r}")
    assert failures == [], "\n".join(failures)
