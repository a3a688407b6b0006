"""The ``avatarstack`` command line: serve, worker, migrate, users, ingest, kb, backup, restore,
copy-data, plugins, config show, --version.

One module per group of commands; :mod:`.context` holds what they share. Plugins add commands
through the ``register_commands(cli)`` hook.
"""

from __future__ import annotations

import sys

from avatarstack.bootstrap.cli import data, ingest, kb, server, users
from avatarstack.bootstrap.cli.context import CliContext, cli, load_settings, pass_cli
from avatarstack.bootstrap.cli.server import run_server

__all__ = ["CliContext", "cli", "load_settings", "main", "pass_cli", "run_server"]

#: the modules that add their commands to ``cli`` when imported
COMMANDS = (server, users, ingest, kb, data)


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(cli.main(prog_name="avatarstack"))
