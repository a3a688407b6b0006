"""Ingestion throughput of avatarstack (upload → parse → normalise → chunk → embed) against raw
PDF text extraction of the same files, measured in the same run.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/ingest.py [--files 40] [--pages 20] [--pipelines pypdf,pdfium]

What runs, in order:

1. **Corpus.** ``--files`` multi-page PDFs generated into a temporary folder (reproducible with
   ``--seed``, different per file): a running header, numbered headings, paragraphs of varied
   text wrapped into lines (some hyphenated at the line end), bullet lists, a running footer and
   a page number in one of several styles, compressed content streams, WinAnsi text (curly
   quotes, dashes, degree signs). Both pypdf and PDFium extract the text; the script checks it.
2. **Baselines** in this process, ``--rounds`` times (best shown): (A) raw pypdf extraction
   (``PdfReader`` + ``extract_text`` per page), one file after the other on one core; (B) the
   same in a ``multiprocessing`` pool of 2 processes (forked and warmed before timing); and
   raw PDFium extraction (``pypdfium2``), one file after the other.
3. **Pipelines.** For each of ``--pipelines`` a fresh server in its own subprocess, started the
   way operators start it (``.venv/bin/avatarstack serve``, the console script; ``pypdf-m``
   starts ``python -m avatarstack serve`` instead), with SQLite in a temporary data dir, the
   default ``HashingEmbedder``, the in-process worker (``kb.worker_concurrency`` 2 unless
   ``--worker-concurrency``), the access log off and log level ``warning``. An editor created
   with ``avatarstack users create`` logs in, opens the realtime socket (``job.progress`` events
   tell when each job passes a stage and ends), uploads every file at once over HTTP
   (``POST /api/v1/kb/documents``) and waits until every job succeeded. ``pdfium`` runs the
   same with ``AVATARSTACK_KB__PARSERS='["pdfium"]'``.
4. **Where the time goes.** Per job, from the ``job.progress`` events: queued, parse (in the
   child process) + normalise + chunk, embed + store. The CPU cost per page of each stage
   measured in this process (the parsers' own ``parse``, ``normalise_pages``,
   ``chunk_document``, ``content_hash``, ``HashingEmbedder.embed_sync``), and the cost of one
   parsing child (a one-page PDF through ``parse_isolated``) when the main module is a plain
   script and when it is the ``avatarstack`` console script, which every child that
   ``multiprocessing`` starts imports again.

Goal from the issue: the whole pipeline (default embedder, both cores) at ≥ 0.8 of raw
extraction. The ratio the goal uses is pipeline pages/s ÷ baseline A (raw pypdf extraction on
one core); the ratio to baseline B (raw extraction on both cores) is printed next to it. The exit
status is 0 whether or not the goal is met (this is a measurement) and non-zero only when
something failed: a server did not start, an upload was refused or a job failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import random
import secrets
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ``_common`` must be imported before aiohttp: it takes this folder off ``sys.path`` first, where
# ``http.py`` would shadow the standard library's ``http`` package (``from _common`` sorts first).
from _common import (
    CLI_TIMEOUT,
    REQUEST_TIMEOUT,
    BenchmarkError,
    Server,
    avatarstack_env,
    check_alive,
    clean_env,
    create_user,
    exit_on_sigterm,
    fmt,
    free_port,
    load_average,
    log_in,
    machine_busy,
    spawn_server,
    stop_servers,
    temporary_workdir,
    tree_cpu,
    wait_ready,
)
from aiohttp import ClientSession, ClientTimeout, FormData, TCPConnector, WSMsgType

API = "/api/v1"
GOAL = 0.8  # pipeline pages/s ÷ raw pypdf extraction on one core (baseline A)
#: machine CPU % (100 = one core) used by other processes above which the report warns
BACKGROUND_WARN_PCT = 15
#: without a job.progress frame for this long, the pending jobs are polled over HTTP
POLL_AFTER_SILENCE = 5.0
PIPELINES = ("pypdf", "pdfium", "pypdf-m")

# --------------------------------------------------------------------------- the corpus

COMMON = """the of and to in a is that for it with as on be by this are or from at an which can
    when if not you your should must will each all any only before after during into""".split()  # noqa: SIM905
DOMAINS: dict[str, str] = {
    "espresso machine": """water pressure boiler pump valve grinder filter basket portafilter
        shot brew temperature steam wand milk froth descaling cleaning cycle cartridge reservoir
        tank drip tray gasket seal thermostat heating element dose tamp extraction crema roast
        bean preinfusion flow rate manometer solenoid backflush detergent limescale""",
    "network router": """interface port address subnet gateway firmware wireless channel band
        antenna throughput latency packet firewall rule forwarding bridge vlan tunnel dhcp
        lease dns resolver certificate administrator password login session console uplink
        bandwidth congestion queue priority mesh node repeater""",
    "dishwasher": """rack basket spray arm nozzle detergent dispenser rinse aid salt softener
        programme cycle drying condensation filter drain hose inlet valve heater sensor door
        hinge seal cutlery glassware load temperature eco intensive delay start residue odour
        pump impeller""",
    "electric bicycle": """battery charger motor torque sensor cadence assist level display
        controller brake lever disc rotor pad chain cassette derailleur gear tyre pressure
        valve frame fork suspension saddle handlebar stem range charging cycle cell connector
        firmware diagnostics""",
    "heat pump": """compressor refrigerant evaporator condenser expansion valve defrost
        cycle outdoor unit indoor unit thermostat setpoint flow temperature return radiator
        underfloor buffer tank circulation pump pressure sensor efficiency coefficient
        seasonal performance noise vibration mounting bracket condensate drain""",
}
GENERIC = """installation maintenance schedule warranty service technician operator user safety
    warning caution power cord outlet voltage frequency ventilation clearance calibration
    setting display button indicator light program memory profile interval month week daily
    procedure step instruction manual chapter section figure table appendix reference
    accessory spare part replacement order number model serial update connection remote
    monitor alert error code fault diagnosis troubleshooting reset restart shutdown standby
    energy saving mode timer automatic override lock protection surface damage liability
    customer support registration""".split()  # noqa: SIM905
PAGE_NUMBER_STYLES = ("{n}", "Page {n} of {total}", "\u2013 {n} \u2013", "{n} / {total}")
UNITS = ("bar", "°C", "mm", "kg", "W", "V", "min", "%")


@dataclass(frozen=True)
class CorpusFile:
    name: str
    data: bytes
    pages: int
    words: int  # words written into the page bodies, headers and footers


def _made_up_name(rng: random.Random) -> str:
    syllables = [rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)]
    return "".join(syllables).capitalize()


class _Writer:
    """One file's text: a domain vocabulary, product names, and sentences of varied length."""

    def __init__(self, rng: random.Random, domain: str, product: str) -> None:
        self.rng = rng
        self.domain_words = DOMAINS[domain].split()
        self.names = [product, *(_made_up_name(rng) for _ in range(4))]

    def word(self) -> str:
        r = self.rng.random()
        if r < 0.34:
            return self.rng.choice(COMMON)
        if r < 0.40:
            return self.rng.choice(self.names)
        if r < 0.43:
            return f"{self.rng.randint(2, 250)} {self.rng.choice(UNITS)}"
        if r < 0.75:
            return self.rng.choice(self.domain_words)
        return self.rng.choice(GENERIC)

    def sentence(self) -> str:
        words = [self.word() for _ in range(self.rng.randint(6, 24))]
        if self.rng.random() < 0.15:
            words.insert(self.rng.randint(1, len(words) - 1), "\u2018" + self.word() + "\u2019")
        text = " ".join(words)
        if self.rng.random() < 0.2:
            cut = self.rng.randint(1, len(words) - 1)
            text = " ".join(words[:cut]) + ", " + " ".join(words[cut:])
        return text[0].upper() + text[1:] + self.rng.choice("....!?")

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 6)))

    def heading(self, chapter: int, section: int) -> str:
        words = " ".join(self.rng.choice(self.domain_words + GENERIC) for _ in range(2))
        return f"{chapter}.{section} {words[0].upper()}{words[1:]}"


def _wrap(rng: random.Random, text: str, width: int) -> list[str]:
    """Lines of at most ``width`` characters; some long words are hyphenated across lines."""
    lines = textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)
    for i in range(len(lines) - 1):
        head, _, tail = lines[i + 1].partition(" ")
        if len(head) >= 7 and head.isalpha() and rng.random() < 0.2:
            split = rng.randint(3, len(head) - 3)
            lines[i] += " " + head[:split] + "-"
            lines[i + 1] = head[split:] + (" " + tail if tail else "")
    return [line for line in lines if line]


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252")  # WinAnsiEncoding, as the fonts declare
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _page_content(
    writer: _Writer, header: str, footer: str, number_line: str, chapter: int
) -> tuple[bytes, int]:
    rng = writer.rng
    ops: list[bytes] = []
    words = 0

    def show(font: bytes, size: int, x: int, y: int, text: str) -> None:
        nonlocal words
        words += len(text.split())
        ops.append(b"BT /%s %d Tf %d %d Td %s Tj ET" % (font, size, x, y, _pdf_string(text)))

    show(b"F1", 9, 72, 760, header)
    y = 728
    section = 0
    while y > 120:
        if section == 0 or rng.random() < 0.3:
            section += 1
            show(b"F2", 12, 72, y, writer.heading(chapter, section))
            y -= 20
        if rng.random() < 0.15:
            for _ in range(rng.randint(2, 4)):
                if y < 90:
                    break
                show(b"F1", 10, 84, y, "• " + writer.sentence())
                y -= 13
        else:
            for line in _wrap(rng, writer.paragraph(), rng.randint(88, 100)):
                if y < 90:
                    break
                show(b"F1", 10, 72, y, line)
                y -= 13
        y -= 9
    show(b"F1", 8, 72, 50, footer)
    show(b"F1", 9, 290, 34, number_line)
    return b"\n".join(ops), words


def make_pdf(index: int, pages: int, seed: int) -> CorpusFile:
    """A ``pages``-page manual; the same ``index`` and ``seed`` always give the same bytes."""
    rng = random.Random(seed * 1_000_003 + index)
    domain = rng.choice(sorted(DOMAINS))
    product = _made_up_name(rng)
    writer = _Writer(rng, domain, product)
    revision = f"{rng.randint(1, 9)}.{rng.randint(0, 20)}"
    header = f"{product} {domain} \u2013 user manual, revision {revision}"
    footer = f"© {rng.randint(2015, 2025)} {product} {rng.choice(['GmbH', 'Ltd.', 'Inc.', 'S.A.'])}"
    style = rng.choice(PAGE_NUMBER_STYLES)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the pages are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    kids: list[bytes] = []
    words = 0
    chapter = 1
    for number in range(1, pages + 1):
        if number > 1 and rng.random() < 0.25:
            chapter += 1
        content, page_words = _page_content(
            writer, header, footer, style.format(n=number, total=pages), chapter
        )
        words += page_words
        compressed = zlib.compress(content)
        page_object = len(objects) + 1
        kids.append(b"%d 0 R" % page_object)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
            % (page_object + 1)
        )
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(compressed)
            + compressed
            + b"\nendstream"
        )
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    objects.append(
        b"<< /Title %s /Producer (avatarstack benchmarks/ingest.py) >>"
        % _pdf_string(f"{product} {domain} manual")
    )
    name = f"{index:03d}-{product.lower()}-{domain.replace(' ', '-')}.pdf"
    from avatarstack.testkit.pdf import build_pdf

    return CorpusFile(name, build_pdf(objects, info=len(objects)), pages, words)


def make_corpus(files: int, pages: int, seed: int, folder: Path) -> list[CorpusFile]:
    corpus = [make_pdf(i, pages, seed) for i in range(files)]
    for item in corpus:
        (folder / item.name).write_bytes(item.data)
    return corpus


# --------------------------------------------------------------------------- raw extraction


def pypdf_texts(data: bytes) -> list[str]:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    return [page.extract_text() or "" for page in reader.pages]


def pdfium_texts(data: bytes) -> list[str]:
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        texts = []
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_bounded())
            textpage.close()
            page.close()
        return texts
    finally:
        document.close()


def _pypdf_pages(data: bytes) -> int:
    """Pool worker (baseline B): extract every page, return how many there were."""
    return len(pypdf_texts(data))


def _warm(_: int) -> int:
    import pypdf  # noqa: F401 - the import is the point

    return os.getpid()


@dataclass
class Extraction:
    name: str
    pages: int
    seconds: float  # best round
    per_file: list[float] = field(default_factory=list)  # seconds per file, best round (A only)

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def time_sequential(
    name: str, extract: Callable[[bytes], list[str]], corpus: Sequence[CorpusFile], rounds: int
) -> Extraction:
    extract(corpus[0].data)  # imports, first-call caches
    best: Extraction | None = None
    for _ in range(rounds):
        per_file = []
        pages = 0
        started = time.perf_counter()
        for item in corpus:
            begin = time.perf_counter()
            pages += len(extract(item.data))
            per_file.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
        if best is None or elapsed < best.seconds:
            best = Extraction(name, pages, elapsed, per_file)
    assert best is not None
    return best


def time_pool(corpus: Sequence[CorpusFile], processes: int, rounds: int) -> Extraction:
    """Baseline B: forked workers (this process has no threads yet), warmed before timing."""
    ctx = multiprocessing.get_context("fork")
    best: Extraction | None = None
    with ctx.Pool(processes) as pool:
        pool.map(_warm, range(processes * 4), chunksize=1)
        pool.map(_pypdf_pages, [corpus[0].data] * processes, chunksize=1)
        for _ in range(rounds):
            started = time.perf_counter()
            pages = sum(pool.map(_pypdf_pages, [c.data for c in corpus], chunksize=1))
            elapsed = time.perf_counter() - started
            if best is None or elapsed < best.seconds:
                best = Extraction(f"raw pypdf, {processes} processes", pages, elapsed)
    assert best is not None
    return best


def check_text(corpus: Sequence[CorpusFile]) -> list[str]:
    """Warnings when either library misses much of the text written into a file."""
    problems = []
    for item in corpus[:5]:
        for name, extract in (("pypdf", pypdf_texts), ("pdfium", pdfium_texts)):
            words = sum(len(t.split()) for t in extract(item.data))
            if words < 0.95 * item.words:
                problems.append(f"{name} extracts {words} of {item.words} words from {item.name}")
    return problems


# --------------------------------------------------------------------------- stage profile


@dataclass
class StageProfile:
    pages: int
    chunks: int
    ms: dict[str, float]  # stage -> total milliseconds over the corpus
    cprofile: str | None = None

    def per_page(self, stage: str) -> float:
        return self.ms[stage] / self.pages if self.pages else 0.0


def profile_stages(corpus: Sequence[CorpusFile], with_cprofile: bool) -> StageProfile:
    """Each stage's CPU time in this process, one file after the other (no child process):
    what the server process itself does per page, next to what a parsing child does. With
    ``with_cprofile``, a second pass over the server-side stages runs under cProfile."""
    from avatarstack.adapters.embedders.hashing import HashingEmbedder
    from avatarstack.adapters.parsers import PdfiumParser, PypdfParser
    from avatarstack.bootstrap.settings import KbSettings, Settings
    from avatarstack.bootstrap.wiring.knowledge import make_knowledge_config
    from avatarstack.core.text import chunk_document, content_hash, normalise_pages

    pypdf_parser, pdfium_parser = PypdfParser(), PdfiumParser()
    # what the server's kb defaults configure (the caller's AVATARSTACK_* variables ignored)
    chunker = make_knowledge_config(Settings.model_construct(kb=KbSettings())).chunker
    embedder = HashingEmbedder()  # one instance for the whole corpus, like the server's
    ms = dict.fromkeys(("pdfium parse", "pypdf parse", "normalise", "chunk", "hash", "embed"), 0.0)
    pages = chunks = 0
    parsed_files = []
    pdfium_parser.parse(corpus[0].data, corpus[0].name)
    for item in corpus:
        begin = time.perf_counter()
        pdfium_parser.parse(item.data, item.name)
        ms["pdfium parse"] += 1000 * (time.perf_counter() - begin)
        begin = time.perf_counter()
        parsed = pypdf_parser.parse(item.data, item.name)
        ms["pypdf parse"] += 1000 * (time.perf_counter() - begin)
        parsed_files.append(parsed)

    def server_side(parsed: Any) -> int:
        begin = time.perf_counter()
        normalised = normalise_pages(parsed.pages)
        mid = time.perf_counter()
        cut = chunk_document(normalised, chunker)
        end = time.perf_counter()
        content_hash(normalised, parsed.parser, chunker)
        hashed = time.perf_counter()
        embedder.embed_sync([c.text for c in cut])
        ms["normalise"] += 1000 * (mid - begin)
        ms["chunk"] += 1000 * (end - mid)
        ms["hash"] += 1000 * (hashed - end)
        ms["embed"] += 1000 * (time.perf_counter() - hashed)
        return len(cut)

    for parsed in parsed_files:
        chunks += server_side(parsed)
        pages += len(parsed.pages)
    text = None
    if with_cprofile:
        timed = dict(ms)
        profiler = cProfile.Profile()
        profiler.enable()
        for parsed in parsed_files:
            server_side(parsed)
        profiler.disable()
        ms = timed
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
        text = out.getvalue()
    return StageProfile(pages, chunks, ms, text)


#: the main module of a child Python that times ``parse_isolated``. Every child that
#: ``multiprocessing`` starts (``spawn``, or a ``forkserver``'s fork) runs the parent's main module
#: again unless it is a package's ``__main__``: the ``avatarstack`` console script's first line
#: imports the whole CLI, ``python -m avatarstack`` is skipped
CHILD_PROBE = """
{preamble}
import asyncio, json, multiprocessing, statistics, sys, time


def noop():
    pass


async def main(samples):
    from avatarstack.adapters.parsers import PypdfParser, parse_isolated
    from avatarstack.testkit.pdf import text_pdf

    data, parser = text_pdf("one line of text"), PypdfParser()
    begin = time.perf_counter()
    await parse_isolated(parser, data, "probe.pdf")
    first = time.perf_counter() - begin
    parse, bare = [], []
    for _ in range(samples):
        begin = time.perf_counter()
        await parse_isolated(parser, data, "probe.pdf")
        parse.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=noop)
        child.start()
        child.join()
        bare.append(time.perf_counter() - begin)
    print(json.dumps({{"first_ms": 1000 * first,
                      "parse_ms": 1000 * statistics.median(parse),
                      "spawn_ms": 1000 * statistics.median(bare)}}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
"""


@dataclass
class ChildCost:
    label: str
    first_ms: float  # the first parse_isolated call (starts whatever helper it uses)
    parse_ms: float  # median of the later calls: a one-page PDF, start to answer
    spawn_ms: float  # a ``spawn`` child that does nothing: a fresh interpreter per file


def measure_children(workdir: Path, samples: int) -> list[ChildCost]:
    variants = (
        ("a plain script (like python -m avatarstack)", "# nothing imported first"),
        (
            "the avatarstack console script",
            "from avatarstack.bootstrap.cli import main  # the console script's first line",
        ),
    )
    costs = []
    for number, (label, preamble) in enumerate(variants):
        script = workdir / f"child_probe_{number}.py"
        script.write_text(CHILD_PROBE.format(preamble=preamble))
        done = subprocess.run(
            [sys.executable, str(script), str(samples)],
            cwd=workdir,
            env=clean_env(),
            capture_output=True,
            timeout=CLI_TIMEOUT + 30 * samples,
            check=False,
        )
        if done.returncode != 0:
            raise BenchmarkError(
                f"the parsing-child probe failed ({done.returncode}):\n"
                + done.stderr.decode(errors="replace")[-2000:]
            )
        figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
        costs.append(
            ChildCost(label, figures["first_ms"], figures["parse_ms"], figures["spawn_ms"])
        )
    return costs


# --------------------------------------------------------------------------- CPU accounting


@dataclass
class CpuWindow:
    """CPU used from creation to ``stop``: by a server with its descendants (and by its own
    process alone), by this process, and by everything else on the machine."""

    server: Server | None = None
    seconds: float = 0.0
    server_cpu: float | None = None  # the server process and its descendants
    server_main_cpu: float | None = None  # the server process alone (its event loop, threads)
    own_cpu: float = 0.0
    others_cpu: float | None = None
    _begin: float = field(default_factory=time.perf_counter)
    _machine: float | None = field(default_factory=machine_busy)
    _own: float = field(default_factory=time.process_time)
    _server: float | None = None
    _server_main: float | None = None

    def __post_init__(self) -> None:
        if self.server is not None:
            self._server = tree_cpu(self.server.proc.pid)
            self._server_main = self.server.cpu_seconds()

    def stop(self) -> CpuWindow:
        self.seconds = time.perf_counter() - self._begin
        self.own_cpu = time.process_time() - self._own
        if self.server is not None and self._server is not None:
            after = tree_cpu(self.server.proc.pid)
            self.server_cpu = None if after is None else after - self._server
            main = self.server.cpu_seconds()
            if main is not None and self._server_main is not None:
                self.server_main_cpu = main - self._server_main
        machine = machine_busy()
        if machine is not None and self._machine is not None:
            self.others_cpu = max(
                0.0, machine - self._machine - self.own_cpu - (self.server_cpu or 0.0)
            )
        return self

    def pct(self, cpu: float | None) -> float | None:
        return None if cpu is None or not self.seconds else 100 * cpu / self.seconds


# --------------------------------------------------------------------------- the pipeline


@dataclass
class JobTrace:
    """When this client saw each ``job.progress`` of one job (perf_counter seconds)."""

    events: list[tuple[float, str, float]] = field(default_factory=list)
    uploaded_at: float | None = None
    ended_at: float | None = None
    status: str | None = None

    def first_at(self, progress: float) -> float | None:
        return next((t for t, _, p in self.events if p >= progress - 1e-9), None)


@dataclass
class Pipeline:
    label: str
    command: str
    parsers: str
    pages: int
    files: int
    seconds: float
    cpu: CpuWindow
    traces: dict[str, JobTrace]
    chunks: int
    polled: int  # jobs whose end was found by polling, not by a job.progress frame

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    def stages(self) -> dict[str, list[float]]:
        """Seconds per job in each stage, from when this client saw the job.progress frames.

        The server publishes a frame when the event loop is next free, and normalising and
        chunking run on the loop without yielding: the "chunking" frame (0.5) only goes out once
        they are done. So the parse stage here runs from "parsing" (0.05) to "embedding" (0.6)
        and includes normalise + chunk; the CPU profile splits them."""
        out: dict[str, list[float]] = {"queued": [], "parse+chunk": [], "embed+store": []}
        for trace in self.traces.values():
            marks = [trace.uploaded_at, trace.first_at(0.05), trace.first_at(0.6), trace.ended_at]
            times = [m for m in marks if m is not None]
            if len(times) < len(marks):
                continue
            uploaded, parsing, embedding, ended = times
            out["queued"].append(max(0.0, parsing - uploaded))
            out["parse+chunk"].append(embedding - parsing)
            out["embed+store"].append(ended - embedding)
        return out


def cli_command(launch: str) -> list[str]:
    """How the server is started: the console script (what operators run) or ``-m``."""
    script = Path(sys.executable).with_name("avatarstack")
    if launch == "script" and script.exists():
        return [str(script)]
    return [sys.executable, "-m", "avatarstack"]


def create_editor(email: str, env: dict[str, str], cwd: Path) -> None:
    create_user(email, "editor", env, cwd, cli_command("module"))


@contextlib.contextmanager
def pipeline_server(
    label: str, workdir: Path, args: argparse.Namespace, email: str
) -> Iterator[tuple[Server, str]]:
    port = free_port()
    data_dir = workdir / f"server-{label}"
    data_dir.mkdir()
    env = clean_env() | avatarstack_env(data_dir, port, database_url=None)
    env["AVATARSTACK_AUTH__RATE_LIMITS"] = "false"
    env["AVATARSTACK_LOAD_PLUGINS"] = ""  # built-ins only: no installed plugin changes the result
    if label == "pdfium":
        env["AVATARSTACK_KB__PARSERS"] = '["pdfium"]'
    if args.worker_concurrency:
        env["AVATARSTACK_KB__WORKER_CONCURRENCY"] = str(args.worker_concurrency)
    create_editor(email, env, data_dir)
    command = [*cli_command("module" if label == "pypdf-m" else "script"), "serve"]
    server = spawn_server(
        label,
        command,
        port=port,
        env=env,
        cwd=data_dir,
        log_path=workdir / f"server-{label}.log",
    )
    try:
        yield server, " ".join([Path(command[0]).name, *command[1:]])
    finally:
        stop_servers([server])


async def run_pipeline(
    label: str, corpus: Sequence[CorpusFile], workdir: Path, args: argparse.Namespace
) -> Pipeline:
    email = f"editor-{secrets.token_hex(4)}@example.com"
    with pipeline_server(label, workdir, args, email) as (server, command):
        timeout = ClientTimeout(total=REQUEST_TIMEOUT * 6)
        async with ClientSession(connector=TCPConnector(limit=0), timeout=timeout) as session:
            await wait_ready(session, server, "/healthz")
            token = await log_in(session, server, email)
            auth = {"Authorization": f"Bearer {token}"}
            ws = await session.ws_connect(server.url(f"{API}/ws"), heartbeat=None)
            await ws.send_json({"type": "auth", "data": {"token": token}})
            ready = await ws.receive_json(timeout=10)
            if ready.get("type") != "ready":
                raise BenchmarkError(f"the realtime socket answered {ready}")
            try:
                return await _ingest_all(label, command, corpus, server, session, ws, auth, args)
            finally:
                await ws.close()


async def _ingest_all(
    label: str,
    command: str,
    corpus: Sequence[CorpusFile],
    server: Server,
    session: ClientSession,
    ws: Any,
    auth: dict[str, str],
    args: argparse.Namespace,
) -> Pipeline:
    traces: dict[str, JobTrace] = {}
    job_of: dict[str, str] = {}  # file name -> job id
    last_frame = time.perf_counter()
    all_known = asyncio.Event()
    finished = asyncio.Event()

    def pending() -> list[str]:
        return [j for j in job_of.values() if traces.setdefault(j, JobTrace()).ended_at is None]

    def check_finished() -> None:
        if all_known.is_set() and not pending():
            finished.set()

    async def listen() -> None:
        nonlocal last_frame
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            now = time.perf_counter()
            last_frame = now
            frame = json.loads(message.data)
            if frame.get("type") != "job.progress":
                continue
            data = frame["data"]
            trace = traces.setdefault(data["job_id"], JobTrace())
            trace.events.append((now, data["status"], float(data["progress"])))
            if data["status"] in {"succeeded", "failed"}:
                trace.ended_at, trace.status = now, data["status"]
                check_finished()

    polled = 0

    async def poll_when_silent() -> None:
        """Lost job.progress frames must not hang the run: poll the pending jobs then."""
        nonlocal polled
        while True:
            await asyncio.sleep(1.0)
            if not all_known.is_set() or time.perf_counter() - last_frame < POLL_AFTER_SILENCE:
                continue
            for job_id in pending():
                job = await get_job(session, server, auth, job_id)
                if job["status"] in {"succeeded", "failed"}:
                    trace = traces[job_id]
                    trace.ended_at, trace.status = time.perf_counter(), job["status"]
                    polled += 1
            check_finished()

    semaphore = asyncio.Semaphore(args.upload_concurrency or len(corpus))

    async def upload(item: CorpusFile) -> None:
        form = FormData()
        form.add_field("file", item.data, filename=item.name, content_type="application/pdf")
        async with (
            semaphore,
            session.post(server.url(f"{API}/kb/documents"), data=form, headers=auth) as resp,
        ):
            body = await resp.text()
            if resp.status != 202:
                raise BenchmarkError(f"upload of {item.name} answered {resp.status}: {body}")
        job_id = json.loads(body)["job_id"]
        job_of[item.name] = job_id
        traces.setdefault(job_id, JobTrace()).uploaded_at = time.perf_counter()

    listener = asyncio.create_task(listen())
    poller = asyncio.create_task(poll_when_silent())
    cpu = CpuWindow(server)
    started = time.perf_counter()
    try:
        print(f"  pipeline {label}: uploading {len(corpus)} files ...", file=sys.stderr, flush=True)
        await asyncio.gather(*(upload(item) for item in corpus))
        all_known.set()
        check_finished()
        deadline = args.timeout
        while not finished.is_set():
            check_alive(server)
            if listener.done():
                listener.result()  # the socket ended: raise why
                raise BenchmarkError("the realtime socket closed during the run")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), timeout=1.0)
            if time.perf_counter() - started > deadline:
                raise BenchmarkError(
                    f"{len(pending())} of {len(corpus)} jobs not done after {deadline:g} s:\n"
                    + server.log_tail()
                )
        elapsed = max(t.ended_at or 0.0 for t in traces.values() if t.ended_at) - started
        cpu.stop()
    finally:
        poller.cancel()
        listener.cancel()
        for task in (poller, listener):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    chunks = 0
    pages = 0
    for name, job_id in job_of.items():
        job = await get_job(session, server, auth, job_id)
        result = job.get("result") or {}
        if job["status"] != "succeeded" or result.get("duplicate"):
            raise BenchmarkError(f"the job of {name} ended {job['status']}: {job.get('error')}")
        chunks += int(result.get("chunks", 0))
        pages += int(result.get("pages", 0))
    expected = sum(item.pages for item in corpus)
    if pages != expected:
        raise BenchmarkError(f"the jobs report {pages} pages, the corpus has {expected}")
    live = {job_of[name]: traces[job_of[name]] for name in job_of}
    parser = "pdfium" if label == "pdfium" else "pypdf"
    return Pipeline(
        label,
        command,
        parser,
        pages,
        len(corpus),
        elapsed,
        cpu,
        live,
        chunks,
        polled,
    )


async def get_job(
    session: ClientSession, server: Server, auth: dict[str, str], job_id: str
) -> dict[str, Any]:
    async with session.get(server.url(f"{API}/kb/jobs/{job_id}"), headers=auth) as resp:
        body = await resp.text()
        if resp.status != 200:
            raise BenchmarkError(f"GET /kb/jobs/{job_id} answered {resp.status}: {body}")
    job: dict[str, Any] = json.loads(body)
    return job


# --------------------------------------------------------------------------- reporting


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{1000 * statistics.median(values):.0f}"


@dataclass
class Figures:
    corpus: list[CorpusFile]
    background_pct: float | None
    loadavg: str
    base_a: Extraction
    base_b: Extraction
    pdfium: Extraction
    pipelines: list[Pipeline]
    profile: StageProfile
    children: list[ChildCost]
    text_warnings: list[str]


def report(f: Figures, args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    pages = sum(c.pages for c in f.corpus)
    size = sum(len(c.data) for c in f.corpus)
    print()
    print(
        f"corpus: {len(f.corpus)} PDFs x {args.pages} pages = {pages} pages, "
        f"{size / 1e6:.1f} MB, {sum(c.words for c in f.corpus) / pages:.0f} words/page "
        f"(seed {args.seed}); {cores} CPUs; python {sys.version.split()[0]}"
    )
    print(
        f"machine: load average {f.loadavg} at the start; other processes used "
        f"{fmt(f.background_pct, '.0f')}% of a core in the second before measuring"
        + (
            " - WARNING: every figure is lower than on a quiet machine"
            if f.background_pct is not None and f.background_pct >= BACKGROUND_WARN_PCT
            else ""
        )
    )
    for warning in f.text_warnings:
        print(f"warning: {warning}")

    a, b = f.base_a, f.base_b
    print()
    print(f"raw extraction in this benchmark's processes (best of {args.rounds}):")
    print(f"  {'':<40}{'pages/s':>9}{'ms/page':>9}{'seconds':>9}")
    for e, note in (
        (a, "baseline A (the goal's)"),
        (b, "baseline B"),
        (f.pdfium, ""),
    ):
        print(
            f"  {e.name:<40}{e.pages_per_s:>9.0f}{1000 * e.seconds / e.pages:>9.2f}"
            f"{e.seconds:>9.2f}  {note}"
        )
    print(
        f"  pdfium / pypdf: {f.pdfium.pages_per_s / a.pages_per_s:.2f}x the pages/s; "
        f"2 processes / 1: {b.pages_per_s / a.pages_per_s:.2f}x"
    )

    print()
    print("pipeline: upload over HTTP → job → parse in a child process → normalise, chunk → embed")
    header = (
        f"  {'parser':<9}{'server command':<28}{'pages/s':>9}{'seconds':>9}{'vs A':>7}{'vs B':>7}"
        f"{'server':>8}{'parsing':>9}{'others':>8}"
    )
    print(header)
    for p in f.pipelines:
        parsing = (
            None
            if p.cpu.server_cpu is None or p.cpu.server_main_cpu is None
            else p.cpu.server_cpu - p.cpu.server_main_cpu
        )
        print(
            f"  {p.parsers:<9}{p.command:<28}{p.pages_per_s:>9.1f}{p.seconds:>9.1f}"
            f"{p.pages_per_s / a.pages_per_s:>7.2f}{p.pages_per_s / b.pages_per_s:>7.2f}"
            f"{fmt(p.cpu.pct(p.cpu.server_main_cpu), '.0f'):>7}%"
            f"{fmt(p.cpu.pct(parsing), '.0f'):>8}%"
            f"{fmt(p.cpu.pct(p.cpu.others_cpu), '.0f'):>7}%"
        )
    print(
        "  (CPU, 100% = one core: server = the server process (event loop and its threads); "
        "parsing = its descendants (fork server, parsing children); others = the rest of the "
        "machine less this script)"
    )
    stored = sorted({p.chunks for p in f.pipelines})
    if stored:
        print(f"  chunks stored per run: {', '.join(map(str, stored))}")
    if any(p.polled for p in f.pipelines):
        print("  note: some job ends were found by polling (job.progress frames went missing)")
    runs = {p.label: p for p in f.pipelines}
    primary = runs.get("pypdf") or runs.get("pypdf-m")
    if primary is not None:
        ratio = primary.pages_per_s / a.pages_per_s
        print()
        print(
            f"goal pipeline ≥ {GOAL} of raw extraction (default embedder, both cores; "
            f"{primary.command}): "
            f"{_verdict(ratio >= GOAL)} ({primary.pages_per_s:.1f} pages/s = {ratio:.2f} of "
            f"baseline A, raw pypdf on one core; {primary.pages_per_s / b.pages_per_s:.2f} of "
            "baseline B, raw pypdf in 2 processes)"
        )
    pdfium_run = next((p for p in f.pipelines if p.label == "pdfium"), None)
    if pdfium_run is not None:
        print(
            f"  pdfium pipeline: {pdfium_run.pages_per_s / f.pdfium.pages_per_s:.2f} of raw pdfium "
            f"extraction on one core, {pdfium_run.pages_per_s / a.pages_per_s:.2f} of baseline A"
        )

    print()
    print("where the time goes")
    print(
        "  per job, from the job.progress frames (median ms / sum over the jobs in s; parse "
        "includes normalise + chunk):"
    )
    print(f"    {'run':<10}{'queued':>16}{'parse+chunk':>16}{'embed+store':>16}")
    for p in f.pipelines:
        stages = p.stages()
        cells = "".join(
            f"{_ms(stages[s]) + ' / ' + format(sum(stages[s]), '.1f'):>16}"
            for s in ("queued", "parse+chunk", "embed+store")
        )
        print(f"    {p.label:<10}{cells}")
    raw_file_ms = 1000 * statistics.median(a.per_file)
    print(
        f"    raw pypdf extraction of one {args.pages}-page file in this process: median "
        f"{raw_file_ms:.0f} ms"
    )
    pr = f.profile
    print(
        f"  CPU per page in this process, one file after the other ({pr.pages} pages, "
        f"{pr.chunks} chunks):"
    )
    server_side = sum(pr.per_page(s) for s in ("normalise", "chunk", "hash", "embed"))
    for stage in ("pypdf parse", "pdfium parse", "normalise", "chunk", "hash", "embed"):
        print(f"    {stage:<14}{pr.per_page(stage):>7.2f} ms")
    print(
        f"    the server process's own share (normalise + chunk + hash + embed, one Python "
        f"thread): {server_side:.2f} ms/page, a ceiling of {1000 / server_side:.0f} pages/s "
        f"however fast parsing gets"
    )
    print(
        "  one parsing child: a one-page PDF through parse_isolated (median; the first call, "
        "which starts any helper process; a no-op `spawn` child) when the main module is"
    )
    for cost in f.children:
        print(
            f"    {cost.label:<46}{cost.parse_ms:>7.0f} ms  (first {cost.first_ms:.0f} ms; "
            f"spawn {cost.spawn_ms:.0f} ms)"
        )
    if pr.cprofile:
        print()
        print("  cProfile of normalise + chunk + hash + embed (top functions by own time):")
        print(textwrap.indent(pr.cprofile.strip(), "    "))


# --------------------------------------------------------------------------- the run


async def run_pipelines(
    corpus: Sequence[CorpusFile], workdir: Path, args: argparse.Namespace
) -> list[Pipeline]:
    results = []
    for label in args.pipelines:
        results.append(await run_pipeline(label, corpus, workdir, args))
    return results


def background_load() -> float | None:
    before, own = machine_busy(), time.process_time()
    started = time.perf_counter()
    time.sleep(1.0)
    after = machine_busy()
    if before is None or after is None:
        return None
    busy = after - before - (time.process_time() - own)
    return max(0.0, 100 * busy / (time.perf_counter() - started))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ingestion pages/s of avatarstack (upload → parse → chunk → embed) vs raw "
        "pypdf and pdfium text extraction of the same generated PDFs."
    )
    parser.add_argument("--files", type=int, default=40, help="PDFs in the corpus (40)")
    parser.add_argument("--pages", type=int, default=20, help="pages per PDF (20)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (1)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of each raw extraction; best shown (2)"
    )
    parser.add_argument(
        "--pipelines",
        default=",".join(PIPELINES),
        help=f"servers to run, comma-separated, of {', '.join(PIPELINES)} (all); "
        "pypdf-m starts `python -m avatarstack serve` instead of the console script",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="AVATARSTACK_KB__WORKER_CONCURRENCY of the servers (default: the app's, 2)",
    )
    parser.add_argument(
        "--upload-concurrency", type=int, default=0, help="uploads at once (0: all files)"
    )
    parser.add_argument(
        "--child-samples", type=int, default=5, help="parsing children timed per variant (5)"
    )
    parser.add_argument("--cprofile", action="store_true", help="print a cProfile of the stages")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds one pipeline may take (900)"
    )
    args = parser.parse_args(argv)
    args.pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    unknown = sorted(set(args.pipelines) - set(PIPELINES))
    if unknown:
        parser.error(
            f"unknown pipeline(s) {', '.join(unknown)}; choose from {', '.join(PIPELINES)}"
        )
    if min(args.files, args.pages, args.rounds, args.child_samples) < 1 or args.timeout <= 0:
        parser.error("--files, --pages, --rounds, --child-samples and --timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        with temporary_workdir() as tmp:
            workdir = Path(tmp)
            corpus_dir = workdir / "corpus"
            corpus_dir.mkdir()
            print(f"  generating {args.files} PDFs ...", file=sys.stderr, flush=True)
            corpus = make_corpus(args.files, args.pages, args.seed, corpus_dir)
            loadavg = load_average()
            background = background_load()
            warnings = check_text(corpus)
            # the forked pool first: this process has no threads before asyncio runs
            print("  raw extraction: pypdf, 2 processes ...", file=sys.stderr, flush=True)
            base_b = time_pool(corpus, 2, args.rounds)
            print("  raw extraction: pypdf, pdfium ...", file=sys.stderr, flush=True)
            base_a = time_sequential("raw pypdf, 1 process", pypdf_texts, corpus, args.rounds)
            pdfium = time_sequential("raw pdfium, 1 process", pdfium_texts, corpus, args.rounds)
            print("  stage profile, parsing-child cost ...", file=sys.stderr, flush=True)
            profile = profile_stages(corpus, args.cprofile)
            children = measure_children(workdir, args.child_samples)
            pipelines = asyncio.run(run_pipelines(corpus, workdir, args))
    except (BenchmarkError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    report(
        Figures(
            corpus,
            background,
            loadavg,
            base_a,
            base_b,
            pdfium,
            pipelines,
            profile,
            children,
            warnings,
        ),
        args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
