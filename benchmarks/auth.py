"""Password logins, event-loop lag under a login flood, and authenticated reads of avatarstack.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/auth.py [--login-seconds N] [--database-url URL]

Every server runs in its own subprocess on 127.0.0.1 (see ``_common``): avatarstack as
``avatarstack serve`` runs it, with a temporary data dir (SQLite unless ``--database-url``),
access log off, log level ``warning`` and the abuse limits off
(``AVATARSTACK_AUTH__RATE_LIMITS=false``, else the limiter would answer 429 to the flood); and a
bare aiohttp hello-world app as the baseline of the third measurement. Before avatarstack
starts, ``avatarstack users create EMAIL --role member --password-stdin`` (with the server's
settings) creates ``--users`` verified members in its database; their passwords are hashed by
the default hasher (argon2id, OWASP parameters).

Goals from the issue, each printed with MET / NOT MET:

1. logins/s (``POST /api/v1/auth/login``, correct passwords, users in turn, 2x cores
   connections) ≥ 0.7 of the single-hash ceiling = cores ÷ the time of one argon2id hash,
   timed in this process with argon2-cffi directly (``verify`` of a hash made by the default
   ``Argon2PasswordHasher``, the work of one login);
2. event-loop lag during that flood: ``GET /healthz`` every 10 ms from a separate process,
   p99 < 20 ms;
3. req/s of an authenticated ``GET /api/v1/users/me`` (``Authorization: Bearer``) ≥ 0.4 of the
   bare app's.

Load comes from ``wrk`` when it is installed (a Lua script sends the login bodies), otherwise
from an aiohttp client in this process. The exit status is 0 whether or not the goals are met
(this is a measurement) and non-zero only when something failed: a server did not start, or a
request failed or answered other than 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# ``_common`` must be imported before aiohttp: it takes this folder off ``sys.path`` first, where
# ``http.py`` would shadow the standard library's ``http`` package (``from _common`` sorts first).
from _common import (
    PASSWORD,
    REQUEST_TIMEOUT,
    BenchmarkError,
    Load,
    Result,
    Server,
    add_load_options,
    avatarstack_env,
    best_round,
    check_alive,
    clean_env,
    create_user,
    exit_on_sigterm,
    fmt,
    free_port,
    load_generator,
    masked_url,
    measure_python,
    measure_wrk,
    percentile,
    serve_avatarstack,
    serve_bare,
    spawn_server,
    stop_servers,
    temporary_workdir,
    wait_ready,
)
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector
from aiohttp import __version__ as aiohttp_version

from avatarstack.adapters.argon2 import Argon2PasswordHasher

SCRIPT = Path(__file__).resolve()
API = "/api/v1"
LOGIN_PATH = f"{API}/auth/login"
ME_PATH = f"{API}/users/me"
#: every benchmark user has this password (long enough for the password policy)
#: how ``avatarstack`` is run (the package's ``__main__``, with this interpreter)

LOGIN_GOAL = 0.7  # logins/s ÷ single-hash ceiling
LAG_GOAL_MS = 20.0  # p99 of /healthz during the login flood
READ_GOAL = 0.4  # /users/me req/s ÷ bare hello-world req/s
#: below this server CPU %, the bare app was not saturated: the load generator was the limit
CLIENT_BOUND_PCT = 85
#: machine CPU % (100 = one core) while the servers are idle above which the report warns
BACKGROUND_WARN_PCT = 15
#: hashes timed in this process for the ceiling (after two untimed ones)
HASH_SAMPLES = 30


# --------------------------------------------------------------------------- child processes


def run_probe(url: str, interval: float) -> None:
    """Child process: ``GET url`` every ``interval`` seconds for as long as each line of stdin
    says (seconds), then print one JSON line with the latencies; end at EOF.

    Each probe starts on its own schedule (a task per tick, not after the previous answer), so
    a stalled server shows as long latencies, not as probes that were never sent. ``late_ms`` is
    how late this process itself started each probe: the probe shares the machine's cores too.
    """

    async def window(session: ClientSession, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        late: list[float] = []
        errors: Counter[str] = Counter()

        async def one(scheduled: float) -> None:
            begin = time.perf_counter()
            late.append(begin - scheduled)
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    status = resp.status
            except (ClientError, TimeoutError) as exc:
                errors[exc.__class__.__name__] += 1
                return
            if status != 200:
                errors[f"HTTP {status}"] += 1
                return
            latencies.append(time.perf_counter() - begin)

        tasks = []
        start = time.perf_counter()
        for tick in range(max(1, int(seconds / interval))):
            scheduled = start + tick * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        return {
            "latencies_ms": [round(v * 1000, 3) for v in latencies],
            "late_ms": [round(v * 1000, 3) for v in late],
            "errors": dict(errors),
        }

    async def run() -> None:
        timeout = ClientTimeout(total=REQUEST_TIMEOUT)
        # no connection limit: a probe that finds every connection busy opens another one
        async with ClientSession(connector=TCPConnector(limit=0), timeout=timeout) as session:
            for _ in range(5):  # open a connection, warm up the client
                async with session.get(url) as resp:
                    await resp.read()
            print("ready", flush=True)
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                print(json.dumps(await window(session, float(line))), flush=True)

    asyncio.run(run())


# --------------------------------------------------------------------------- the parent's helpers


def create_users(emails: Sequence[str], env: dict[str, str], cwd: Path) -> None:
    """``avatarstack users create EMAIL --role member --password-stdin`` for every address,
    with the server's settings: the first alone (it migrates a new database and writes the
    development secret key into the data dir), then as many at once as there are cores."""

    def create(email: str) -> None:
        create_user(email, "member", env, cwd)

    create(emails[0])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(create, emails[1:]))


def start_servers(
    workdir: Path, args: argparse.Namespace, emails: Sequence[str]
) -> dict[str, Server]:
    """Start the bare app, create the users, then start avatarstack on the same data dir."""
    servers: dict[str, Server] = {}
    try:
        port = free_port()
        (workdir / "bare").mkdir()
        servers["bare"] = spawn_server(
            "bare",
            [sys.executable, str(SCRIPT), "--serve", "bare", "--port", str(port)],
            port=port,
            env=clean_env(),
            cwd=workdir / "bare",
            log_path=workdir / "bare.log",
        )

        port = free_port()
        data_dir = workdir / "avatarstack"
        data_dir.mkdir()
        env = clean_env() | avatarstack_env(data_dir, port, database_url=args.database_url)
        env["AVATARSTACK_AUTH__RATE_LIMITS"] = "false"  # the limiter would answer the flood 429
        print(f"  creating {len(emails)} users ...", file=sys.stderr, flush=True)
        create_users(emails, env, data_dir)

        servers["avatarstack"] = spawn_server(
            "avatarstack",
            [sys.executable, str(SCRIPT), "--serve", "avatarstack"],
            port=port,
            env=env,
            cwd=data_dir,
            log_path=workdir / "avatarstack.log",
        )
    except BaseException:
        stop_servers(servers.values())
        raise
    return servers


@contextlib.contextmanager
def running(
    args: argparse.Namespace, emails: Sequence[str]
) -> Iterator[tuple[dict[str, Server], Path]]:
    with temporary_workdir() as tmp:
        workdir = Path(tmp)
        servers = start_servers(workdir, args, emails)
        try:
            yield servers, workdir
        finally:
            stop_servers(servers.values())


class Probe:
    """The ``--probe`` child process, driven over its stdin and stdout."""

    def __init__(self, url: str, interval: float, workdir: Path) -> None:
        self._stderr: IO[bytes] = (workdir / "probe.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--probe", url, "--probe-interval", str(interval)],
            env=clean_env(),
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.log_path = workdir / "probe.log"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._stderr.flush()
            raise BenchmarkError(
                f"the /healthz probe exited (status {self.proc.poll()}):\n"
                + self.log_path.read_text(errors="replace")[-2000:]
            )
        return line

    async def ready(self) -> None:
        line = await asyncio.to_thread(self._line)
        if line.strip() != "ready":
            raise BenchmarkError(f"the /healthz probe said {line!r}")

    async def measure(self, seconds: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{seconds}\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(await asyncio.to_thread(self._line))
        return result

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self._stderr.close()


@dataclass
class LagResult:
    latencies_ms: list[float]
    late_ms: list[float]
    errors: Counter[str]

    @classmethod
    def of(cls, data: dict[str, Any]) -> LagResult:
        return cls(sorted(data["latencies_ms"]), sorted(data["late_ms"]), Counter(data["errors"]))

    def p(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    def late_p(self, q: float) -> float | None:
        return percentile(self.late_ms, q)


def machine_cpu() -> tuple[float, float] | None:
    """CPU seconds the whole machine has been busy, and has had in all (summed over its cores),
    since boot (Linux ``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


class MachineLoad:
    """Busy % of the whole machine (100 = one core) from creation to ``stop``, less what
    ``exclude`` (servers) used meanwhile."""

    def __init__(self, cores: int, exclude: Sequence[Server] = ()) -> None:
        self.cores = cores
        self._exclude = exclude
        self._before = machine_cpu()
        self._excluded_before = [s.cpu_seconds() or 0.0 for s in exclude]
        self.pct: float | None = None

    def stop(self) -> float | None:
        after = machine_cpu()
        excluded = sum(
            (s.cpu_seconds() or 0.0) - before
            for s, before in zip(self._exclude, self._excluded_before, strict=True)
        )
        if self._before is not None and after is not None and after[1] > self._before[1]:
            busy = after[0] - self._before[0] - excluded
            self.pct = max(0.0, 100 * self.cores * busy / (after[1] - self._before[1]))
        return self.pct


@dataclass
class HashTiming:
    parameters: str
    median_ms: float
    min_ms: float
    samples: int
    threads: int
    parallel_per_s: float  # hashes/s with ``threads`` threads verifying at once, in-process

    @property
    def single_s(self) -> float:
        return self.median_ms / 1000


def time_hashes(password_hash: str, threads: int, parallel_seconds: float) -> HashTiming:
    """Time ``argon2.PasswordHasher.verify`` of ``password_hash`` (what a login computes) with
    the hash's own parameters: one at a time, then ``threads`` threads at once."""
    import argon2

    params = argon2.extract_parameters(password_hash)
    hasher = argon2.PasswordHasher.from_parameters(params)
    secret = PASSWORD.encode()
    for _ in range(2):
        hasher.verify(password_hash, secret)
    samples = []
    for _ in range(HASH_SAMPLES):
        begin = time.perf_counter()
        hasher.verify(password_hash, secret)
        samples.append(time.perf_counter() - begin)

    done = [0] * threads
    deadline = time.perf_counter() + parallel_seconds

    def worker(slot: int) -> None:
        while time.perf_counter() < deadline:
            hasher.verify(password_hash, secret)
            done[slot] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    return HashTiming(
        parameters=(
            f"argon2{params.type.name.lower()} m={params.memory_cost} KiB, t={params.time_cost}, "
            f"p={params.parallelism}"
        ),
        median_ms=statistics.median(samples) * 1000,
        min_ms=min(samples) * 1000,
        samples=len(samples),
        threads=threads,
        parallel_per_s=sum(done) / elapsed,
    )


async def measure(
    wrk: str | None,
    name: str,
    server: Server,
    load: Load,
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    workdir: Path,
) -> Result:
    check_alive(server)
    if wrk:
        return await measure_wrk(
            wrk,
            name,
            server,
            load,
            concurrency=concurrency,
            seconds=seconds,
            warmup=warmup,
            script_dir=workdir,
        )
    return await measure_python(
        name, server, load, concurrency=concurrency, seconds=seconds, warmup=warmup
    )


# --------------------------------------------------------------------------- the run


@dataclass
class Figures:
    hashes: HashTiming
    cores: int
    background_pct: float | None  # machine CPU % used by others while the servers were idle
    flood_machine_pct: float | None  # machine CPU % during the measured login flood
    login: Result
    idle: LagResult
    flood: LagResult
    bare: Result
    me: Result


async def log_in(session: ClientSession, server: Server, email: str) -> str:
    body = {"email": email, "password": PASSWORD}
    async with session.post(server.url(LOGIN_PATH), json=body) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise BenchmarkError(f"POST {LOGIN_PATH} answered {resp.status}: {text}")
    token: str = json.loads(text)["access_token"]
    async with session.get(
        server.url(ME_PATH), headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise BenchmarkError(f"GET {ME_PATH} answered {resp.status}: {text}")
    return token


async def run_benchmark(
    servers: dict[str, Server],
    emails: Sequence[str],
    workdir: Path,
    args: argparse.Namespace,
    wrk: str | None,
) -> Figures:
    bare, avst = servers["bare"], servers["avatarstack"]
    async with ClientSession(timeout=ClientTimeout(total=REQUEST_TIMEOUT)) as session:
        await wait_ready(session, bare, "/")
        await wait_ready(session, avst, "/healthz")
        token = await log_in(session, avst, emails[0])

    cores = os.cpu_count() or 1
    # whatever runs besides this benchmark (other test runs, builds) lowers every figure
    background = MachineLoad(cores, exclude=(bare, avst))
    await asyncio.sleep(1.0)
    background.stop()
    print("  timing argon2id in this process ...", file=sys.stderr, flush=True)
    # a hash made like the server's: by the default hasher (the container's for argon2id)
    hasher = Argon2PasswordHasher()
    try:
        password_hash = await hasher.hash(PASSWORD)
    finally:
        hasher.close()
    hashes = await asyncio.to_thread(time_hashes, password_hash, cores, 2.0)

    probe = Probe(avst.url("/healthz"), args.probe_interval, workdir)
    try:
        await probe.ready()
        print("  /healthz while idle ...", file=sys.stderr, flush=True)
        idle = LagResult.of(await probe.measure(2.0))

        login_load = Load(
            LOGIN_PATH,
            method="POST",
            headers=(("Content-Type", "application/json"),),
            bodies=tuple(
                json.dumps({"email": email, "password": PASSWORD}).encode() for email in emails
            ),
        )
        print(
            f"  login flood ({args.login_concurrency} connections) + /healthz probe ...",
            file=sys.stderr,
            flush=True,
        )
        if args.warmup > 0:
            await measure(
                wrk,
                "warm-up",
                avst,
                login_load,
                concurrency=args.login_concurrency,
                seconds=args.warmup,
                warmup=0,
                workdir=workdir,
            )
        # the probe covers the middle of the measured flood (not its ramp-up or tail)
        margin = min(0.5, args.login_seconds / 10)
        flood_machine = MachineLoad(cores)
        flood_task = asyncio.create_task(
            measure(
                wrk,
                "login",
                avst,
                login_load,
                concurrency=args.login_concurrency,
                seconds=args.login_seconds,
                warmup=0,
                workdir=workdir,
            )
        )
        try:
            await asyncio.sleep(margin)
            flood_lag = LagResult.of(await probe.measure(args.login_seconds - 2 * margin))
            login = await flood_task
            flood_machine.stop()
        finally:
            if not flood_task.done():
                flood_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, BenchmarkError):
                    await flood_task
    finally:
        probe.close()

    me_load = Load(ME_PATH, headers=(("Authorization", f"Bearer {token}"),))
    rounds: dict[str, list[Result]] = {"bare": [], "me": []}
    for number in range(1, args.rounds + 1):
        label = f"round {number}/{args.rounds}: " if args.rounds > 1 else ""
        for key, name, server, load in (
            ("bare", "bare hello-world", bare, Load("/")),
            ("me", f"GET {ME_PATH}", avst, me_load),
        ):
            print(f"  {label}{name} ...", file=sys.stderr, flush=True)
            rounds[key].append(
                await measure(
                    wrk,
                    name,
                    server,
                    load,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    workdir=workdir,
                )
            )
    return Figures(
        hashes,
        cores,
        background.pct,
        flood_machine.pct,
        login,
        idle,
        flood_lag,
        best_round(rounds["bare"]),
        best_round(rounds["me"]),
    )


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def report(f: Figures, args: argparse.Namespace, client: str) -> bool:
    """Print the figures; True when every request answered 200."""
    h = f.hashes
    print()
    print(
        f"client: {client}; {f.cores} CPUs; python {sys.version.split()[0]}, aiohttp "
        f"{aiohttp_version}"
    )
    print(f"database: {masked_url(args.database_url) or 'SQLite in a temporary data dir'}")
    print(f"password hashes: {h.parameters} (the default Argon2PasswordHasher)")
    if f.background_pct is not None:
        print(
            f"CPU used by other processes just before the measurements: {f.background_pct:.0f}%"
            " of a core"
            + (
                " - WARNING: something else is using the CPU; every figure is lower than on a "
                "quiet machine"
                if f.background_pct >= BACKGROUND_WARN_PCT
                else ""
            )
        )

    ceiling = f.cores / h.single_s
    login = f.login
    ratio = login.rps / ceiling if ceiling else 0.0
    print()
    print(
        f"1. logins/s: POST {LOGIN_PATH}, {args.users} users in turn, "
        f"{args.login_concurrency} connections, {login.seconds:.1f} s"
    )
    print(
        f"   one hash (argon2-cffi verify in this process, median of {h.samples}): "
        f"{h.median_ms:.1f} ms (min {h.min_ms:.1f} ms)"
    )
    print(
        f"   single-hash ceiling: {f.cores} cores / {h.median_ms:.1f} ms = {ceiling:.1f} logins/s"
    )
    print(
        f"   (in this process, {h.threads} threads verifying at once: {h.parallel_per_s:.1f} "
        f"hashes/s = {h.parallel_per_s / ceiling:.2f} of the ceiling)"
    )
    cpu_per_login = (
        None
        if login.server_cpu is None or not login.requests
        else login.server_cpu / login.requests
    )
    print(
        f"   measured: {login.rps:.1f} logins/s, p50 {fmt(login.p50_ms, '.0f')} ms, "
        f"p99 {fmt(login.p99_ms, '.0f')} ms, {login.errors} errors; server CPU "
        f"{fmt(login.server_cpu_pct, '.0f')}%, "
        f"{fmt(None if cpu_per_login is None else cpu_per_login * 1000, '.1f')} ms CPU per login"
        f" (whole machine: {fmt(f.flood_machine_pct, '.0f')}% of {f.cores * 100}%)"
    )
    print(
        f"   goal ≥ {LOGIN_GOAL} of the ceiling: {_verdict(ratio >= LOGIN_GOAL)} ({ratio:.2f}; "
        f"{login.rps / h.parallel_per_s:.2f} of the in-process {h.threads}-thread rate)"
    )

    print()
    print(
        f"2. event-loop lag: GET /healthz every {args.probe_interval * 1000:g} ms from a separate "
        "process"
    )
    for label, lag in (("idle", f.idle), ("during the login flood", f.flood)):
        print(
            f"   {label}: p50 {fmt(lag.p(50), '.2f')} ms, p99 {fmt(lag.p(99), '.2f')} ms, "
            f"max {fmt(lag.latencies_ms[-1] if lag.latencies_ms else None, '.2f')} ms "
            f"({len(lag.latencies_ms)} answers, {sum(lag.errors.values())} errors; the probe "
            f"itself started p99 {fmt(lag.late_p(99), '.2f')} ms late)"
        )
    p99 = f.flood.p(99)
    met = p99 is not None and p99 < LAG_GOAL_MS
    print(f"   goal p99 < {LAG_GOAL_MS:g} ms during the flood: {_verdict(met)}")

    print()
    print(
        f"3. authenticated reads vs bare hello-world: {args.concurrency} connections, "
        f"{args.seconds:g} s after {args.warmup:g} s warm-up, best of {args.rounds}"
    )
    header = (
        f"   {'target':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'srv CPU%':>10}{'CPU us/req':>12}{'client CPU%':>13}"
    )
    print(header)
    for r in (f.bare, f.me):
        print(
            f"   {r.name:<24}{r.rps:>9.0f}{fmt(r.p50_ms, '.2f'):>9}{fmt(r.p99_ms, '.2f'):>9}"
            f"{r.errors:>8}{fmt(r.server_cpu_pct, '.0f'):>10}"
            f"{fmt(r.cpu_us_per_request, '.0f'):>12}{fmt(r.client_cpu_pct, '.0f'):>13}"
        )
    ratio = f.me.rps / f.bare.rps if f.bare.rps else 0.0
    cpu_ratio = (
        f.bare.cpu_us_per_request / f.me.cpu_us_per_request
        if f.bare.cpu_us_per_request and f.me.cpu_us_per_request
        else None
    )
    client_bound = f.bare.server_cpu_pct is not None and f.bare.server_cpu_pct < CLIENT_BOUND_PCT
    print(
        f"   goal ≥ {READ_GOAL} of bare req/s: {_verdict(ratio >= READ_GOAL)} ({ratio:.2f}; "
        f"CPU-per-request ratio {fmt(cpu_ratio, '.2f')})"
        + (" - inconclusive: the bare server was not saturated" if client_bound else "")
    )

    clean = True
    for name, kinds in (
        ("the login flood", f.login.error_kinds),
        ("the idle probe", f.idle.errors),
        ("the probe during the flood", f.flood.errors),
        (f.bare.name, f.bare.error_kinds),
        (f.me.name, f.me.error_kinds),
    ):
        if sum(kinds.values()):
            clean = False
            listed = ", ".join(f"{k}: {v}" for k, v in kinds.most_common())
            print(f"errors in {name}: {listed}", file=sys.stderr)
    return clean


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description="Logins/s vs the argon2id ceiling, event-loop lag during a login flood, "
        "and authenticated GET /api/v1/users/me vs a bare aiohttp app."
    )
    parser.add_argument(
        "--login-seconds",
        type=float,
        default=10.0,
        help="the measured login flood; whole seconds with wrk (10)",
    )
    parser.add_argument(
        "--login-concurrency",
        type=int,
        default=2 * cores,
        help=f"connections of the login flood (2x cores = {2 * cores})",
    )
    parser.add_argument("--users", type=int, default=16, help="users created and logged in (16)")
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=0.01,
        help="seconds between two GET /healthz of the lag probe (0.01)",
    )
    add_load_options(parser, what="read measurement")
    # internal: the parent starts itself as these children
    parser.add_argument("--serve", choices=("bare", "avatarstack"), help=argparse.SUPPRESS)
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (
        args.login_seconds < 2
        or args.seconds <= 0
        or args.warmup < 0
        or min(args.login_concurrency, args.concurrency, args.users, args.rounds) < 1
        or args.probe_interval <= 0
    ):
        parser.error(
            "--login-seconds must be ≥ 2; --seconds, --probe-interval, --users, --rounds and "
            "the concurrencies positive; --warmup ≥ 0"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "bare":
        serve_bare(args.port)
        return 0
    if args.serve:
        serve_avatarstack()
        return 0
    if args.probe:
        run_probe(args.probe, args.probe_interval)
        return 0

    generator = load_generator(args.client)
    if generator is None:
        return 2
    wrk, client = generator
    print(f"load generator: {client}", file=sys.stderr)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        # new addresses every run: a PostgreSQL database keeps the users of earlier runs
        run_id = secrets.token_hex(4)
        emails = [f"bench-{run_id}-{n}@example.com" for n in range(args.users)]
        with running(args, emails) as (servers, workdir):
            figures = asyncio.run(run_benchmark(servers, emails, workdir, args, wrk))
    except (BenchmarkError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if not report(figures, args, client):
        print("error: some requests failed; the figures above are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
