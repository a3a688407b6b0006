"""A throwaway PostgreSQL cluster for tests that stop, freeze or reconfigure their database.

``initdb`` runs as the ``postgres`` system user (PostgreSQL refuses to run as root) in a fresh
temporary folder; the server listens on a free port of 127.0.0.1 only, with password
(scram-sha-256) authentication for the ``avatarstack`` role, so a test can look for the
password in what the application logged. Never the shared server.

    cluster = start_postgres_cluster()
    try:
        url = cluster.url   # postgresql://avatarstack:<password>@127.0.0.1:<port>/avatarstack
        cluster.freeze()    # SIGSTOP the postmaster and every backend: TCP accepts, no answers
        cluster.thaw()      # SIGCONT
        cluster.stop()      # pg_ctl stop -m immediate
        cluster.start()     # same port, same data
    finally:
        cluster.close()     # stop and delete the folder
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PostgresCluster", "postgres_binaries", "start_postgres_cluster"]

_SYSTEM_USER = "postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


@dataclass
class PostgresCluster:
    """A running cluster; ``url`` carries the password of the ``avatarstack`` role."""

    workdir: Path
    port: int
    password: str
    bindir: Path
    user: str = "avatarstack"
    database: str = "avatarstack"
    _frozen: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return _as_postgres([str(self.bindir / args[0]), *args[1:]], timeout=timeout)

    def start(self, timeout: float = 30.0) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "server.log"),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir}",
            "start",
            timeout=timeout + 5,
        )

    def stop(self) -> None:
        """Stop at once (``-m immediate``), as a crash or an operator's kill would."""
        self.thaw()
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def processes(self) -> list[int]:
        """The postmaster and its children."""
        pid_file = self.datadir / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split("\n", 1)[0])
        children = subprocess.run(  # noqa: S603 - fixed command
            ["/usr/bin/pgrep", "-P", str(postmaster)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every child: connections are accepted by the kernel but
        nothing answers, as with a hung host or a stalled disk."""
        pids = self.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        self._frozen = pids

    def thaw(self) -> None:
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    def server_log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop()
        except subprocess.SubprocessError:
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _as_postgres(command: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the postgres system user when we are root (initdb refuses root)."""
    user: int | None = None
    group: int | None = None
    if os.geteuid() == 0:
        entry = pwd.getpwnam(_SYSTEM_USER)
        user, group = entry.pw_uid, entry.pw_gid
    result = subprocess.run(  # noqa: S603 - fixed PostgreSQL binaries
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, command, output=result.stdout, stderr=result.stderr
        )
    return result


def start_postgres_cluster(*, settings: dict[str, str] | None = None) -> PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a new temporary folder; a role and a database
    ``avatarstack`` with a random password. ``settings`` go into postgresql.conf.
    RuntimeError when PostgreSQL is not installed."""
    bindir = postgres_binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (initdb not found)")
    workdir = Path(tempfile.mkdtemp(prefix="avs-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(_SYSTEM_USER)
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
    password = secrets.token_urlsafe(18)
    cluster = PostgresCluster(workdir=workdir, port=_free_port(), password=password, bindir=bindir)
    try:
        pwfile = workdir / "pwfile"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(cluster.datadir),
                "-U",
                cluster.user,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            timeout=120,
        )
        pwfile.unlink()
        conf = {"fsync": "off", "max_connections": "50", **(settings or {})}
        with (cluster.datadir / "postgresql.conf").open("a") as handle:
            for key, value in conf.items():
                handle.write(f"{key} = '{value}'\n")
        cluster.start()
        _create_database(cluster)
    except BaseException:
        cluster.close()
        raise
    return cluster


def _create_database(cluster: PostgresCluster) -> None:
    env = {**os.environ, "PGPASSWORD": cluster.password}
    deadline = time.monotonic() + 20
    while True:
        result = subprocess.run(  # noqa: S603 - fixed PostgreSQL binary
            [
                str(cluster.bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(cluster.port),
                "-U",
                cluster.user,
                cluster.database,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"createdb failed: {result.stderr.strip()}")
        time.sleep(0.2)
