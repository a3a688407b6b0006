"""The realtime socket (``GET /api/v1/ws``): turn latency, idle sockets, ping/pong throughput
against a bare aiohttp WebSocket server started in the same run.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/ws.py [--turns 200] [--idle-sockets 1000] [--sockets 20]

Every server runs in its own subprocess on 127.0.0.1 (see ``_common``), so the client never
shares the server's event loop:

* ``avatarstack``: ``create_app`` served by ``run_server`` (what ``avatarstack serve`` runs),
  SQLite and embedded Chroma in a temporary data dir, the extractive answer engine and the text
  avatar (the defaults), access log off, log level ``warning``, built-in plugins only, the abuse
  limits off, the per-user socket cap raised above ``--idle-sockets`` and the per-socket frame
  rate limit raised to ``--rate-limit`` (both are settings). One thing is not a setting: the
  text avatar simulates speaking time (``TextAvatarProvider(speech_time_scale=1)``); the server
  replaces that provider with one whose ``speech_time_scale`` is ``--speech-time-scale`` (0:
  speech takes no time) through a container override, so each turn's speech ends before the
  next turn starts. The server is started as ``python -c …``: parsing children, which re-run
  the parent's main module, then import nothing extra.
* ``bare``: an aiohttp application with one WebSocket route that answers every text frame
  ``{type: "ping", id}`` with ``{type: "pong", data: {reply_to: id}}`` (JSON in, JSON out).

Set-up over HTTP: ``avatarstack users create`` makes an editor, who logs in, uploads a small
Markdown manual, builds and activates a generation (``POST /api/v1/kb/generations``).

1. **Turn latency.** One socket opens a conversation and starts its avatar (``avatar.start``),
   then sends ``--turns`` ``user.message`` frames one after the other (after ``--warmup-turns``
   untimed ones), each once the previous turn has ended and its avatar events have arrived.
   Measured from just before the send to the arrival of ``message.created``, the first
   ``answer.delta``, the first ``avatar.speaking`` (stored when the provider accepted the first
   sentence) and ``answer.completed``. Goal: p99 ≤ 50 ms to ``avatar.speaking``; the same bound
   is shown for ``answer.completed``.
2. **Idle sockets.** ``--idle-sockets`` authenticated sockets (``auth`` → ``ready``, opened 50
   at a time) stay open and silent for ``--idle-seconds``. Server RSS (``VmRSS``) before, after
   opening and after the idle time; server CPU % during the idle time (``/proc/<pid>/stat``).
   The default 30 s covers one re-check of every socket's token (every 30 s) and one or two
   heartbeat pings (every 20 s); the first 10 s are shown too. Goals: RSS growth < 100 MB and
   CPU < 5 % of one core.
3. **Ping/pong throughput.** ``--sockets`` sockets each send ``ping`` and wait for the ``pong``,
   in a loop, for ``--seconds`` after ``--warmup``, ``--rounds`` times (best round shown),
   against avatarstack and against the bare server. Printed: frames/s, round-trip p50/p99, the
   server's CPU and CPU per ping, the client's CPU, and the ratios to bare. When the bare server
   uses less than 85 % of a core, the client (one Python process) was the limit and the
   CPU-per-ping ratio is the better measure.

The exit status is 0 whether or not the goals are met (this is a measurement) and non-zero only
when something failed: a server did not start, a socket was refused or closed, a frame timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# ``_common`` must be imported before aiohttp: it takes this folder off ``sys.path`` first, where
# ``http.py`` would shadow the standard library's ``http`` package (``from _common`` sorts first).
from _common import (
    API,
    HOST,
    MANUAL,
    QUESTIONS,
    REQUEST_TIMEOUT,
    WS_PATH,
    BenchmarkError,
    Server,
    avatarstack_env,
    check_alive,
    clean_env,
    connect,
    create_user,
    exit_on_sigterm,
    fmt,
    free_port,
    load_average,
    log_in,
    machine_busy,
    percentile,
    receive,
    send,
    spawn_server,
    stop_servers,
    temporary_workdir,
    until,
    wait_job,
    wait_ready,
)
from aiohttp import (
    ClientSession,
    ClientTimeout,
    ClientWebSocketResponse,
    FormData,
    TCPConnector,
    WSMsgType,
    web,
)
from aiohttp import __version__ as aiohttp_version

SCRIPT = Path(__file__).resolve()
OPEN_CONCURRENCY = 50
#: after answer.completed, the turn's avatar events are in when none came for this long
QUIET_SECONDS = 0.05

TURN_GOAL_MS = 50.0
IDLE_MEMORY_GOAL_MB = 100.0
IDLE_CPU_GOAL_PCT = 5.0
#: below this server CPU %, the bare server was not saturated: the client was the limit
CLIENT_BOUND_PCT = 85
#: machine CPU % (100 = one core) used by other processes above which the report warns
BACKGROUND_WARN_PCT = 15

#: the avatarstack server: ``avatarstack serve`` (settings from the environment) with the text
#: avatar's speech time scaled by argv[1]. Run with ``python -c`` so that the children
#: ``multiprocessing`` starts (document parsing) re-run no script of this folder.
SERVER_CODE = """
import sys

from dependency_injector import providers

from avatarstack.adapters.textavatar import TextAvatarProvider
from avatarstack.bootstrap import Settings, build_container, create_app
from avatarstack.bootstrap.cli import run_server

settings = Settings()
container = build_container(settings)
provider = TextAvatarProvider(clock=container.clock(), speech_time_scale=float(sys.argv[1]))
container.avatar_providers.override(providers.Object({provider.name: provider}))
run_server(create_app(container=container, setup_logging=True), settings)
"""


# --------------------------------------------------------------------------- the bare server


def serve_bare_ws(port: int) -> None:
    """Child process: the baseline, one WebSocket route answering ping with pong."""

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                frame = json.loads(message.data)
                reply = {"type": "pong", "data": {"reply_to": frame.get("id")}}
                await ws.send_str(json.dumps(reply, separators=(",", ":")))
        return ws

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get(WS_PATH, socket)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, shutdown_timeout=5)


# --------------------------------------------------------------------------- process figures


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (``VmRSS``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Meter:
    """CPU % (100 = one core) from creation to ``stop``: each server, this process, the rest."""

    servers: Sequence[Server]
    seconds: float = 0.0
    server_pct: list[float | None] = field(default_factory=list)
    own_pct: float = 0.0
    others_pct: float | None = None
    _begin: float = field(default_factory=time.perf_counter)
    _own: float = field(default_factory=time.process_time)
    _machine: float | None = field(default_factory=machine_busy)
    _servers: list[float | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._servers = [s.cpu_seconds() for s in self.servers]

    def stop(self) -> Meter:
        self.seconds = time.perf_counter() - self._begin
        own = time.process_time() - self._own
        self.own_pct = 100 * own / self.seconds
        used = []
        for server, before in zip(self.servers, self._servers, strict=True):
            after = server.cpu_seconds()
            used.append(None if before is None or after is None else after - before)
        self.server_pct = [None if u is None else 100 * u / self.seconds for u in used]
        machine = machine_busy()
        if machine is not None and self._machine is not None:
            busy = machine - self._machine - own - sum(u or 0.0 for u in used)
            self.others_pct = max(0.0, 100 * busy / self.seconds)
        return self


# --------------------------------------------------------------------------- servers and set-up


def create_editor(email: str, env: dict[str, str], cwd: Path) -> None:
    create_user(email, "editor", env, cwd)


@contextlib.contextmanager
def running_servers(args: argparse.Namespace, email: str) -> Iterator[tuple[Server, Server]]:
    with temporary_workdir() as tmp:
        workdir = Path(tmp)
        servers: list[Server] = []
        try:
            port = free_port()
            (workdir / "bare").mkdir()
            servers.append(
                spawn_server(
                    "bare",
                    [sys.executable, str(SCRIPT), "--serve-bare", "--port", str(port)],
                    port=port,
                    env=clean_env(),
                    cwd=workdir / "bare",
                    log_path=workdir / "bare.log",
                )
            )
            port = free_port()
            data_dir = workdir / "avatarstack"
            data_dir.mkdir()
            env = clean_env() | avatarstack_env(data_dir, port, database_url=None)
            env |= {
                "AVATARSTACK_AUTH__RATE_LIMITS": "false",
                "AVATARSTACK_LOAD_PLUGINS": "",
                "AVATARSTACK_REALTIME__CONNECTIONS_PER_USER": str(
                    max(args.idle_sockets, args.sockets) + 10
                ),
                "AVATARSTACK_REALTIME__MESSAGES_PER_SECOND": str(args.rate_limit),
            }
            print("  creating the editor ...", file=sys.stderr, flush=True)
            create_editor(email, env, data_dir)
            servers.append(
                spawn_server(
                    "avatarstack",
                    [sys.executable, "-c", SERVER_CODE, str(args.speech_time_scale)],
                    port=port,
                    env=env,
                    cwd=data_dir,
                    log_path=workdir / "avatarstack.log",
                )
            )
            yield servers[1], servers[0]
        finally:
            stop_servers(servers)


async def prepare_knowledge(session: ClientSession, server: Server, token: str) -> None:
    """Upload the manual, build a generation and activate it."""
    headers = {"Authorization": f"Bearer {token}"}
    form = FormData()
    form.add_field("file", MANUAL.encode(), filename="zanobo.md", content_type="text/markdown")
    async with session.post(server.url(f"{API}/kb/documents"), data=form, headers=headers) as resp:
        body = await resp.json()
        if resp.status != 202:
            raise BenchmarkError(f"upload answered {resp.status}: {body}")
    await wait_job(session, server, headers, body["job_id"])
    await build_generation(session, server, headers)


async def build_generation(session: ClientSession, server: Server, headers: dict[str, str]) -> None:
    """Build a generation of the current documents, activate it and wait until it is done."""
    async with session.post(
        server.url(f"{API}/kb/generations"), json={"activate": "yes"}, headers=headers
    ) as resp:
        body = await resp.json()
        if resp.status != 202:
            raise BenchmarkError(f"POST /kb/generations answered {resp.status}: {body}")
    await wait_job(session, server, headers, body["job_id"])


# --------------------------------------------------------------------------- socket helpers


# --------------------------------------------------------------------------- 1. turn latency


#: the events a turn is timed to, in the order the server stores them
MARKS = ("message.created", "answer.delta", "avatar.speaking", "answer.completed")


@dataclass
class Turns:
    #: per mark: milliseconds from the send to the frame's arrival, one entry per turn
    client_ms: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MARKS})
    #: per pair of consecutive marks: milliseconds between the events' server timestamps
    server_ms: dict[str, list[float]] = field(default_factory=dict)
    no_answer: int = 0
    cited: int = 0
    meter: Meter | None = None


def _server_time(frame: dict[str, Any]) -> float:
    """A stored event's ``ts`` (ISO 8601, milliseconds) in seconds."""
    return datetime.fromisoformat(str(frame["ts"]).replace("Z", "+00:00")).timestamp()


async def turn_latency(
    session: ClientSession, server: Server, token: str, args: argparse.Namespace
) -> Turns:
    ws = await connect(session, server, token)
    try:
        await send(ws, "conversation.open", {}, "open")
        await until(ws, "conversation.opened")
        await send(ws, "avatar.start", {}, "start")
        session_frame = await until(ws, "avatar.session")
        if session_frame["data"].get("status") != "active":
            raise BenchmarkError(f"the avatar did not start: {session_frame['data']}")
        counts = {"avatar.speaking": 0, "avatar.idle": 0}
        turns = Turns()
        total = args.warmup_turns + args.turns
        meter: Meter | None = None
        for number in range(total):
            if number == args.warmup_turns:
                meter = Meter([server])
            measured = number >= args.warmup_turns
            client_id = f"turn-{number}-{secrets.token_hex(4)}"
            question = QUESTIONS[number % len(QUESTIONS)]
            begin = time.perf_counter()
            await send(ws, "user.message", {"client_id": client_id, "text": question}, client_id)
            seq: int | None = None
            marks: dict[str, tuple[float, float]] = {}  # mark -> (arrival, server time)
            while "answer.completed" not in marks:
                frame = await receive(ws)
                now = time.perf_counter()
                kind = frame["type"]
                if kind in counts:
                    counts[kind] += 1
                if kind == "error":
                    raise BenchmarkError(f"the server answered an error: {frame['data']}")
                if kind == "message.created" and frame["data"].get("client_id") == client_id:
                    seq = frame["seq"]
                elif seq is None or frame["data"].get("reply_to", seq) != seq:
                    continue
                if kind in MARKS and kind not in marks:
                    marks[kind] = (now, _server_time(frame))
                if kind == "answer.completed":
                    if frame["data"].get("citations"):
                        turns.cited += measured
                    else:
                        turns.no_answer += measured
            # the turn's remaining avatar events, so none is taken for the next turn's
            while True:
                try:
                    frame = await receive(ws, QUIET_SECONDS)
                except TimeoutError:
                    if counts["avatar.speaking"] == counts["avatar.idle"]:
                        break
                    continue
                if frame["type"] in counts:
                    counts[frame["type"]] += 1
                if frame["type"] == "avatar.speaking" and "avatar.speaking" not in marks:
                    marks["avatar.speaking"] = (time.perf_counter(), _server_time(frame))
            if not measured:
                continue
            for key in MARKS:
                if key in marks:
                    turns.client_ms[key].append(1000 * (marks[key][0] - begin))
            for first, then in itertools.pairwise(m for m in MARKS if m in marks):
                turns.server_ms.setdefault(f"{first} → {then}", []).append(
                    1000 * (marks[then][1] - marks[first][1])
                )
        assert meter is not None
        turns.meter = meter.stop()
        return turns
    finally:
        await ws.close()


# --------------------------------------------------------------------------- 2. idle sockets


@dataclass
class Idle:
    sockets: int
    open_seconds: float
    rss_before: float | None
    rss_open: float | None
    rss_idle: float | None
    rss_closed: float | None
    first: Meter
    whole: Meter
    dropped: int


async def idle_sockets(
    session: ClientSession, server: Server, token: str, args: argparse.Namespace
) -> Idle:
    pid = server.proc.pid
    rss_before = rss_mb(pid)
    sockets: list[ClientWebSocketResponse] = []
    semaphore = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one() -> None:
        async with semaphore:
            sockets.append(await connect(session, server, token))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(open_one() for _ in range(args.idle_sockets)))
        open_seconds = time.perf_counter() - started
        await asyncio.sleep(1.0)  # the last sockets' tasks settle
        rss_open = rss_mb(pid)
        print(
            f"  {len(sockets)} sockets open; idle for {args.idle_seconds:g} s ...",
            file=sys.stderr,
            flush=True,
        )
        whole = Meter([server])
        first = Meter([server])
        await asyncio.sleep(min(10.0, args.idle_seconds))
        first.stop()
        await asyncio.sleep(max(0.0, args.idle_seconds - 10.0))
        whole.stop()
        check_alive(server)
        rss_idle = rss_mb(pid)
        dropped = sum(1 for ws in sockets if ws.closed)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.sleep(1.0)
    rss_closed = rss_mb(pid)
    return Idle(
        sockets=len(sockets),
        open_seconds=open_seconds,
        rss_before=rss_before,
        rss_open=rss_open,
        rss_idle=rss_idle,
        rss_closed=rss_closed,
        first=first,
        whole=whole,
        dropped=dropped,
    )


# --------------------------------------------------------------------------- 3. throughput


@dataclass
class Throughput:
    name: str
    pongs: int
    errors: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    meter: Meter

    @property
    def per_s(self) -> float:
        return self.pongs / self.seconds if self.seconds else 0.0

    @property
    def server_pct(self) -> float | None:
        return self.meter.server_pct[0] if self.meter.server_pct else None

    @property
    def cpu_us_per_ping(self) -> float | None:
        pct = self.server_pct
        if pct is None or not self.pongs:
            return None
        return 1e6 * pct / 100 * self.seconds / self.pongs


async def ping_pong(
    name: str,
    session: ClientSession,
    server: Server,
    token: str | None,
    args: argparse.Namespace,
) -> Throughput:
    sockets = [await connect(session, server, token) for _ in range(args.sockets)]
    try:

        async def loop(ws: ClientWebSocketResponse, deadline: float, out: list[float]) -> int:
            errors = 0
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                begin = time.perf_counter()
                await ws.send_str(f'{{"type":"ping","id":"p{n}","data":{{}}}}')
                while True:
                    frame = await receive(ws)
                    if frame["type"] == "pong":
                        out.append(time.perf_counter() - begin)
                        break
                    if frame["type"] == "error":
                        errors += 1
                        break
            return errors

        if args.warmup > 0:
            deadline = time.perf_counter() + args.warmup
            await asyncio.gather(*(loop(ws, deadline, []) for ws in sockets))
        latencies: list[float] = []
        meter = Meter([server])
        started = time.perf_counter()
        deadline = started + args.seconds
        errors = sum(await asyncio.gather(*(loop(ws, deadline, latencies) for ws in sockets)))
        elapsed = time.perf_counter() - started
        meter.stop()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    latencies.sort()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return Throughput(
        name,
        len(latencies),
        errors,
        elapsed,
        None if p50 is None else 1000 * p50,
        None if p99 is None else 1000 * p99,
        meter,
    )


# --------------------------------------------------------------------------- the run


@dataclass
class Figures:
    background_pct: float | None
    loadavg: str
    idle: Idle
    turns: Turns
    bare: Throughput
    avst: Throughput


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (the servers inherit it) towards ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def background_load(exclude: Sequence[Server]) -> float | None:
    meter = Meter(exclude)
    await asyncio.sleep(1.0)
    return meter.stop().others_pct


async def run_benchmark(
    avst: Server, bare: Server, email: str, args: argparse.Namespace
) -> Figures:
    connector = TCPConnector(limit=0)  # a socket holds its connection: no pool limit
    timeout = ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT)
    async with ClientSession(connector=connector, timeout=timeout) as session:
        await wait_ready(session, bare, "/")
        await wait_ready(session, avst, "/healthz")
        token = await log_in(session, avst, email)
        print("  set-up: upload, build and activate a generation ...", file=sys.stderr, flush=True)
        await prepare_knowledge(session, avst, token)
        loadavg = load_average()
        background = await background_load((avst, bare))

        print(f"  opening {args.idle_sockets} idle sockets ...", file=sys.stderr, flush=True)
        idle = await idle_sockets(session, avst, token, args)

        print(f"  {args.turns} turns ...", file=sys.stderr, flush=True)
        turns = await turn_latency(session, avst, token, args)

        results: dict[str, list[Throughput]] = {"bare": [], "avatarstack": []}
        for number in range(1, args.rounds + 1):
            for name, server, auth in (("bare", bare, None), ("avatarstack", avst, token)):
                label = f"round {number}/{args.rounds}: " if args.rounds > 1 else ""
                print(f"  {label}ping/pong {name} ...", file=sys.stderr, flush=True)
                check_alive(server)
                results[name].append(await ping_pong(name, session, server, auth, args))
    best = {name: max(rounds, key=lambda r: r.per_s) for name, rounds in results.items()}
    for name, rounds in results.items():
        best[name].errors = sum(r.errors for r in rounds)
    return Figures(background, loadavg, idle, turns, best["bare"], best["avatarstack"])


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _line(label: str, values: list[float], *, indent: int = 3, width: int = 36) -> str:
    ordered = sorted(values)
    top = ordered[-1] if ordered else None
    return (
        f"{' ' * indent}{label:<{width}}p50 {fmt(percentile(ordered, 50), '7.1f')} ms   p99 "
        f"{fmt(percentile(ordered, 99), '7.1f')} ms   max {fmt(top, '7.1f')} ms"
        f"   ({len(ordered)} turns)"
    )


def report(f: Figures, args: argparse.Namespace) -> bool:
    """Print the figures; True when nothing failed along the way."""
    cores = os.cpu_count() or 1
    print()
    print(f"{cores} CPUs; python {sys.version.split()[0]}, aiohttp {aiohttp_version}")
    print(
        f"machine: load average {f.loadavg} before measuring; other processes used "
        f"{fmt(f.background_pct, '.0f')}% of a core in the second before measuring"
        + (
            " - WARNING: every figure is worse than on a quiet machine"
            if f.background_pct is not None and f.background_pct >= BACKGROUND_WARN_PCT
            else ""
        )
    )

    t = f.turns
    print()
    print(
        f"1. turn latency: {args.turns} user.message turns after {args.warmup_turns} untimed, "
        f"extractive engine, text avatar (speech_time_scale {args.speech_time_scale:g}), SQLite"
    )
    for mark in MARKS:
        print(_line(f"send → {mark}", t.client_ms[mark]))
    print("   between the stored events (their server timestamps, ms resolution):")
    for pair, values in t.server_ms.items():
        print(_line(pair, values, indent=5, width=38))
    speaking_ms = t.client_ms["avatar.speaking"]
    fifth = len(speaking_ms) // 5
    if fifth >= 5:
        early, late = sorted(speaking_ms[:fifth]), sorted(speaking_ms[-fifth:])
        print(
            f"   send → avatar.speaking, p50 of the first {fifth} turns "
            f"{fmt(percentile(early, 50), '.1f')} ms, of the last {fifth} "
            f"{fmt(percentile(late, 50), '.1f')} ms (the conversation grows by every turn)"
        )
    if t.meter is not None:
        print(
            f"   answers with citations: {t.cited}, without: {t.no_answer}; server CPU "
            f"{fmt(t.meter.server_pct[0], '.0f')}%, client {t.meter.own_pct:.0f}%, "
            f"others {fmt(t.meter.others_pct, '.0f')}% during the turns"
        )
    speaking = percentile(sorted(speaking_ms), 99)
    completed = percentile(sorted(t.client_ms["answer.completed"]), 99)
    print(
        f"   goal p99 ≤ {TURN_GOAL_MS:g} ms, send → avatar.speaking: "
        f"{_verdict(speaking is not None and speaking <= TURN_GOAL_MS)} "
        f"({fmt(speaking, '.1f')} ms)"
    )
    print(
        f"   (the same bound for send → answer.completed: "
        f"{_verdict(completed is not None and completed <= TURN_GOAL_MS)}, "
        f"{fmt(completed, '.1f')} ms)"
    )

    i = f.idle
    growth = None if i.rss_before is None or i.rss_idle is None else i.rss_idle - i.rss_before
    cpu = i.whole.server_pct[0]
    print()
    print(
        f"2. {i.sockets} idle authenticated sockets (opened in {i.open_seconds:.1f} s, "
        f"{OPEN_CONCURRENCY} at a time), idle for {i.whole.seconds:.0f} s"
    )
    print(
        f"   server RSS: {fmt(i.rss_before, '.1f')} MB before, {fmt(i.rss_open, '.1f')} MB "
        f"open, {fmt(i.rss_idle, '.1f')} MB after idling, {fmt(i.rss_closed, '.1f')} MB after "
        f"closing; growth {fmt(growth, '.1f')} MB = "
        f"{fmt(None if growth is None else 1024 * growth / max(1, i.sockets), '.0f')} KB per socket"
    )
    print(
        f"   server CPU while idle: {fmt(cpu, '.2f')}% over {i.whole.seconds:.0f} s "
        f"({fmt(i.first.server_pct[0], '.2f')}% in the first {i.first.seconds:.0f} s); "
        f"this client {i.whole.own_pct:.1f}%, others {fmt(i.whole.others_pct, '.0f')}%; "
        f"sockets closed by the server: {i.dropped}"
    )
    print(
        f"   goal memory growth < {IDLE_MEMORY_GOAL_MB:g} MB: "
        f"{_verdict(growth is not None and growth < IDLE_MEMORY_GOAL_MB)}"
    )
    cpu_met = cpu is not None and cpu < IDLE_CPU_GOAL_PCT
    print(f"   goal CPU < {IDLE_CPU_GOAL_PCT:g}%: {_verdict(cpu_met)}")

    print()
    print(
        f"3. ping/pong: {args.sockets} sockets, one ping in flight each, {args.seconds:g} s "
        f"after {args.warmup:g} s warm-up, best of {args.rounds}; client: one Python process"
    )
    header = (
        f"   {'server':<14}{'pongs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'srv CPU%':>10}"
        f"{'CPU us/ping':>13}{'client CPU%':>13}"
    )
    print(header)
    for r in (f.bare, f.avst):
        print(
            f"   {r.name:<14}{r.per_s:>9.0f}{fmt(r.p50_ms, '.2f'):>9}{fmt(r.p99_ms, '.2f'):>9}"
            f"{r.errors:>8}{fmt(r.server_pct, '.0f'):>10}{fmt(r.cpu_us_per_ping, '.0f'):>13}"
            f"{r.meter.own_pct:>13.0f}"
        )
    ratio = f.avst.per_s / f.bare.per_s if f.bare.per_s else 0.0
    cpu_ratio = (
        f.bare.cpu_us_per_ping / f.avst.cpu_us_per_ping
        if f.bare.cpu_us_per_ping and f.avst.cpu_us_per_ping
        else None
    )
    client_bound = f.bare.server_pct is not None and f.bare.server_pct < CLIENT_BOUND_PCT
    print(
        f"   avatarstack / bare: {ratio:.2f} of the pongs/s; CPU-per-ping ratio (bare / "
        f"avatarstack) {fmt(cpu_ratio, '.2f')}"
        + (" - the bare server was not saturated: the client was the limit" if client_bound else "")
    )
    clean = True
    if i.dropped:
        clean = False
        print(f"error: the server closed {i.dropped} idle sockets", file=sys.stderr)
    for r in (f.bare, f.avst):
        if r.errors:
            clean = False
            print(f"error: {r.errors} pings of {r.name} answered an error", file=sys.stderr)
    return clean


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Realtime socket: turn latency, idle sockets, ping/pong vs a bare aiohttp "
        "WebSocket server."
    )
    parser.add_argument("--turns", type=int, default=200, help="measured turns (200)")
    parser.add_argument("--warmup-turns", type=int, default=10, help="untimed turns first (10)")
    parser.add_argument(
        "--speech-time-scale",
        type=float,
        default=0.0,
        help="the text avatar's speech_time_scale (0: speaking takes no time; the app's is 1)",
    )
    parser.add_argument("--idle-sockets", type=int, default=1000, help="idle sockets (1000)")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=30.0,
        help="how long they idle (30: one token re-check, one or two heartbeats)",
    )
    parser.add_argument("--sockets", type=int, default=20, help="ping/pong sockets (20)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per ping/pong measurement (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="before each measurement (1)")
    parser.add_argument("--rounds", type=int, default=2, help="ping/pong rounds, best shown (2)")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=100_000.0,
        help="AVATARSTACK_REALTIME__MESSAGES_PER_SECOND of the server (100000)",
    )
    # internal: the bare server (the parent starts itself as that child)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (
        min(args.turns, args.idle_sockets, args.sockets, args.rounds) < 1
        or args.warmup_turns < 0
        or args.speech_time_scale < 0
        or args.idle_seconds <= 0
        or args.seconds <= 0
        or args.warmup < 0
        or args.rate_limit <= 0
    ):
        parser.error("counts and durations must be positive (--warmup-turns, --warmup ≥ 0)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_bare:
        serve_bare_ws(args.port)
        return 0
    limit = raise_fd_limit(args.idle_sockets + args.sockets + 256)
    if limit < args.idle_sockets + args.sockets + 64:
        print(
            f"error: the open-file limit is {limit}; {args.idle_sockets} sockets need more "
            "(ulimit -n)",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    email = f"ws-{secrets.token_hex(4)}@example.com"
    try:
        with running_servers(args, email) as (avst, bare):
            figures = asyncio.run(run_benchmark(avst, bare, email, args))
    except (BenchmarkError, subprocess.TimeoutExpired, TimeoutError) as exc:
        print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if not report(figures, args):
        print("error: something failed; the figures above are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
