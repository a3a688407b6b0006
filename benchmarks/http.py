"""HTTP throughput of avatarstack against a bare aiohttp app started in the same run.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/http.py [--seconds N] [--concurrency C] [--database-url URL]

Every server runs in its own subprocess, so the load generator never shares the server's event
loop or CPU core:

* ``bare``: an aiohttp application with one GET handler returning the same small JSON body as
  ``/healthz`` (the baseline);
* ``avatarstack``: ``create_app`` served by ``run_server`` (what ``avatarstack serve`` runs),
  with a temporary data dir (SQLite unless ``--database-url``), access log off, log level
  ``warning``: measured on ``GET /healthz`` and ``GET /api/v1/info`` (reads the database);
* ``avatarstack+log``: the same with the access log on and log level ``info`` (lines written to
  a file), measured on ``GET /api/v1/info`` so the cost of one log line per request is visible.

Load comes from ``wrk`` when it is installed, otherwise from an aiohttp client in this process.
Prints req/s, p50/p99 latency, errors and server CPU per request of each, then the ratios to the
bare app; the goal from the issue is req/s of ``/healthz`` ≥ 0.8 of bare. The exit status is 0
whether or not the goal is met (this is a measurement) and non-zero only when something failed:
a server did not start, or a request failed or answered other than 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

# This file is named ``http.py``: with its folder first on ``sys.path`` (``python
# benchmarks/http.py``) it would shadow the standard library's ``http`` package that aiohttp
# imports (none of the modules above does). Drop the folder before importing aiohttp.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"
BODY = b'{"status":"ok"}'  # the body of /healthz, so the baseline serialises nothing either
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
#: hard cap on requests per measurement of the Python client (loops end on time or count)
MAX_REQUESTS = 5_000_000
GOAL = 0.8
#: below this server CPU %, the bare app was not saturated: the load generator was the limit
CLIENT_BOUND_PCT = 85

ServerKind = Literal["bare", "avatarstack", "avatarstack+log"]


# --------------------------------------------------------------------------- server processes


def serve_bare(port: int) -> None:
    """Child process: the baseline, one GET handler and nothing else."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, shutdown_timeout=5)


def serve_avatarstack() -> None:
    """Child process: avatarstack exactly as ``avatarstack serve`` runs it (settings from env)."""
    from avatarstack.bootstrap import Settings, create_app
    from avatarstack.bootstrap.cli import run_server

    settings = Settings()
    run_server(create_app(settings, setup_logging=True), settings)


@dataclass
class Server:
    kind: ServerKind
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes]

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def log_tail(self, lines: int = 20) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux ``/proc``)."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(kind: ServerKind, workdir: Path, database_url: str | None) -> Server:
    port = free_port()
    data_dir = workdir / kind.replace("+", "-")
    data_dir.mkdir()
    # settings come from the environment only: drop the caller's AVATARSTACK_* variables and run
    # in an empty folder, so no stray .env changes what is measured
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    env["PYTHONUNBUFFERED"] = "1"
    args = [sys.executable, str(SCRIPT), "--serve", kind, "--port", str(port)]
    if kind != "bare":
        access_log = kind == "avatarstack+log"
        env.update(
            {
                "AVATARSTACK_DATA_DIR": str(data_dir),
                "AVATARSTACK_HTTP__HOST": HOST,
                "AVATARSTACK_HTTP__PORT": str(port),
                "AVATARSTACK_HTTP__SHUTDOWN_TIMEOUT": "5",
                "AVATARSTACK_HTTP__ACCESS_LOG": "true" if access_log else "false",
                # with the access log on its lines must actually be written (info level)
                "AVATARSTACK_LOG_LEVEL": "info" if access_log else "warning",
            }
        )
        if database_url:
            env["AVATARSTACK_DATABASE_URL"] = database_url
    log_path = workdir / f"{kind.replace('+', '-')}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        args, cwd=data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
    )
    return Server(kind, proc, port, log_path, log_file)


def stop_server(server: Server) -> None:
    """SIGTERM (graceful: cleanup contexts close the pools), then SIGKILL if it hangs."""
    proc = server.proc
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"warning: {server.kind} server ignored SIGTERM; killing it", file=sys.stderr)
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
    finally:
        server.log_file.close()


class BenchmarkError(Exception):
    """The benchmark could not run (a server did not start, wrk failed, ...)."""


async def wait_ready(session: aiohttp.ClientSession, server: Server, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchmarkError(
                f"{server.kind} server exited with status {server.proc.returncode}:\n"
                + server.log_tail()
            )
        try:
            async with session.get(server.url(path)) as resp:
                await resp.read()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = exc.__class__.__name__
        await asyncio.sleep(0.05)
    raise BenchmarkError(
        f"{server.kind} server not ready after {STARTUP_TIMEOUT:g} s ({last}):\n"
        + server.log_tail()
    )


# --------------------------------------------------------------------------- load generators


@dataclass
class Result:
    name: str
    requests: int  # answered 200
    errors: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    server_cpu: float | None  # seconds of server CPU during the measurement
    client_cpu: float | None  # seconds of load-generator CPU during the measurement
    error_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_pct(self) -> float | None:
        return None if self.server_cpu is None else 100 * self.server_cpu / self.seconds

    @property
    def cpu_us_per_request(self) -> float | None:
        total = self.requests + self.errors
        if self.server_cpu is None or not total:
            return None
        return 1e6 * self.server_cpu / total


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def python_load(
    url: str, concurrency: int, seconds: float, *, record: bool
) -> tuple[int, int, float, list[float], Counter[str]]:
    """``concurrency`` workers GET ``url`` in a loop until ``seconds`` pass (or the cap)."""
    ok = 0
    errors = 0
    kinds: Counter[str] = Counter()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal ok, errors
            while ok + errors < MAX_REQUESTS:
                begin = time.perf_counter()
                if begin >= deadline:
                    return
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors += 1
                    kinds[exc.__class__.__name__] += 1
                    continue
                if status == 200:
                    ok += 1
                    if record:
                        latencies.append(time.perf_counter() - begin)
                else:
                    errors += 1
                    kinds[f"HTTP {status}"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return ok, errors, elapsed, latencies, kinds


async def measure_python(
    name: str, server: Server, path: str, *, concurrency: int, seconds: float, warmup: float
) -> Result:
    url = server.url(path)
    if warmup > 0:
        await python_load(url, concurrency, warmup, record=False)
    cpu_before = server.cpu_seconds()
    own_before = time.process_time()
    ok, errors, elapsed, latencies, kinds = await python_load(
        url, concurrency, seconds, record=True
    )
    own = time.process_time() - own_before
    cpu_after = server.cpu_seconds()
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    latencies.sort()
    p50 = percentile(latencies, 50)
    p99 = percentile(latencies, 99)
    return Result(
        name,
        ok,
        errors,
        elapsed,
        None if p50 is None else p50 * 1000,
        None if p99 is None else p99 * 1000,
        server_cpu,
        own,
        kinds,
    )


_WRK_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)\b")
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(text: str) -> float | None:
    match = _WRK_DURATION.fullmatch(text.strip())
    return float(match[1]) * _WRK_UNITS[match[2]] if match else None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_wrk(wrk: str, url: str, concurrency: int, seconds: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={REQUEST_TIMEOUT:g}s",
        "--latency",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise BenchmarkError(f"wrk failed with status {proc.returncode}:\n{text}")
    return text


async def measure_wrk(
    wrk: str,
    name: str,
    server: Server,
    path: str,
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> Result:
    url = server.url(path)
    if warmup > 0:
        await run_wrk(wrk, url, concurrency, warmup)
    cpu_before = server.cpu_seconds()
    own_before = _children_cpu()
    text = await run_wrk(wrk, url, concurrency, seconds)
    own = _children_cpu() - own_before
    cpu_after = server.cpu_seconds()
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before

    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if total is None:
        raise BenchmarkError(f"cannot read wrk's output:\n{text}")
    done = int(total[1])
    elapsed = float(total[2]) * _WRK_UNITS[total[3]] / 1000
    kinds: Counter[str] = Counter()
    if non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        kinds["HTTP non-2xx/3xx"] = int(non2xx[1])
    if sock := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        for label, value in zip(
            ("connect", "read", "write", "timeout"), sock.groups(), strict=True
        ):
            if int(value):
                kinds[f"socket {label}"] = int(value)
    errors = sum(kinds.values())
    latency = {q: _wrk_ms(v) for q, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", text, flags=re.M)}
    return Result(
        name,
        max(done - kinds["HTTP non-2xx/3xx"], 0),
        errors,
        elapsed,
        latency.get("50"),
        latency.get("99"),
        server_cpu,
        own,
        kinds,
    )


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Target:
    name: str
    server: ServerKind
    path: str


TARGETS = (
    Target("bare hello-world", "bare", "/"),
    Target("/healthz", "avatarstack", "/healthz"),
    Target("/api/v1/info", "avatarstack", "/api/v1/info"),
    Target("/api/v1/info + access log", "avatarstack+log", "/api/v1/info"),
)
READY_PATH: dict[ServerKind, str] = {
    "bare": "/",
    "avatarstack": "/healthz",
    "avatarstack+log": "/healthz",
}


async def run_benchmark(
    servers: dict[ServerKind, Server], args: argparse.Namespace, wrk: str | None
) -> list[Result]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        for kind, server in servers.items():
            await wait_ready(session, server, READY_PATH[kind])
            # /api/v1/info must answer 200 before it is worth measuring
            if kind != "bare":
                async with session.get(server.url("/api/v1/info")) as resp:
                    body = await resp.text()
                    if resp.status != 200:
                        raise BenchmarkError(f"/api/v1/info answered {resp.status}: {body}")
    rounds: dict[str, list[Result]] = {t.name: [] for t in TARGETS}
    for number in range(1, args.rounds + 1):
        for target in TARGETS:
            server = servers[target.server]
            if server.proc.poll() is not None:
                raise BenchmarkError(f"{server.kind} server died:\n{server.log_tail()}")
            label = f"round {number}/{args.rounds}: " if args.rounds > 1 else ""
            print(f"  {label}{target.name} ...", file=sys.stderr, flush=True)
            if wrk:
                result = await measure_wrk(
                    wrk,
                    target.name,
                    server,
                    target.path,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
            else:
                result = await measure_python(
                    target.name,
                    server,
                    target.path,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
            rounds[target.name].append(result)
    return [_best_round(rounds[t.name]) for t in TARGETS]


def _best_round(results: list[Result]) -> Result:
    """The round with the most req/s (least disturbed by the rest of the machine); the errors
    of every round are kept."""
    chosen = max(results, key=lambda r: r.rps)
    kinds: Counter[str] = Counter()
    for result in results:
        kinds.update(result.error_kinds)
    chosen.errors = sum(r.errors for r in results)
    chosen.error_kinds = kinds
    return chosen


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[Result], args: argparse.Namespace, client: str) -> None:
    print()
    print(
        f"client: {client}; concurrency {args.concurrency}; {args.seconds:g} s per measurement "
        f"after {args.warmup:g} s warm-up; {args.rounds} round(s) (best shown); "
        f"{os.cpu_count()} CPUs"
    )
    print(f"database: {_masked(args.database_url) or 'SQLite in a temporary data dir'}")
    print(f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}")
    print()
    header = (
        f"{'target':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'srv CPU%':>10}{'CPU us/req':>12}{'client CPU%':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        client_pct = None if r.client_cpu is None else 100 * r.client_cpu / r.seconds
        print(
            f"{r.name:<28}{r.rps:>10.0f}{_fmt(r.p50_ms, '.2f'):>9}{_fmt(r.p99_ms, '.2f'):>9}"
            f"{r.errors:>8}{_fmt(r.server_cpu_pct, '.0f'):>10}"
            f"{_fmt(r.cpu_us_per_request, '.0f'):>12}{_fmt(client_pct, '.0f'):>13}"
        )
    bare = results[0]
    print()
    print("vs bare hello-world     req/s ratio   CPU-per-request ratio (bare / target)")
    for r in results[1:]:
        ratio = r.rps / bare.rps if bare.rps else 0.0
        cpu_ratio = (
            bare.cpu_us_per_request / r.cpu_us_per_request
            if bare.cpu_us_per_request and r.cpu_us_per_request
            else None
        )
        print(f"  {r.name:<26}{ratio:>7.2f}{_fmt(cpu_ratio, '.2f'):>14}")
    healthz = results[1]
    ratio = healthz.rps / bare.rps if bare.rps else 0.0
    verdict = "MET" if ratio >= GOAL else "NOT MET"
    client_bound = bare.server_cpu_pct is not None and bare.server_cpu_pct < CLIENT_BOUND_PCT
    print()
    print(
        f"goal ≥ {GOAL} for /healthz: {verdict} (req/s ratio {ratio:.2f})"
        + (" - inconclusive, see the note" if client_bound else "")
    )
    if client_bound:
        print(
            f"note: the bare server used only {bare.server_cpu_pct:.0f}% of a core, so the load "
            "generator (or the machine) was the limit, not the server; req/s ratios are pulled "
            "towards 1. The CPU-per-request ratio is the better measure then"
            + ("" if client.startswith("wrk") else " (or install wrk)")
            + "."
        )
    failed = [r for r in results if r.errors]
    for r in failed:
        kinds = ", ".join(f"{k}: {v}" for k, v in r.error_kinds.most_common())
        print(f"errors in {r.name}: {kinds}", file=sys.stderr)


def _masked(url: str | None) -> str | None:
    if not url:
        return None
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


@contextlib.contextmanager
def running_servers(
    kinds: Sequence[ServerKind], database_url: str | None
) -> Iterator[dict[ServerKind, Server]]:
    with tempfile.TemporaryDirectory(prefix="avatarstack-bench-") as tmp:
        servers: dict[ServerKind, Server] = {}
        try:
            for kind in kinds:
                servers[kind] = start_server(kind, Path(tmp), database_url)
            yield servers
        finally:
            for server in servers.values():
                try:
                    stop_server(server)
                except Exception as exc:  # keep stopping the others
                    print(f"warning: stopping {server.kind}: {exc}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="req/s of avatarstack's /healthz and /api/v1/info vs a bare aiohttp app."
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="per measurement; whole seconds with wrk (3)"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="before each measurement (1)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections (32)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="measure every target this often; best shown (2)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="e.g. postgresql://postgres@127.0.0.1:5432/test (default: SQLite in a temp dir)",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk if installed (auto), or the aiohttp client",
    )
    # internal: run one server (the parent starts itself as the child)
    parser.add_argument(
        "--serve", choices=("bare", "avatarstack", "avatarstack+log"), help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--seconds, --concurrency and --rounds must be positive, --warmup ≥ 0")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "bare":
        serve_bare(args.port)
        return 0
    if args.serve:
        serve_avatarstack()
        return 0

    wrk = shutil.which("wrk") if args.client in {"auto", "wrk"} else None
    if args.client == "wrk" and wrk is None:
        print("error: --client wrk but wrk is not installed (apt install wrk)", file=sys.stderr)
        return 2
    if wrk:
        client = f"wrk ({wrk}, 1 thread)"
    elif args.client == "python":
        client = "python aiohttp client"
    else:
        client = "python aiohttp client (wrk not installed)"
    print(f"load generator: {client}", file=sys.stderr)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers (and wrk)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with running_servers(("bare", "avatarstack", "avatarstack+log"), args.database_url) as s:
            results = asyncio.run(run_benchmark(s, args, wrk))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    report(results, args, client)
    if any(r.errors for r in results):
        print("error: some requests failed; the figures above are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
