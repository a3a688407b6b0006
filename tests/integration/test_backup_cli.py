"""``avatarstack backup`` and ``restore`` as an operator runs them, beside a real ``serve``
process that holds the embedded Chroma folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import aiohttp
from test_serve import env_for, free_port, wait_ready

PASSWORD = "correct horse battery"


def run(
    tmp_path: Path, *args: str, data: str = "data", stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "avatarstack.bootstrap.cli", *args],
        cwd=tmp_path,
        env={**env_for(tmp_path), "AVATARSTACK_DATA_DIR": str(tmp_path / data)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def serve(tmp_path: Path, data: str) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarstack.bootstrap.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**env_for(tmp_path), "AVATARSTACK_DATA_DIR": str(tmp_path / data)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_ready(port, proc, timeout=60)
    return port, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


async def test_a_backup_beside_a_running_server_restores_into_a_new_data_dir(
    tmp_path: Path,
) -> None:
    manual = tmp_path / "manual.txt"
    manual.write_text("The espresso machine needs descaling every three months.\n")
    created = run(tmp_path, "users", "create", "mo@example.com", "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    ingested = run(tmp_path, "ingest", str(manual), "--build")
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr

    _, server = serve(tmp_path, "data")
    try:
        made = run(tmp_path, "backup", str(tmp_path / "b.tar.gz"))
        assert made.returncode == 0, made.stderr
        assert "embedded Chroma copied" in made.stdout
        refused = run(tmp_path, "restore", "--force", str(tmp_path / "b.tar.gz"))
        assert refused.returncode == 1
        assert "stop it before restoring" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        stop(server)
    with tarfile.open(tmp_path / "b.tar.gz") as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
    assert manifest["index"]["copied_beside_a_running_server"] is True

    restored = run(tmp_path, "restore", str(tmp_path / "b.tar.gz"), data="restored")
    assert restored.returncode == 0, restored.stderr
    assert "embedded Chroma restored" in restored.stdout
    port, copy = serve(tmp_path, "restored")
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            login = await http.post(
                "/api/v1/auth/login", json={"email": "mo@example.com", "password": PASSWORD}
            )
            assert login.status == 200, await login.text()
            token = (await login.json())["access_token"]
            found = await http.post(
                "/api/v1/kb/search",
                json={"query": "how often does the machine need descaling"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert found.status == 200, await found.text()
            body = await found.json()
        assert body["generation_id"] in manifest["generations"]
        assert "three months" in body["results"][0]["text"]
    finally:
        stop(copy)
