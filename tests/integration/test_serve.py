"""`avatarstack serve` as an operator runs it: real process, real port, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

STRONG = "k" * 48


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited early: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start listening")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    env.update(
        AVATARSTACK_DATA_DIR=str(tmp_path / "data"),
        AVATARSTACK_LOAD_PLUGINS="",
        **extra,
    )
    return env


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarstack.bootstrap.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(port, proc)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_serve_answers_on_embedded_defaults_and_stops_cleanly_on_sigterm(
    serve: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, proc = serve
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/healthz")).status == 200
        ready = await http.get("/readyz")
        assert ready.status == 200, await ready.text()
        spec = await http.get("/api/v1/openapi.json")
        assert spec.status == 200
        assert "/readyz" in (await spec.json())["paths"]
    assert (tmp_path / "data" / "avatarstack.db").exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "app_stopped" in output
    assert "Traceback" not in output
    # the person at the terminal is told where the console is
    assert f"open http://127.0.0.1:{port}/ in a browser" in output


SLOW_APP = textwrap.dedent(
    """
    import asyncio
    from aiohttp import web
    from avatarstack import hookimpl
    from avatarstack.adapters.http.routing import PUBLIC, Route
    from avatarstack.bootstrap import build_container, create_app
    from avatarstack.bootstrap.cli import load_settings, run_server
    from avatarstack.plugins.manager import make_plugin_manager

    async def slow(request):
        await asyncio.sleep(1.5)
        return web.json_response({"finished": True})

    class Slow:
        @hookimpl
        def register_routes(self, register):
            register(Route("GET", "/slow", slow, PUBLIC, "slow", "Slow."))

    settings = load_settings(port={port})
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("slow", Slow())])
    app = create_app(container=build_container(settings, plugin_manager=pm))
    run_server(app, settings)
    """
)


async def test_sigterm_lets_in_flight_requests_finish_and_exits_zero(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a real server process, started once
        [sys.executable, "-c", SLOW_APP.replace("{port}", str(port))],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(port, proc)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            in_flight = asyncio.ensure_future(http.get("/slow"))
            await asyncio.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            response = await asyncio.wait_for(in_flight, timeout=10)
            assert response.status == 200
            assert await response.json() == {"finished": True}
        exit_code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
        assert exit_code == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_production_serve_refuses_to_start_with_pending_migrations(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "avatarstack.bootstrap.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env_for(
            tmp_path,
            AVATARSTACK_ENV="production",
            AVATARSTACK_SECRET_KEY=STRONG,
            AVATARSTACK_PUBLIC_URL="https://x.example",
            AVATARSTACK_MAIL__BACKEND="smtp",
            AVATARSTACK_MAIL__SMTP_HOST="smtp.example",
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "avatarstack migrate" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_production_serve_refuses_unsafe_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "avatarstack.bootstrap.cli", "serve"],
        cwd=tmp_path,
        env=env_for(tmp_path, AVATARSTACK_ENV="production"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "AVATARSTACK_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_importing_the_package_has_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import avatarstack, avatarstack.bootstrap, avatarstack.testing, "
        "avatarstack.adapters.http.app, avatarstack.plugins.manager\n"
        "import structlog, logging\n"
        "assert not structlog.is_configured()\n"
        "assert logging.getLogger().handlers == []\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_for(tmp_path), check=True)
    assert list(tmp_path.iterdir()) == []


def test_ingest_with_build_while_serve_runs_hands_the_work_to_the_servers_worker(
    serve: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The README's quick start: `serve` holds the embedded index; `ingest --build` in another
    terminal queues the jobs in the shared database and follows the server's worker."""
    from avatarstack.testkit.pdf import text_pdf

    manuals = tmp_path / "manuals"
    manuals.mkdir()
    (manuals / "espresso.pdf").write_bytes(
        text_pdf("The espresso machine needs descaling every three months.")
    )
    (manuals / "notes.md").write_text("# Notes\n\nWarranty claims go to the Oslo centre.\n")
    done = subprocess.run(
        [sys.executable, "-m", "avatarstack.bootstrap.cli", "ingest", "manuals", "--build"],
        cwd=tmp_path,
        env=env_for(tmp_path, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "in use by" not in output
    assert "held by a running server" in output
    assert output.count("ingested") == 2, output
    assert "active" in output
    port, _proc = serve
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the server kept running
