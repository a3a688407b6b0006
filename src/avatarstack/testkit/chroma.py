"""A real Chroma server for tests: ``chroma run`` (shipped with chromadb) on a free port of
127.0.0.1 with its data in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chroma_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "chroma"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("chroma")


def heartbeat(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=0.5) as response:  # noqa: S310 - test URL
            return "nanosecond heartbeat" in json.loads(response.read())
    except (OSError, ValueError):
        return False


@dataclass
class ChromaServer:
    url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def close(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_chroma_server(timeout: float = 20.0) -> ChromaServer:
    """A fresh ``chroma run``; RuntimeError (with the server's output) when it does not
    answer its heartbeat within ``timeout`` seconds or the CLI is missing."""
    workdir = Path(tempfile.mkdtemp(prefix="avs-chroma-"))
    return _run_chroma(workdir, _free_port(), timeout)


def restart_chroma_server(server: ChromaServer, timeout: float = 20.0) -> ChromaServer:
    """``server`` (stopped or killed) started again on the same port with the same data."""
    server.stop()
    port = int(server.url.rsplit(":", 1)[1])
    return _run_chroma(server.workdir, port, timeout)


def _run_chroma(workdir: Path, port: int, timeout: float) -> ChromaServer:
    binary = chroma_binary()
    if binary is None:
        raise RuntimeError("the chroma CLI is not installed (it ships with the chromadb package)")
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "chroma.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    # a stand-in for an external service: not measured when the tests run under coverage
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    command = [binary, "run", "--path", str(workdir / "data")]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    server = ChromaServer(url=url, process=process, workdir=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if heartbeat(url):
            return server
        time.sleep(0.1)
    server.stop()
    output = log_path.read_text(errors="replace")[-2000:]
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"chroma run did not answer its heartbeat on {url}: {output}")
