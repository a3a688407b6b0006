"""``avatarstack serve`` as an operator runs it, for tests: a real process on a free port of
127.0.0.1, its settings from the environment, its output (stdout and stderr) in a file the test
can read at any time; other CLI commands (``users create``, ``migrate``) with the same settings.

    app = ServedApp(tmp_path, settings={"AVATARSTACK_DATABASE_URL": cluster.url})
    app.start()
    try:
        app.create_user("ada@example.com", "a long passphrase", "admin")
        ...  # app.url, app.openapi(), app.output()
    finally:
        app.stop()
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["ServedApp", "free_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedApp:
    """``python -m avatarstack serve`` with a clean ``AVATARSTACK_*`` environment (``settings``
    only), plugins from entry points off, data under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        settings: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.log_path = workdir / f"serve-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
        env.update(
            {
                "AVATARSTACK_DATA_DIR": str(workdir / "data"),
                "AVATARSTACK_LOAD_PLUGINS": "",
                "AVATARSTACK_PUBLIC_URL": self.url,
                **(settings or {}),
            }
        )
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Another ``avatarstack`` command with the same settings."""
        return subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "avatarstack", *args],
            cwd=self.workdir,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def create_user(self, email: str, password: str, role: str = "member") -> None:
        """``avatarstack users create EMAIL --role ROLE --password-stdin``."""
        done = self.cli(
            "users", "create", email, "--role", role, "--password-stdin", input=password + "\n"
        )
        if done.returncode != 0:
            raise RuntimeError(f"users create {email} failed:\n{done.stderr or done.stdout}")

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "avatarstack", "serve", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI
                [*command, *self.args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=0.5):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"serve did not answer /healthz within {timeout} s:\n{self.output()}")

    @property
    def data_dir(self) -> Path:
        return Path(self.env["AVATARSTACK_DATA_DIR"])

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the OOM killer ends it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def restart(self, timeout: float = 60.0) -> float:
        """Start again on the same port and data; the seconds until /healthz answered."""
        started = time.monotonic()
        self.start(timeout=timeout)
        return time.monotonic() - started

    def openapi(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/api/v1/openapi.json", timeout=10) as response:  # noqa: S310
            document: dict[str, Any] = json.loads(response.read())
        return document

    def output(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process must be able to exit
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def __enter__(self) -> ServedApp:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
