"""End-to-end answer accuracy on the generated manuals corpus: each question goes over the
realtime socket, and the answer counts when ``answer.completed``'s text contains the question's
exact answer phrase. hit@1 and hit@5 of ``POST /api/v1/kb/search`` on the same server, for the
same questions, are printed next to it.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/answers.py                       # 24 manuals, 240 questions
    .venv/bin/python benchmarks/answers.py --products 8 --show-misses 10

The server is ``python -m avatarstack serve`` as a user runs the default installation: SQLite and
embedded Chroma in a temporary data dir, pypdf, the offline ``hashing`` embedder, the default
search and the default ``extractive`` answer engine, no avatar (answers do not need one); access
log off, log level ``warning``, built-in plugins only, the abuse limits off. An editor uploads the
version-1 PDFs of ``retrieval_corpus`` (the corpus ``retrieval.py`` uses), builds and activates a
generation, then asks every question in one conversation, one after the other. Then the
version-2 PDFs are uploaded as new versions (``PUT /kb/documents/{id}``), a generation is built
and activated, and the questions whose answer changed are asked again: the answer must contain
the new phrase and not the old one.

A phrase matches as ``avatarstack.core.evaluation.phrase_key`` compares them (NFKC,
case-folded, whitespace collapsed): the code the golden set and ``retrieval.py`` use. A search
result is relevant when it comes from the question's manual and contains the phrase.

Exit status: 0 when the measurement completed, whether or not the goal (accuracy >= 0.9) is met;
1 when the server, an upload, a job or a frame failed.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# these two first, while this folder is on ``sys.path``: ``ws`` imports ``_common``, which takes
# the folder off it (``benchmarks/http.py`` would shadow the standard library's ``http``)
from retrieval_corpus import Corpus, make_corpus
from ws import API, build_generation, connect, log_in, receive, send, until, wait_job

# isort: split
from _common import (
    BenchmarkError,
    Server,
    avatarstack_env,
    clean_env,
    create_user,
    exit_on_sigterm,
    free_port,
    spawn_server,
    stop_servers,
    wait_ready,
)
from aiohttp import ClientSession, ClientTimeout, FormData

from avatarstack.core.evaluation import phrase_key

ACCURACY_GOAL = 0.9


@dataclass
class Outcome:
    question: str
    phrase: str
    kind: str
    answer: str
    correct: bool
    search_rank: int | None  # 1-based rank of the first relevant search result in the top 5
    ms: float


@dataclass
class Figures:
    outcomes: list[Outcome] = field(default_factory=list)
    changed: list[tuple[str, bool, bool]] = field(default_factory=list)  # question, new, no old
    set_up_seconds: float = 0.0


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    return (
        clean_env()
        | avatarstack_env(data_dir, port, database_url=None)
        | {
            "AVATARSTACK_AUTH__RATE_LIMITS": "false",
            "AVATARSTACK_LOAD_PLUGINS": "",
            "AVATARSTACK_REALTIME__MESSAGES_PER_SECOND": "1000",
        }
    )


async def upload(
    session: ClientSession,
    server: Server,
    headers: dict[str, str],
    path: Path,
    document_id: str | None = None,
) -> dict[str, Any]:
    form = FormData()
    data = await asyncio.to_thread(path.read_bytes)
    form.add_field("file", data, filename=path.name, content_type="application/pdf")
    url = server.url(f"{API}/kb/documents" + (f"/{document_id}" if document_id else ""))
    method = session.put if document_id else session.post
    async with method(url, data=form, headers=headers) as resp:
        body: dict[str, Any] = await resp.json()
        if resp.status not in (200, 202):
            raise BenchmarkError(f"upload of {path.name} answered {resp.status}: {body}")
    return body


async def search_rank(
    session: ClientSession,
    server: Server,
    headers: dict[str, str],
    question: str,
    document_id: str,
    phrase: str,
) -> int | None:
    async with session.post(
        server.url(f"{API}/kb/search"), json={"query": question, "k": 5}, headers=headers
    ) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise BenchmarkError(f"kb/search answered {resp.status}: {body}")
    key = phrase_key(phrase)
    for rank, hit in enumerate(body["results"], start=1):
        if hit["document_id"] == document_id and key in phrase_key(hit["text"]):
            return rank
    return None


async def ask(ws: Any, text: str) -> str:
    client_id = f"q-{secrets.token_hex(6)}"
    await send(ws, "user.message", {"client_id": client_id, "text": text}, client_id)
    seq: int | None = None
    while True:
        frame = await receive(ws)
        if frame["type"] == "error":
            raise BenchmarkError(f"the server answered an error: {frame['data']}")
        if frame["type"] == "message.created" and frame["data"].get("client_id") == client_id:
            seq = frame["seq"]
        elif (
            frame["type"] == "answer.completed"
            and seq is not None
            and frame["data"].get("reply_to") == seq
        ):
            return str(frame["data"].get("text", ""))


async def run(server: Server, email: str, corpus: Corpus, folder: Path) -> Figures:
    figures = Figures()
    v1, v2 = corpus.write(folder)
    async with ClientSession(timeout=ClientTimeout(total=120)) as session:
        await wait_ready(session, server, "/readyz")
        token = await log_in(session, server, email)
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        documents: dict[str, str] = {}
        jobs = []
        for path in v1:
            body = await upload(session, server, headers, path)
            documents[path.stem] = body["document_id"]
            jobs.append(body["job_id"])
        for job in jobs:
            await wait_job(session, server, headers, job)
        await build_generation(session, server, headers)
        figures.set_up_seconds = time.perf_counter() - started
        print(f"  set-up {figures.set_up_seconds:.1f} s; asking ...", file=sys.stderr, flush=True)
        ws = await connect(session, server, token)
        try:
            await send(ws, "conversation.open", {}, "open")
            await until(ws, "conversation.opened")
            for q in corpus.questions:
                rank = await search_rank(
                    session, server, headers, q.question, documents[q.manual], q.phrase
                )
                t0 = time.perf_counter()
                answer = await ask(ws, q.question)
                ms = (time.perf_counter() - t0) * 1000
                correct = phrase_key(q.phrase) in phrase_key(answer)
                figures.outcomes.append(
                    Outcome(q.question, q.phrase, q.kind, answer, correct, rank, ms)
                )
            jobs = []
            for path in v2:
                body = await upload(session, server, headers, path, documents[path.stem])
                jobs.append(body["job_id"])
            for job in jobs:
                await wait_job(session, server, headers, job)
            await build_generation(session, server, headers)
            for change in corpus.changed:
                answer = phrase_key(await ask(ws, change.question.question))
                figures.changed.append(
                    (
                        change.question.question,
                        phrase_key(change.question.phrase) in answer,
                        phrase_key(change.old_phrase) not in answer,
                    )
                )
        finally:
            await ws.close()
    return figures


def report(f: Figures, args: argparse.Namespace) -> None:
    outcomes = f.outcomes
    total = len(outcomes)
    print(f"\nanswers: {total} questions over the WebSocket, extractive engine, default search")
    print("  kind         questions  answer accuracy  search hit@1  search hit@5")
    for kind in ("all", "direct", "paraphrase"):
        rows = [o for o in outcomes if kind == "all" or o.kind == kind]
        if not rows:
            continue
        n = len(rows)
        accuracy = sum(o.correct for o in rows) / n
        hit1 = sum(o.search_rank == 1 for o in rows) / n
        hit5 = sum(o.search_rank is not None for o in rows) / n
        print(f"  {kind:<12} {n:>9}  {accuracy:>15.3f}  {hit1:>12.3f}  {hit5:>12.3f}")
    found = [o for o in outcomes if o.search_rank is not None]
    if found:
        share = sum(o.correct for o in found) / len(found)
        print(f"  answered correctly when the passage was in the top 5: {share:.3f}")
    ms = sorted(o.ms for o in outcomes)
    if ms:
        print(f"  send → answer.completed p50 {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms")
    if f.changed:
        new = sum(c[1] for c in f.changed)
        gone = sum(c[2] for c in f.changed)
        print(
            f"  after new versions and a rebuild: new figure in the answer {new}/{len(f.changed)}, "
            f"old figure in none {gone}/{len(f.changed)}"
        )
    accuracy = sum(o.correct for o in outcomes) / total if total else 0.0
    verdict = "MET" if accuracy >= ACCURACY_GOAL else "NOT MET"
    print(f"  goal answer accuracy >= {ACCURACY_GOAL}: {verdict} ({accuracy:.3f})")
    misses = [o for o in outcomes if not o.correct][: args.show_misses]
    for o in misses:
        where = f"search rank {o.search_rank}" if o.search_rank else "not in the top 5"
        print(f"  miss ({o.kind}, {where}): {o.question}")
        print(f"    want {o.phrase!r}\n    got  {o.answer!r}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="End-to-end answer accuracy over the WebSocket.")
    parser.add_argument(
        "--unseen",
        action="store_true",
        help="ask the paraphrased half in a wording nothing was tuned against",
    )
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (7, as retrieval.py)")
    parser.add_argument("--products", type=int, default=24, help="manuals (24)")
    parser.add_argument("--show-misses", type=int, default=0, help="print N wrong answers")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    corpus = make_corpus(seed=args.seed, products=args.products, unseen=args.unseen)
    email = f"answers-{secrets.token_hex(4)}@example.com"
    with tempfile.TemporaryDirectory(prefix="avs-answers-") as tmp:
        work = Path(tmp)
        data_dir = work / "avatarstack"
        data_dir.mkdir()
        port = free_port()
        env = server_env(data_dir, port)
        servers: list[Server] = []
        try:
            print("  creating the editor ...", file=sys.stderr, flush=True)
            create_user(email, "editor", env, data_dir)
            servers.append(
                spawn_server(
                    "avatarstack",
                    [sys.executable, "-m", "avatarstack", "serve"],
                    port=port,
                    env=env,
                    cwd=data_dir,
                    log_path=work / "avatarstack.log",
                )
            )
            figures = asyncio.run(run(servers[0], email, corpus, work / "corpus"))
        except (BenchmarkError, subprocess.TimeoutExpired, TimeoutError) as exc:
            print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            stop_servers(servers)
    report(figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
