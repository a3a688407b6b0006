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
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# This file is named ``http.py``: with its folder first on ``sys.path`` (``python
# benchmarks/http.py``) it would shadow the standard library's ``http`` package that aiohttp
# imports. ``_common`` drops the folder before importing aiohttp, so it must be imported before
# aiohttp (``from _common`` sorts before ``from aiohttp``).
from _common import (
    BenchmarkError,
    Result,
    Server,
    add_load_options,
    avatarstack_env,
    best_round,
    check_alive,
    clean_env,
    exit_on_sigterm,
    fmt,
    free_port,
    load_generator,
    masked_url,
    measure_python,
    measure_wrk,
    serve_avatarstack,
    serve_bare,
    spawn_server,
    stop_servers,
    temporary_workdir,
    wait_ready,
)
from aiohttp import ClientSession, ClientTimeout
from aiohttp import __version__ as aiohttp_version

SCRIPT = Path(__file__).resolve()
GOAL = 0.8
#: below this server CPU %, the bare app was not saturated: the load generator was the limit
CLIENT_BOUND_PCT = 85

ServerKind = Literal["bare", "avatarstack", "avatarstack+log"]


def start_server(kind: ServerKind, workdir: Path, database_url: str | None) -> Server:
    port = free_port()
    data_dir = workdir / kind.replace("+", "-")
    data_dir.mkdir()
    env = clean_env()
    if kind != "bare":
        env |= avatarstack_env(
            data_dir, port, database_url=database_url, access_log=kind == "avatarstack+log"
        )
    return spawn_server(
        kind,
        [sys.executable, str(SCRIPT), "--serve", kind, "--port", str(port)],
        port=port,
        env=env,
        cwd=data_dir,
        log_path=workdir / f"{kind.replace('+', '-')}.log",
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
    async with ClientSession(timeout=ClientTimeout(total=2)) as session:
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
            check_alive(server)
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
    return [best_round(rounds[t.name]) for t in TARGETS]


def report(results: list[Result], args: argparse.Namespace, client: str) -> None:
    print()
    print(
        f"client: {client}; concurrency {args.concurrency}; {args.seconds:g} s per measurement "
        f"after {args.warmup:g} s warm-up; {args.rounds} round(s) (best shown); "
        f"{os.cpu_count()} CPUs"
    )
    print(f"database: {masked_url(args.database_url) or 'SQLite in a temporary data dir'}")
    print(f"python {sys.version.split()[0]}, aiohttp {aiohttp_version}")
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
            f"{r.name:<28}{r.rps:>10.0f}{fmt(r.p50_ms, '.2f'):>9}{fmt(r.p99_ms, '.2f'):>9}"
            f"{r.errors:>8}{fmt(r.server_cpu_pct, '.0f'):>10}"
            f"{fmt(r.cpu_us_per_request, '.0f'):>12}{fmt(client_pct, '.0f'):>13}"
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
        print(f"  {r.name:<26}{ratio:>7.2f}{fmt(cpu_ratio, '.2f'):>14}")
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


@contextlib.contextmanager
def running_servers(
    kinds: Sequence[ServerKind], database_url: str | None
) -> Iterator[dict[ServerKind, Server]]:
    with temporary_workdir() as tmp:
        servers: dict[ServerKind, Server] = {}
        try:
            for kind in kinds:
                servers[kind] = start_server(kind, Path(tmp), database_url)
            yield servers
        finally:
            stop_servers(servers.values())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="req/s of avatarstack's /healthz and /api/v1/info vs a bare aiohttp app."
    )
    add_load_options(parser, what="measurement")
    # internal: run one server (the parent starts itself as the child)
    parser.add_argument(
        "--serve", choices=("bare", "avatarstack", "avatarstack+log"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--seconds, --concurrency and --rounds must be positive, --warmup ≥ 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "bare":
        serve_bare(args.port)
        return 0
    if args.serve:
        serve_avatarstack()
        return 0

    generator = load_generator(args.client)
    if generator is None:
        return 2
    wrk, client = generator
    print(f"load generator: {client}", file=sys.stderr)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers (and wrk)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
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
