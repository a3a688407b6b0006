"""TLS to PostgreSQL: storage reaches a throwaway cluster with its own certificate authority
through ``sslmode=verify-full``, the session is encrypted, and a wrong CA is refused clearly.

The cluster is built here (``initdb`` as the ``postgres`` user on a free port in a temporary
folder, ``ssl=on``); the shared server is never reconfigured.
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.conftest import free_port, postgres_unavailable

from avatarstack.adapters.postgres import PostgresOptions, PostgresStorage
from avatarstack.ports.errors import StorageError, StorageUnavailableError

pytestmark = pytest.mark.postgres

OPTIONS = PostgresOptions(min_size=1, max_size=2, connect_timeout=5.0, startup_timeout=3.0)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate_authority(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TlsCluster:
    port: int
    ca_file: Path
    other_ca_file: Path

    def url(self, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://postgres@localhost:{self.port}/postgres?{params}"


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[TlsCluster]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        postgres_unavailable("initdb/pg_ctl are not installed (apt package 'postgresql')")
    try:
        postgres = pwd.getpwnam("postgres")
    except KeyError:
        postgres_unavailable("there is no 'postgres' user to run a throwaway cluster")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    workdir = Path(tempfile.mkdtemp(prefix="avs-pg-tls-"))
    data, sockets = workdir / "data", workdir / "sockets"
    sockets.mkdir()
    ca_key, ca = _certificate_authority("avatarstack test CA")
    _, other_ca = _certificate_authority("some other CA")
    server_key, server_cert = _server_certificate(ca_key, ca)
    (workdir / "ca.pem").write_bytes(_pem(ca))
    (workdir / "other-ca.pem").write_bytes(_pem(other_ca))
    (workdir / "server.crt").write_bytes(_pem(server_cert) + _pem(ca))
    (workdir / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (workdir / "server.key").chmod(0o600)
    if os.geteuid() == 0:
        for path in (workdir, sockets, workdir / "server.crt", workdir / "server.key"):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
    port = free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        [*as_postgres, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        **run,  # type: ignore[call-overload]
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=localhost -c ssl=on "
        f"-c ssl_cert_file={workdir / 'server.crt'} -c ssl_key_file={workdir / 'server.key'} "
        "-c fsync=off"
    )
    log = workdir / "postgres.log"
    try:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
            **run,  # type: ignore[call-overload]
        )
    except subprocess.CalledProcessError as exc:
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else exc.stderr
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"the throwaway TLS cluster did not start: {detail}")
    try:
        yield TlsCluster(port, workdir / "ca.pem", workdir / "other-ca.pem")
    finally:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(workdir, ignore_errors=True)


async def test_storage_connects_with_verify_full_and_the_session_is_encrypted(
    tls_cluster: TlsCluster,
) -> None:
    storage = PostgresStorage(
        tls_cluster.url(sslmode="verify-full", sslrootcert=str(tls_cluster.ca_file)), OPTIONS
    )
    await storage.start()
    try:
        assert await storage.migrate()
        async with storage.sql_transaction(snapshot=True) as conn:
            row = await conn.fetchrow(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
        assert row is not None
        assert row["ssl"] is True
        assert str(row["version"]).startswith("TLS")
    finally:
        await storage.close()


async def test_a_certificate_from_another_ca_is_refused_at_once_with_a_clear_error(
    tls_cluster: TlsCluster,
) -> None:
    storage = PostgresStorage(
        tls_cluster.url(sslmode="verify-full", sslrootcert=str(tls_cluster.other_ca_file)),
        OPTIONS,
    )
    with pytest.raises(StorageError) as info:
        await storage.start()
    assert not isinstance(info.value, StorageUnavailableError)  # not retried as an outage
    assert "TLS certificate was refused" in str(info.value)
    assert "sslrootcert" in str(info.value)


async def test_a_host_name_missing_from_the_certificate_is_refused(
    tls_cluster: TlsCluster,
) -> None:
    url = tls_cluster.url(sslmode="verify-full", sslrootcert=str(tls_cluster.ca_file))
    storage = PostgresStorage(url.replace("@localhost:", "@127.0.0.1:"), OPTIONS)
    with pytest.raises(StorageError, match="TLS certificate was refused"):
        await storage.start()


async def test_a_missing_ca_file_is_a_clear_error(tls_cluster: TlsCluster, tmp_path: Path) -> None:
    storage = PostgresStorage(
        tls_cluster.url(sslmode="verify-full", sslrootcert=str(tmp_path / "absent.pem")), OPTIONS
    )
    with pytest.raises(
        StorageError, match=r"sslrootcert=.*absent\.pem in the database URL is not a file"
    ):
        await storage.start()
