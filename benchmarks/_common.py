"""Pieces the benchmark scripts share: server subprocesses, load generators, wrk parsing.

Not a benchmark itself. The scripts import it as ``from _common import ...`` (``python
benchmarks/<script>.py`` puts this folder first on ``sys.path``) and must do so before they
import aiohttp: this module takes the folder off ``sys.path`` again first, because
``benchmarks/http.py`` there would shadow the standard library's ``http`` package that aiohttp
imports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import aiohttp  # noqa: E402
from aiohttp import ClientSession, ClientWebSocketResponse, WSMsgType, web  # noqa: E402

HOST = "127.0.0.1"
BODY = b'{"status":"ok"}'  # the body of /healthz, so the baseline serialises nothing either
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
#: hard cap on requests per measurement of the Python client (loops end on time or count)
MAX_REQUESTS = 5_000_000
API = "/api/v1"
WS_PATH = f"{API}/ws"
FRAME_TIMEOUT = 15.0


class BenchmarkError(Exception):
    """The benchmark could not run (a server did not start, wrk failed, ...)."""


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
    kind: str
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
        return process_cpu_seconds(self.proc.pid)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, all its threads (Linux ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy since boot, all cores (``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of a process and all its descendants, living or reaped (``/proc``): the
    server, its fork server and the parsing children (a child's time moves into its parent's
    ``cutime`` when it is reaped, so the sum stays continuous)."""
    parents: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is None:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
        ticks[int(entry.name)] = sum(int(v) for v in fields[11:15])  # u, s, cu, cs time
    if pid not in ticks:
        return None
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo.extend(parents.get(current, ()))
    return total / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This process's environment without the caller's ``AVATARSTACK_*`` variables: settings of
    the servers come from what the script sets only (run them in an empty folder too, so no
    stray ``.env`` changes what is measured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def avatarstack_env(
    data_dir: Path, port: int, *, database_url: str | None, access_log: bool = False
) -> dict[str, str]:
    """The ``AVATARSTACK_*`` variables of a benchmarked server: its own data dir and port,
    access log off and log level ``warning`` (or, with the access log on, ``info``, so its lines
    are actually written)."""
    env = {
        "AVATARSTACK_DATA_DIR": str(data_dir),
        "AVATARSTACK_HTTP__HOST": HOST,
        "AVATARSTACK_HTTP__PORT": str(port),
        "AVATARSTACK_HTTP__SHUTDOWN_TIMEOUT": "5",
        "AVATARSTACK_HTTP__ACCESS_LOG": "true" if access_log else "false",
        "AVATARSTACK_LOG_LEVEL": "info" if access_log else "warning",
    }
    if database_url:
        env["AVATARSTACK_DATABASE_URL"] = database_url
    return env


def spawn_server(
    kind: str,
    args: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
) -> Server:
    """Start ``args`` (a server on ``port``) with its output going to ``log_path``."""
    log_file = log_path.open("wb")
    try:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    except BaseException:
        log_file.close()
        raise
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


def stop_servers(servers: Iterable[Server]) -> None:
    """Stop every server, even when stopping one of them fails."""
    for server in servers:
        try:
            stop_server(server)
        except Exception as exc:  # keep stopping the others
            print(f"warning: stopping {server.kind}: {exc}", file=sys.stderr)


def temporary_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="avatarstack-bench-")


async def wait_ready(session: aiohttp.ClientSession, server: Server, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        check_alive(server)
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


def check_alive(server: Server) -> None:
    if server.proc.poll() is not None:
        raise BenchmarkError(
            f"{server.kind} server exited with status {server.proc.returncode}:\n"
            + server.log_tail()
        )


# --------------------------------------------------------------------------- load generators


@dataclass(frozen=True)
class Load:
    """What the load generator sends: ``GET path`` by default; or another method, extra headers
    and request bodies, which are sent in turn (request 1 gets body 1, and so on, round robin)."""

    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    bodies: tuple[bytes, ...] = ()

    @property
    def is_plain_get(self) -> bool:
        return self.method == "GET" and not self.bodies


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
    def client_cpu_pct(self) -> float | None:
        return None if self.client_cpu is None else 100 * self.client_cpu / self.seconds

    @property
    def cpu_us_per_request(self) -> float | None:
        total = self.requests + self.errors
        if self.server_cpu is None or not total:
            return None
        return 1e6 * self.server_cpu / total


def add_load_options(parser: argparse.ArgumentParser, *, what: str) -> None:
    """The options every benchmark shares: measurement length, warm-up, connections, rounds,
    database and load generator. ``what`` names what the measurement covers in the help."""
    parser.add_argument(
        "--seconds", type=float, default=3.0, help=f"per {what}; whole seconds with wrk (3)"
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
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)


def load_generator(choice: str) -> tuple[str | None, str] | None:
    """The wrk binary for ``--client`` (None: the Python client) and a line describing the
    client; None (after an error message) when ``--client wrk`` but wrk is not installed."""
    wrk = shutil.which("wrk") if choice in {"auto", "wrk"} else None
    if choice == "wrk" and wrk is None:
        print("error: --client wrk but wrk is not installed (apt install wrk)", file=sys.stderr)
        return None
    if wrk:
        return wrk, f"wrk ({wrk}, 1 thread)"
    if choice == "python":
        return None, "python aiohttp client"
    return None, "python aiohttp client (wrk not installed)"


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def python_load(
    url: str, concurrency: int, seconds: float, *, record: bool, load: Load | None = None
) -> tuple[int, int, float, list[float], Counter[str]]:
    """``concurrency`` workers send ``load`` (default: GET ``url``) in a loop until ``seconds``
    pass (or the cap)."""
    method = load.method if load else "GET"
    headers = dict(load.headers) if load else {}
    bodies = load.bodies if load else ()
    ok = 0
    errors = 0
    sent = 0
    kinds: Counter[str] = Counter()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal ok, errors, sent
            while ok + errors < MAX_REQUESTS:
                begin = time.perf_counter()
                if begin >= deadline:
                    return
                body = bodies[sent % len(bodies)] if bodies else None
                sent += 1
                try:
                    async with session.request(method, url, headers=headers, data=body) as resp:
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
    name: str,
    server: Server,
    load: Load | str,
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> Result:
    """One measurement with the aiohttp client (``load`` may be a plain GET path)."""
    load = Load(load) if isinstance(load, str) else load
    url = server.url(load.path)
    if warmup > 0:
        await python_load(url, concurrency, warmup, record=False, load=load)
    cpu_before = server.cpu_seconds()
    own_before = time.process_time()
    ok, errors, elapsed, latencies, kinds = await python_load(
        url, concurrency, seconds, record=True, load=load
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


def wrk_ms(text: str) -> float | None:
    match = _WRK_DURATION.fullmatch(text.strip())
    return float(match[1]) * _WRK_UNITS[match[2]] if match else None


def children_cpu() -> float:
    """CPU seconds of the waited-for child processes so far (wrk's, once it has ended)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_script(load: Load, folder: Path) -> Path | None:
    """A Lua script that makes wrk send ``load``'s method and bodies (None for a plain GET:
    wrk's own request is then used). Headers go on wrk's command line (``-H``)."""
    if load.is_plain_get:
        return None

    def lua_string(data: bytes) -> str:
        text = data.decode("utf-8")
        level = 1
        while f"]{'=' * level}]" in text:
            level += 1
        return f"[{'=' * level}[{text}]{'=' * level}]"

    bodies = ",\n  ".join(lua_string(b) for b in load.bodies) if load.bodies else ""
    script = (
        f"local bodies = {{\n  {bodies}\n}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  local body = nil\n"
        "  if #bodies > 0 then\n"
        "    n = n % #bodies + 1\n"
        "    body = bodies[n]\n"
        "  end\n"
        f"  return wrk.format({lua_string(load.method.encode())}, "
        f"{lua_string(load.path.encode())}, nil, body)\n"
        "end\n"
    )
    fd, name = tempfile.mkstemp(prefix="wrk-", suffix=".lua", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(script)
    return Path(name)


async def run_wrk(
    wrk: str,
    url: str,
    concurrency: int,
    seconds: float,
    *,
    headers: Sequence[tuple[str, str]] = (),
    script: Path | None = None,
) -> str:
    args = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={REQUEST_TIMEOUT:g}s",
        "--latency",
    ]
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
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


@dataclass(frozen=True)
class WrkOutput:
    done: int  # requests completed, whatever the status
    seconds: float
    error_kinds: Counter[str]
    p50_ms: float | None
    p99_ms: float | None

    @property
    def ok(self) -> int:
        return max(self.done - self.error_kinds["HTTP non-2xx/3xx"], 0)


def parse_wrk(text: str) -> WrkOutput:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if total is None:
        raise BenchmarkError(f"cannot read wrk's output:\n{text}")
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
    latency = {q: wrk_ms(v) for q, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", text, flags=re.M)}
    return WrkOutput(
        int(total[1]),
        float(total[2]) * _WRK_UNITS[total[3]] / 1000,
        kinds,
        latency.get("50"),
        latency.get("99"),
    )


async def measure_wrk(
    wrk: str,
    name: str,
    server: Server,
    load: Load | str,
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    script_dir: Path | None = None,
) -> Result:
    """One measurement with wrk (``load`` may be a plain GET path; other loads need
    ``script_dir``, a folder for the Lua script)."""
    load = Load(load) if isinstance(load, str) else load
    url = server.url(load.path)
    script = None
    if not load.is_plain_get:
        if script_dir is None:
            raise ValueError(f"{load.method} {load.path} needs a script_dir for wrk's Lua script")
        script = wrk_script(load, script_dir)
    if warmup > 0:
        await run_wrk(wrk, url, concurrency, warmup, headers=load.headers, script=script)
    cpu_before = server.cpu_seconds()
    own_before = children_cpu()
    text = await run_wrk(wrk, url, concurrency, seconds, headers=load.headers, script=script)
    own = children_cpu() - own_before
    cpu_after = server.cpu_seconds()
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    out = parse_wrk(text)
    return Result(
        name,
        out.ok,
        sum(out.error_kinds.values()),
        out.seconds,
        out.p50_ms,
        out.p99_ms,
        server_cpu,
        own,
        out.error_kinds,
    )


def best_round(results: list[Result]) -> Result:
    """The round with the most req/s (least disturbed by the rest of the machine); the errors
    of every round are kept."""
    chosen = max(results, key=lambda r: r.rps)
    kinds: Counter[str] = Counter()
    for result in results:
        kinds.update(result.error_kinds)
    chosen.errors = sum(r.errors for r in results)
    chosen.error_kinds = kinds
    return chosen


# --------------------------------------------------------------------------- reporting & signals


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def masked_url(url: str | None) -> str | None:
    if not url:
        return None
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so the finally blocks stop the servers (and wrk)."""
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------- accounts

#: the password of every account a benchmark creates
PASSWORD = "benchmark-password-0123456789"
#: the CLI as operators run it, with this interpreter
AVATARSTACK_CLI = (sys.executable, "-m", "avatarstack")
CLI_TIMEOUT = 120.0


def create_user(
    email: str, role: str, env: dict[str, str], cwd: Path, cli: Sequence[str] = AVATARSTACK_CLI
) -> None:
    """``avatarstack users create EMAIL --role ROLE --password-stdin`` with the server's
    settings (the first call also migrates a new database and writes the dev secret key)."""
    done = subprocess.run(
        [*cli, "users", "create", email, "--role", role, "--password-stdin"],
        cwd=cwd,
        env=env,
        input=f"{PASSWORD}\n".encode(),
        capture_output=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace")
        raise BenchmarkError(
            f"avatarstack users create {email} failed (status {done.returncode}):\n"
            + output[-3000:]
        )


# --------------------------------------------------------------------------- the API and its socket

#: a small manual the knowledge-base benchmarks upload, and questions it answers
MANUAL = """# Zanobo espresso machine

## Filling the water tank

Fill the water tank with fresh, cold water up to the MAX mark before you switch the machine on.
Use filtered water when your tap water is hard: it slows down limescale in the boiler.

## Heating up

The machine heats up in about four minutes. The green light stops blinking when the boiler has
reached its brewing temperature of 93 degrees. Warm the cups on the cup tray while you wait.

## Brewing an espresso

Grind 18 grams of coffee, fill the portafilter basket and tamp it evenly with firm pressure.
Lock the portafilter into the group head and press the single-cup button. A good shot takes
25 to 30 seconds and yields about 36 grams of espresso with a thick crema.

## Steaming milk

Purge the steam wand for two seconds before you use it. Hold the tip just below the surface of
the milk until it has doubled in volume, then lower it to heat the milk to 65 degrees. Wipe and
purge the wand right after steaming so that no milk dries inside.

## Descaling

Descale the machine every three months, or when the descale light comes on. Dissolve one
descaling tablet in one litre of water, pour it into the tank and start the descaling program by
holding the steam button for five seconds. Rinse the tank and run two full tanks of clean water
through the machine afterwards.

## Cleaning the brew group

Backflush the brew group once a week with the blind basket and one cleaning tablet. Remove the
drip tray every day, empty it and wash it with warm water and a little detergent.

## Troubleshooting

If no water comes out of the group head, check that the tank is seated and that the grind is not
too fine. If the pump is loud, the tank is probably empty. Error code E3 means the boiler
temperature sensor needs a service visit.
"""
QUESTIONS = (
    "How often should I descale the machine?",
    "What temperature should the milk reach?",
    "How long does the machine take to heat up?",
    "How many grams of coffee do I need for an espresso?",
    "How do I clean the brew group?",
    "What does error code E3 mean?",
    "Why is the pump loud?",
    "What water should I use in the tank?",
    "How long should a good shot take?",
    "What should I do after steaming milk?",
)


async def log_in(session: ClientSession, server: Server, email: str) -> str:
    async with session.post(
        server.url(f"{API}/auth/login"), json={"email": email, "password": PASSWORD}
    ) as resp:
        body = await resp.text()
        if resp.status != 200:
            raise BenchmarkError(f"login answered {resp.status}: {body}")
    token: str = json.loads(body)["access_token"]
    return token


async def wait_job(
    session: ClientSession, server: Server, headers: dict[str, str], job: str
) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with session.get(server.url(f"{API}/kb/jobs/{job}"), headers=headers) as resp:
            body = await resp.json()
        if body["status"] == "succeeded":
            return
        if body["status"] == "failed":
            raise BenchmarkError(f"job {job} failed: {body.get('error')}")
        await asyncio.sleep(0.1)
    raise BenchmarkError(f"job {job} did not finish in 120 s")


async def receive(ws: ClientWebSocketResponse, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
    message = await ws.receive(timeout=timeout)
    if message.type != WSMsgType.TEXT:
        raise BenchmarkError(
            f"expected a text frame, got {message.type.name} (close code {ws.close_code})"
        )
    frame: dict[str, Any] = json.loads(message.data)
    return frame


async def until(ws: ClientWebSocketResponse, type_: str) -> dict[str, Any]:
    deadline = time.perf_counter() + FRAME_TIMEOUT
    while True:
        frame = await receive(ws, max(0.01, deadline - time.perf_counter()))
        if frame["type"] == type_:
            return frame
        if frame["type"] == "error":
            raise BenchmarkError(f"the server answered an error: {frame['data']}")


async def connect(
    session: ClientSession, server: Server, token: str | None
) -> ClientWebSocketResponse:
    """A socket; with a token, authenticated (``auth`` answered by ``ready``)."""
    ws = await session.ws_connect(server.url(WS_PATH), autoping=True, heartbeat=None)
    if token is not None:
        await ws.send_json({"type": "auth", "data": {"token": token}})
        ready = await receive(ws)
        if ready.get("type") != "ready":
            await ws.close()
            raise BenchmarkError(f"auth answered {ready}")
    return ws


async def send(ws: ClientWebSocketResponse, type_: str, data: dict[str, Any], id_: str) -> None:
    await ws.send_str(json.dumps({"type": type_, "id": id_, "data": data}))
