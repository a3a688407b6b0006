"""A mixed load test against the operators' success criteria: two ``avatarstack serve``
instances on one PostgreSQL database and one Chroma server, simulated users and an editor.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/load.py [--duration 60] [--users 8] [--find-max]

Set-up: a fresh database ``avs_load_<hex>`` on the PostgreSQL server of ``--postgres`` (an
admin URL; dropped at the end), a Chroma server (``chroma run``, as the tests start it, data in
a temporary folder), and two ``python -m avatarstack serve`` processes on free ports of
127.0.0.1 with the same database, Chroma server and secret key, access log off, log level
``warning``, built-in plugins only and the abuse limits off (every user comes from 127.0.0.1).
Accounts are made through the identity service as ``avatarstack users create`` does (one
process for all of them). The editor uploads the espresso manual and builds and activates a
first generation before anything is measured.

The mix, for ``--duration`` seconds after ``--warmup``:

* each of ``--users`` members (half on each instance) logs in, opens the realtime socket and a
  conversation, then, after a think time of about ``--think`` seconds each, searches the
  knowledge base, asks a question over the socket (timed until ``answer.completed``) and every
  fifth action refreshes its tokens; after ``--actions`` actions it logs out and starts over;
* the editor uploads a new Markdown document every ``--upload-every`` seconds (alternating
  instances) and after every third upload builds and activates a generation (one at a time),
  waiting for the jobs as a client would (polling ``GET /kb/jobs/{id}``).

Printed: per operation, the count, errors and p50/p95/p99 latency on the client; the error
rate; from the servers' ``/metrics`` (the difference between the start and the end of the
measured window, both instances summed): the database statements' p50/p95/p99
(``avatarstack_db_query_duration_seconds``), the pool's acquisitions served without waiting
(*efficiency*), its wait p99 and its utilisation (connections in use ÷ pool size, sampled every
second), and the event loop's lag (``avatarstack_event_loop_lag_seconds``). Then the criteria:
database query p99 < 50 ms, error rate < 0.1 %, pool efficiency > 95 %.

``--find-max`` repeats the measurement with more users (from ``--users``, doubling, then
halving the gap after the first miss) on the same servers and prints the highest number of
users that stayed within all the criteria.

The exit status is 0 when the measurement completed, whether or not the criteria are met, and 1
when something failed to run (a server, the database, the set-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# ``_common`` must be imported before aiohttp: it takes this folder off ``sys.path`` first, where
# ``http.py`` would shadow the standard library's ``http`` package (``from _common`` sorts first).
from _common import (
    API,
    AVATARSTACK_CLI,
    CLI_TIMEOUT,
    FRAME_TIMEOUT,
    MANUAL,
    PASSWORD,
    QUESTIONS,
    BenchmarkError,
    Server,
    avatarstack_env,
    check_alive,
    clean_env,
    connect,
    exit_on_sigterm,
    fmt,
    free_port,
    load_average,
    machine_busy,
    masked_url,
    percentile,
    receive,
    send,
    spawn_server,
    stop_servers,
    temporary_workdir,
    tree_cpu,
    until,
    wait_ready,
)
from aiohttp import ClientError, ClientSession, ClientTimeout, FormData, TCPConnector
from aiohttp import __version__ as aiohttp_version

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
INSTANCES = 2
#: the criteria the product promised operators
QUERY_P99_GOAL_S = 0.050
ERROR_RATE_GOAL = 0.001
POOL_EFFICIENCY_GOAL = 0.95
#: an HTTP request that takes longer than this is an error
REQUEST_TIMEOUT = 30.0
#: a job (ingestion, build) that takes longer than this is an error
JOB_TIMEOUT = 300.0

#: creates members and the editor as ``avatarstack users create`` does, in one process:
#: argv = the e-mail:role pairs, the password on stdin
USERS_CODE = """
import asyncio
import sys

from avatarstack.bootstrap import Settings, build_container
from avatarstack.core.identity import RequestContext


async def main() -> None:
    settings = Settings()
    container = build_container(settings)
    storage = container.storage()
    await storage.start()
    try:
        await storage.migrate()
        identity = container.identity()
        password = sys.stdin.readline().rstrip("\\n")
        for pair in sys.argv[1:]:
            email, role = pair.rsplit(":", 1)
            await identity.admin.create_user(
                email, password, frozenset({role}), RequestContext(ip="cli")
            )
    finally:
        await storage.close()


asyncio.run(main())
"""

SEARCHES = (
    "descaling every three months",
    "milk temperature steam wand",
    "how long to heat up",
    "grams of coffee for an espresso",
    "backflush the brew group",
    "error code E3",
    "loud pump",
    "filtered water limescale",
)


# --------------------------------------------------------------------------- the database


def database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def create_database(admin_url: str, name: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchmarkError(f"cannot reach PostgreSQL at {masked_url(admin_url)}: {exc}") from exc
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --------------------------------------------------------------------------- servers


@dataclass
class Deployment:
    servers: list[Server]
    env: dict[str, str]
    workdir: Path
    run: str
    accounts: int = 0  # members created so far

    def member(self, n: int) -> str:
        return f"load-{self.run}-{n}@example.com"

    @property
    def editor(self) -> str:
        return f"load-{self.run}-editor@example.com"


def create_accounts(deployment: Deployment, pairs: Sequence[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", USERS_CODE, *pairs],
        cwd=deployment.workdir,
        env=deployment.env,
        input=f"{PASSWORD}\n".encode(),
        capture_output=True,
        timeout=CLI_TIMEOUT + 2 * len(pairs),
        check=False,
    )
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace")
        raise BenchmarkError(f"creating {len(pairs)} accounts failed:\n{output[-3000:]}")


def ensure_members(deployment: Deployment, count: int) -> None:
    if count > deployment.accounts:
        print(f"  creating members {deployment.accounts + 1}-{count} ...", file=sys.stderr)
        pairs = [f"{deployment.member(n)}:member" for n in range(deployment.accounts, count)]
        create_accounts(deployment, pairs)
        deployment.accounts = count


@contextlib.contextmanager
def deployed(args: argparse.Namespace) -> Iterator[Deployment]:
    """The database, the Chroma server and the instances; all removed however the run ends."""
    from avatarstack.testkit.chroma import start_chroma_server

    run = secrets.token_hex(4)
    name = f"avs_load_{run}"
    with temporary_workdir() as tmp:
        workdir = Path(tmp)
        asyncio.run(create_database(args.postgres, name))
        servers: list[Server] = []
        chroma = None
        try:
            print("  starting the Chroma server ...", file=sys.stderr, flush=True)
            try:
                chroma = start_chroma_server(timeout=60)
            except RuntimeError as exc:
                raise BenchmarkError(str(exc)) from exc
            env = clean_env() | {
                "AVATARSTACK_DATABASE_URL": database_url(args.postgres, name),
                "AVATARSTACK_KB__CHROMA_URL": chroma.url,
                "AVATARSTACK_SECRET_KEY": secrets.token_urlsafe(48),
                "AVATARSTACK_AUTH__RATE_LIMITS": "false",
                "AVATARSTACK_LOAD_PLUGINS": "",
                "AVATARSTACK_DATA_DIR": str(workdir / "setup"),
                "AVATARSTACK_LOG_LEVEL": "warning",
                "AVATARSTACK_DATABASE__POOL_MAX_SIZE": str(args.pool_size),
            }
            deployment = Deployment(servers, env, workdir, run)
            print("  migrating and creating the editor ...", file=sys.stderr, flush=True)
            create_accounts(deployment, [f"{deployment.editor}:editor"])
            ports = [free_port() for _ in range(INSTANCES)]
            # one public URL, as behind a load balancer: it is the tokens' issuer, so a token
            # from one instance is accepted by the other
            env["AVATARSTACK_PUBLIC_URL"] = f"http://127.0.0.1:{ports[0]}"
            for number, port in enumerate(ports, start=1):
                data_dir = workdir / f"instance-{number}"
                data_dir.mkdir()
                instance_env = env | avatarstack_env(
                    data_dir, port, database_url=env["AVATARSTACK_DATABASE_URL"]
                )
                servers.append(
                    spawn_server(
                        f"instance {number}",
                        [*AVATARSTACK_CLI, "serve"],
                        port=port,
                        env=instance_env,
                        cwd=data_dir,
                        log_path=workdir / f"instance-{number}.log",
                    )
                )
            yield deployment
        finally:
            stop_servers(servers)
            if chroma is not None:
                chroma.close()
            try:
                asyncio.run(drop_database(args.postgres, name))
            except Exception as exc:  # report, but let the original error through
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- recording


@dataclass
class Recorder:
    """Client-side latencies and errors per operation, of operations started in the window."""

    measuring: bool = False
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)

    async def timed(self, name: str, work: Awaitable[Any]) -> Any:
        """Run ``work`` as operation ``name``; None (an error recorded) when it fails."""
        counted = self.measuring
        started = time.perf_counter()
        try:
            result = await work
        except (BenchmarkError, ClientError, TimeoutError, ValueError, KeyError) as exc:
            if counted:
                self.errors[name] += 1
                self.error_kinds[f"{name}: {str(exc)[:120] or exc.__class__.__name__}"] += 1
            return None
        if counted:
            self.latencies.setdefault(name, []).append(time.perf_counter() - started)
        return result

    @property
    def operations(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + sum(self.errors.values())


async def expect(session: ClientSession, method: str, url: str, status: int, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        body = await resp.read()
        if resp.status != status:
            raise BenchmarkError(f"HTTP {resp.status}: {body[:200].decode(errors='replace')}")
    return json.loads(body) if body else None


def api(
    session: ClientSession,
    server: Server,
    method: str,
    path: str,
    status: int,
    token: str | None = None,
    **kw: Any,
) -> Awaitable[Any]:
    """``method`` ``/api/v1<path>`` (with the bearer ``token``), expecting ``status``."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return expect(session, method, server.url(f"{API}{path}"), status, headers=headers, **kw)


def log_in(session: ClientSession, server: Server, email: str) -> Awaitable[Any]:
    """The login answer: both tokens."""
    return api(
        session, server, "POST", "/auth/login", 200, json={"email": email, "password": PASSWORD}
    )


# --------------------------------------------------------------------------- the simulated users


async def think(mean: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), mean * random.uniform(0.5, 1.5))


async def ask(ws: Any, question: str) -> None:
    client_id = secrets.token_hex(8)
    await send(ws, "user.message", {"client_id": client_id, "text": question}, client_id)
    seq = None
    deadline = time.perf_counter() + FRAME_TIMEOUT
    while True:
        frame = await receive(ws, max(0.01, deadline - time.perf_counter()))
        kind, data = frame["type"], frame.get("data") or {}
        if kind == "error":
            raise BenchmarkError(f"error frame: {data}")
        if kind == "message.created" and data.get("client_id") == client_id:
            seq = frame["seq"]
        elif kind == "answer.completed" and seq is not None and data.get("reply_to") == seq:
            return


async def user(
    session: ClientSession,
    server: Server,
    email: str,
    rec: Recorder,
    stop: asyncio.Event,
    args: argparse.Namespace,
) -> None:
    await think(args.think, stop)  # users arrive spread over the first think time
    while not stop.is_set():
        tokens = await rec.timed("login", log_in(session, server, email))
        if tokens is None:
            await think(args.think, stop)
            continue

        async def open_socket(access: str) -> Any:
            ws = await connect(session, server, access)
            await send(ws, "conversation.open", {}, "open")
            await until(ws, "conversation.opened")
            return ws

        ws = await rec.timed("ws.open", open_socket(tokens["access_token"]))
        try:
            for action in range(args.actions):
                await think(args.think, stop)
                if stop.is_set():
                    break
                if action % 5 == 4:
                    body = {"refresh_token": tokens["refresh_token"]}
                    fresh = await rec.timed(
                        "refresh", api(session, server, "POST", "/auth/refresh", 200, json=body)
                    )
                    tokens = fresh or tokens
                elif action % 2 == 0 or ws is None:
                    query = {"query": random.choice(SEARCHES), "k": 5}
                    access = tokens["access_token"]
                    await rec.timed(
                        "search",
                        api(session, server, "POST", "/kb/search", 200, access, json=query),
                    )
                else:
                    await rec.timed("ask", ask(ws, random.choice(QUESTIONS)))
        finally:
            if ws is not None:
                await ws.close()
        body = {"refresh_token": tokens["refresh_token"]}
        access = tokens["access_token"]
        await rec.timed(
            "logout", api(session, server, "POST", "/auth/logout", 204, access, json=body)
        )


# --------------------------------------------------------------------------- the editor


def new_document(run: str, number: int) -> bytes:
    """A manual with a note of its own, so that every upload is new content."""
    rng = random.Random(f"{run}-{number}")
    words = ["grinder", "tamper", "crema", "boiler", "gasket", "shower", "screen", "valve"]
    note = " ".join(rng.choice(words) for _ in range(120))
    return f"{MANUAL}\n## Service note {number}\n\n{note}.\n".encode()


def start_build(session: ClientSession, server: Server, token: str) -> Awaitable[Any]:
    """Build a generation of the current documents and activate it once ready."""
    return api(session, server, "POST", "/kb/generations", 202, token, json={"activate": "yes"})


async def wait_for_job(
    session: ClientSession, server: Server, token: str, job_id: str, stop_at: float
) -> None:
    while time.monotonic() < stop_at:
        body = await api(session, server, "GET", f"/kb/jobs/{job_id}", 200, token)
        if body["status"] == "succeeded":
            return
        if body["status"] == "failed":
            raise BenchmarkError(f"job {job_id} failed: {body.get('error')}")
        await asyncio.sleep(0.25)
    raise TimeoutError(f"job {job_id} did not finish in {JOB_TIMEOUT:g} s")


async def editor(
    session: ClientSession,
    servers: Sequence[Server],
    deployment: Deployment,
    rec: Recorder,
    stop: asyncio.Event,
    args: argparse.Namespace,
    counter: Iterator[int],
) -> None:
    token = (await log_in(session, servers[0], deployment.editor))["access_token"]
    building: asyncio.Task[Any] | None = None
    jobs: set[asyncio.Task[Any]] = set()
    uploads = 0
    try:
        while not stop.is_set():
            number = next(counter)
            server = servers[number % len(servers)]
            form = FormData()
            form.add_field(
                "file",
                new_document(deployment.run, number),
                filename=f"load-{deployment.run}-{number}.md",
                content_type="text/markdown",
            )
            body = await rec.timed(
                "upload", api(session, server, "POST", "/kb/documents", 202, token, data=form)
            )
            if body is not None:
                stop_at = time.monotonic() + JOB_TIMEOUT
                task = asyncio.create_task(
                    rec.timed(
                        "ingest job", wait_for_job(session, server, token, body["job_id"], stop_at)
                    )
                )
                jobs.add(task)
                task.add_done_callback(jobs.discard)
                uploads += 1
            if uploads and uploads % 3 == 0 and (building is None or building.done()):

                async def build(server: Server = server) -> None:
                    answer = await rec.timed("build", start_build(session, server, token))
                    if answer is not None:
                        stop_at = time.monotonic() + JOB_TIMEOUT
                        await rec.timed(
                            "build job",
                            wait_for_job(session, server, token, answer["job_id"], stop_at),
                        )

                building = asyncio.create_task(build())
            await think(args.upload_every, stop)
    finally:
        # the jobs started in the window are waited for, so their failures count
        pending = [t for t in (*jobs, building) if t is not None and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=args.job_grace)
            for task in pending:
                task.cancel()


async def prepare_knowledge(session: ClientSession, server: Server, deployment: Deployment) -> None:
    token = (await log_in(session, server, deployment.editor))["access_token"]
    form = FormData()
    form.add_field("file", MANUAL.encode(), filename="zanobo.md", content_type="text/markdown")
    body = await api(session, server, "POST", "/kb/documents", 202, token, data=form)
    await wait_for_job(session, server, token, body["job_id"], time.monotonic() + JOB_TIMEOUT)
    body = await start_build(session, server, token)
    await wait_for_job(session, server, token, body["job_id"], time.monotonic() + JOB_TIMEOUT)


# --------------------------------------------------------------------------- server metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(session: ClientSession, server: Server) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(server.url("/metrics")) as resp:
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Sequence[Samples], name: str, **labels: str) -> float:
    """The sum of a series over every instance and every other label."""
    wanted = set(labels.items())
    return sum(
        value
        for sample in samples
        for (series, series_labels), value in sample.items()
        if series == name and wanted <= series_labels
    )


@dataclass
class Histogram:
    """A histogram summed over instances and labels, as the difference of two scrapes."""

    buckets: list[tuple[float, float]]  # (upper bound, cumulative count), +Inf last
    count: float
    sum: float

    @classmethod
    def between(cls, before: Sequence[Samples], after: Sequence[Samples], name: str) -> Histogram:
        bounds: set[float] = set()
        for sample in after:
            for series, labels in sample:
                if series == f"{name}_bucket":
                    bounds.add(float(dict(labels)["le"]))
        buckets = []
        for bound in sorted(bounds):
            le = "+Inf" if bound == float("inf") else repr(bound)
            cumulative = total(after, f"{name}_bucket", le=le) - total(
                before, f"{name}_bucket", le=le
            )
            buckets.append((bound, cumulative))
        return cls(
            buckets,
            total(after, f"{name}_count") - total(before, f"{name}_count"),
            total(after, f"{name}_sum") - total(before, f"{name}_sum"),
        )

    def quantile(self, q: float) -> float | None:
        """As Prometheus's ``histogram_quantile``: linear within the bucket; the highest finite
        bound when the quantile falls in +Inf."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if bound == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower

    def share_at_most(self, bound: float) -> float | None:
        """The share of observations ≤ ``bound`` (exact when ``bound`` is a bucket bound)."""
        if self.count <= 0:
            return None
        for upper, cumulative in self.buckets:
            if upper >= bound:
                return cumulative / self.count
        return 1.0

    @property
    def highest(self) -> float | None:
        """The upper bound of the highest bucket with an observation."""
        below = 0.0
        top = None
        for bound, cumulative in self.buckets:
            if cumulative > below:
                top = bound
            below = cumulative
        return top


# --------------------------------------------------------------------------- one measurement


@dataclass
class Figures:
    users: int
    seconds: float
    rec: Recorder
    queries: Histogram
    waits: Histogram
    lag: Histogram
    acquired: float
    waited: float
    utilisation: float | None  # mean of in use ÷ max over the samples and instances
    utilisation_peak: float | None
    server_cpu: list[float | None]
    client_cpu: float
    others_cpu: float | None
    lag_last_max: float | None

    @property
    def error_rate(self) -> float:
        ops = self.rec.operations
        return sum(self.rec.errors.values()) / ops if ops else 0.0

    @property
    def efficiency(self) -> float | None:
        return (self.acquired - self.waited) / self.acquired if self.acquired else None

    @property
    def query_p99(self) -> float | None:
        return self.queries.quantile(0.99)

    def verdicts(self) -> dict[str, bool]:
        under = self.queries.share_at_most(QUERY_P99_GOAL_S)
        return {
            "query": under is not None and under >= 0.99,
            "errors": self.error_rate < ERROR_RATE_GOAL,
            "pool": self.efficiency is not None and self.efficiency > POOL_EFFICIENCY_GOAL,
        }

    @property
    def within(self) -> bool:
        return all(self.verdicts().values())


async def measure(
    deployment: Deployment, users: int, args: argparse.Namespace, counter: Iterator[int]
) -> Figures:
    servers = deployment.servers
    connector = TCPConnector(limit=0)
    timeout = ClientTimeout(total=REQUEST_TIMEOUT)
    rec = Recorder()
    stop = asyncio.Event()
    async with ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(
                user(session, servers[n % len(servers)], deployment.member(n), rec, stop, args)
            )
            for n in range(users)
        ]
        tasks.append(
            asyncio.create_task(editor(session, servers, deployment, rec, stop, args, counter))
        )
        try:
            await asyncio.sleep(args.warmup)
            for server in servers:
                check_alive(server)
            before = [await scrape(session, s) for s in servers]
            cpu_before = [tree_cpu(s.proc.pid) for s in servers]
            own_before = time.process_time()
            machine_before = machine_busy()
            rec.measuring = True
            started = time.perf_counter()
            in_use: list[float] = []
            lags: list[float] = []
            while (elapsed := time.perf_counter() - started) < args.duration:
                await asyncio.sleep(min(1.0, args.duration - elapsed))
                for server in servers:
                    check_alive(server)
                    now = await scrape(session, server)
                    used = total([now], "avatarstack_db_pool_connections", state="in_use")
                    most = total([now], "avatarstack_db_pool_connections", state="max")
                    if most:
                        in_use.append(used / most)
                    lags.append(total([now], "avatarstack_event_loop_lag_last_seconds"))
            rec.measuring = False
            seconds = time.perf_counter() - started
            after = [await scrape(session, s) for s in servers]
            cpu_after = [tree_cpu(s.proc.pid) for s in servers]
            own = time.process_time() - own_before
            machine_after = machine_busy()
        finally:
            stop.set()
            done, pending = await asyncio.wait(tasks, timeout=args.job_grace + REQUEST_TIMEOUT)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None and not isinstance(
                    task.exception(), asyncio.CancelledError
                ):
                    raise BenchmarkError(f"a simulated client crashed: {task.exception()!r}")
    server_cpu = [
        None if a is None or b is None else 100 * (a - b) / seconds
        for a, b in zip(cpu_after, cpu_before, strict=True)
    ]
    others = None
    if machine_before is not None and machine_after is not None:
        busy = (
            machine_after
            - machine_before
            - own
            - sum(
                (a - b)
                for a, b in zip(cpu_after, cpu_before, strict=True)
                if a is not None and b is not None
            )
        )
        others = max(0.0, 100 * busy / seconds)
    return Figures(
        users=users,
        seconds=seconds,
        rec=rec,
        queries=Histogram.between(before, after, "avatarstack_db_query_duration_seconds"),
        waits=Histogram.between(before, after, "avatarstack_db_pool_wait_seconds"),
        lag=Histogram.between(before, after, "avatarstack_event_loop_lag_seconds"),
        acquired=total(after, "avatarstack_db_pool_acquisitions_total")
        - total(before, "avatarstack_db_pool_acquisitions_total"),
        waited=total(after, "avatarstack_db_pool_acquisitions_total", waited="yes")
        - total(before, "avatarstack_db_pool_acquisitions_total", waited="yes"),
        utilisation=sum(in_use) / len(in_use) if in_use else None,
        utilisation_peak=max(in_use) if in_use else None,
        server_cpu=server_cpu,
        client_cpu=100 * own / seconds,
        others_cpu=others,
        lag_last_max=max(lags) if lags else None,
    )


# --------------------------------------------------------------------------- reporting


def ms(value: float | None) -> str:
    return fmt(None if value is None else 1000 * value, ".1f")


def pct(value: float | None, digits: int = 1) -> str:
    return fmt(None if value is None else 100 * value, f".{digits}f") + (
        "" if value is None else " %"
    )


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


ORDER = (
    "login",
    "ws.open",
    "search",
    "ask",
    "refresh",
    "logout",
    "upload",
    "ingest job",
    "build",
    "build job",
)


def report(f: Figures, args: argparse.Namespace) -> None:
    rec = f.rec
    print()
    print(
        f"{f.users} users ({f.users // INSTANCES}-{-(-f.users // INSTANCES)} per instance) and one "
        f"editor, {INSTANCES} instances (pool of {args.pool_size} each), {f.seconds:.0f} s after "
        f"{args.warmup:g} s warm-up, think time ~{args.think:g} s"
    )
    print(
        f"   {'operation':<12}{'count':>8}{'errors':>8}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    names = [n for n in ORDER if n in rec.latencies or n in rec.errors]
    names += sorted((set(rec.latencies) | set(rec.errors)) - set(ORDER))
    for name in names:
        values = sorted(rec.latencies.get(name, []))
        print(
            f"   {name:<12}{len(values) + rec.errors[name]:>8}{rec.errors[name]:>8}"
            f"{ms(percentile(values, 50)):>9}{ms(percentile(values, 95)):>9}"
            f"{ms(percentile(values, 99)):>9}{ms(values[-1] if values else None):>9}"
        )
    ops = rec.operations
    print(
        f"   {ops} operations ({ops / f.seconds:.1f}/s), {sum(rec.errors.values())} errors: "
        f"error rate {pct(f.error_rate, 3)}"
    )
    for kind, count in rec.error_kinds.most_common(5):
        print(f"     {count} x {kind}")
    q = f.queries
    print(
        f"   database statements (both instances): {q.count:.0f} ({q.count / f.seconds:.0f}/s), "
        f"p50 {ms(q.quantile(0.5))} ms, p95 {ms(q.quantile(0.95))} ms, "
        f"p99 {ms(q.quantile(0.99))} ms, "
        f"{pct(q.share_at_most(QUERY_P99_GOAL_S))} within 50 ms"
    )
    print(
        f"   pool: {f.acquired:.0f} acquisitions, {f.acquired - f.waited:.0f} without waiting "
        f"(efficiency {pct(f.efficiency)}); wait p99 {ms(f.waits.quantile(0.99))} ms, mean "
        f"{ms(f.waits.sum / f.waits.count if f.waits.count else None)} ms; utilisation (in use ÷ "
        f"pool size, sampled each second) mean {pct(f.utilisation, 0)}, "
        f"peak {pct(f.utilisation_peak, 0)}"
    )
    print(
        f"   event-loop lag (0.1 s timer): p50 {ms(f.lag.quantile(0.5))} ms, p99 "
        f"{ms(f.lag.quantile(0.99))} ms, highest bucket ≤ {ms(f.lag.highest)} ms"
    )
    cpu = ", ".join(f"{fmt(c, '.0f')} %" for c in f.server_cpu)
    print(
        f"   CPU (100 % = one core): instances {cpu}; load generator {f.client_cpu:.0f} %; "
        f"everything else (PostgreSQL, Chroma, other processes) {fmt(f.others_cpu, '.0f')} %"
    )
    v = f.verdicts()
    print(
        f"   criteria: query p99 < 50 ms {verdict(v['query'])}; error rate < 0.1 % "
        f"{verdict(v['errors'])}; pool efficiency > 95 % {verdict(v['pool'])}"
    )


def summary(steps: Sequence[Figures]) -> None:
    print()
    print(
        f"{'users':>6}{'ops/s':>8}{'errors':>9}{'query p99':>11}{'efficiency':>12}"
        f"{'pool util':>11}{'lag p99':>11}{'ask p95':>11}   within the criteria"
    )
    for f in steps:
        asks = sorted(f.rec.latencies.get("ask", []))
        print(
            f"{f.users:>6}{f.rec.operations / f.seconds:>8.1f}{pct(f.error_rate, 2):>9}"
            f"{ms(f.query_p99) + ' ms':>11}{pct(f.efficiency):>12}{pct(f.utilisation, 0):>11}"
            f"{ms(f.lag.quantile(0.99)) + ' ms':>11}{ms(percentile(asks, 95)) + ' ms':>11}   "
            + (
                "yes"
                if f.within
                else "no (" + ", ".join(k for k, ok in f.verdicts().items() if not ok) + ")"
            )
        )
    passing = [f for f in steps if f.within]
    print()
    if passing:
        best = max(passing, key=lambda f: f.users)
        print(
            f"highest load within all the criteria on this machine: {best.users} users "
            f"({best.rec.operations / best.seconds:.1f} operations/s)"
        )
    else:
        print("no load tried stayed within all the criteria")


def next_users(steps: Sequence[Figures], most: int) -> int | None:
    """Double while within the criteria; after the first miss, halve the gap between the highest
    load within them and the lowest beyond, until it is a quarter of the former."""
    passing = [f.users for f in steps if f.within]
    failing = [f.users for f in steps if not f.within]
    high = max(passing) if passing else 0
    if not failing:
        step = high * 2
        return step if step <= most else None
    low = min(failing)
    if low - high <= max(1, high // 4):
        return None
    return (high + low) // 2


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mixed load on two instances against the criteria."
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="measured seconds per load (60)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring (5)")
    parser.add_argument(
        "--users", type=int, default=8, help="simulated users; --find-max: the first step (8)"
    )
    parser.add_argument(
        "--find-max", action="store_true", help="step up the users until a criterion is missed"
    )
    parser.add_argument("--max-users", type=int, default=256, help="--find-max stops here (256)")
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean seconds between a user's actions (1)"
    )
    parser.add_argument("--actions", type=int, default=20, help="actions per login (20)")
    parser.add_argument(
        "--upload-every", type=float, default=5.0, help="seconds between uploads (5)"
    )
    parser.add_argument(
        "--pool-size", type=int, default=10, help="connections per instance (10, the default)"
    )
    parser.add_argument("--job-grace", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("AVATARSTACK_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"admin URL of the PostgreSQL server ({DEFAULT_POSTGRES}); a fresh database is "
        "created on it and dropped at the end",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.users < 1 or args.think <= 0 or args.actions < 1:
        parser.error("--duration, --users, --think and --actions must be positive")
    return args


async def run(deployment: Deployment, args: argparse.Namespace) -> list[Figures]:
    async with ClientSession(timeout=ClientTimeout(total=REQUEST_TIMEOUT)) as session:
        for server in deployment.servers:
            await wait_ready(session, server, "/readyz")
        print("  set-up: the manual, a first generation ...", file=sys.stderr, flush=True)
        await prepare_knowledge(session, deployment.servers[0], deployment)
    counter = iter(range(1, 1_000_000))
    steps: list[Figures] = []
    users: int | None = args.users
    while users is not None:
        await asyncio.to_thread(ensure_members, deployment, users)
        print(f"  {users} users for {args.duration:g} s ...", file=sys.stderr, flush=True)
        figures = await measure(deployment, users, args, counter)
        report(figures, args)
        steps.append(figures)
        users = next_users(steps, args.max_users) if args.find_max else None
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    print(
        f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}, aiohttp {aiohttp_version}; "
        f"load average {load_average()}; PostgreSQL {masked_url(args.postgres)}",
    )
    try:
        with deployed(args) as deployment:
            steps = asyncio.run(run(deployment, args))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    summary(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
