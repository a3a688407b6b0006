"""``LexicalIndexer`` on `bm25s <https://github.com/xhluca/bm25s>`_: BM25 as a sparse matrix.

Why bm25s: it is maintained, depends only on numpy and scipy, builds 100k chunks in seconds and
answers a query with one sparse column sum (milliseconds), and its index is a handful of arrays
that serialise to bytes. Those bytes are stored with the index generation in the database, so
every instance of an installation (SQLite or PostgreSQL, embedded Chroma or a Chroma server)
loads the same index and ranks the same way. Full-text search in the databases themselves
(SQLite FTS5, PostgreSQL ``tsvector``) would rank differently on the two dialects.

Serialised form: a zip of the files ``BM25.save`` writes (the sparse score matrix, the vocabulary
and the parameters), read back with ``BM25.load`` from a temporary folder.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from avatarstack.ports.errors import InvalidInputError
from avatarstack.ports.lexical import K1, B

__all__ = ["Bm25sIndex", "Bm25sIndexer"]

NAME = "bm25s"
_METHOD = "lucene"  # the formula of avatarstack.ports.lexical

logging.getLogger("bm25s").setLevel(logging.WARNING)


class Bm25sIndex:
    def __init__(self, retriever: Any) -> None:
        self._retriever = retriever
        scores = retriever.scores
        self.size = int(scores["num_docs"])
        indptr = np.asarray(scores["indptr"])
        self._df = np.diff(indptr)
        self._vocab: dict[str, int] = retriever.vocab_dict
        self._last: tuple[tuple[str, ...], np.ndarray[Any, Any]] | None = None

    def _known(self, tokens: Sequence[str]) -> list[str]:
        return [t for t in tokens if t and t in self._vocab]

    def _all_scores(self, tokens: Sequence[str]) -> np.ndarray[Any, Any] | None:
        known = self._known(tokens)
        if not known or self.size == 0:
            return None
        key = tuple(known)
        last = self._last  # (tokens, scores) of the previous query: search, then scores
        if last is not None and last[0] == key:
            return last[1]
        scores = np.asarray(self._retriever.get_scores(known), dtype=np.float64)
        self._last = (key, scores)
        return scores

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        scores = self._all_scores(tokens)
        if scores is None or k < 1:
            return []
        positive = np.flatnonzero(scores > 0.0)
        if positive.size > k:
            # the k-th best score, then every document at least that good (ties by position)
            kth = np.partition(scores[positive], positive.size - k)[positive.size - k]
            positive = positive[scores[positive] >= kth]
        order = sorted(positive.tolist(), key=lambda i: (-scores[i], i))[:k]
        return [(i, float(scores[i])) for i in order]

    def scores(self, tokens: Sequence[str], positions: Sequence[int]) -> list[float]:
        scores = self._all_scores(tokens)
        if scores is None:
            return [0.0 for _ in positions]
        return [float(scores[p]) if 0 <= p < self.size else 0.0 for p in positions]

    def ceiling(self, tokens: Sequence[str]) -> float:
        total = 0.0
        for token in tokens:
            slot = self._vocab.get(token)
            df = int(self._df[slot]) if slot is not None and token else 0
            total += math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))
        return total


class Bm25sIndexer:
    name = NAME

    def build(self, documents: Sequence[Sequence[str]]) -> bytes:
        retriever = bm25s.BM25(k1=K1, b=B, method=_METHOD)
        corpus = [list(doc) for doc in documents]
        if corpus:
            retriever.index(corpus, show_progress=False)
        else:  # bm25s cannot index nothing: an empty index is an empty archive
            return _zip({})
        with tempfile.TemporaryDirectory(prefix="avs-bm25-") as folder:
            retriever.save(folder, show_progress=False)
            return _zip({p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()})

    def load(self, data: bytes) -> Bm25sIndex | _EmptyIndex:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
                if not names:
                    return _EmptyIndex()
                with tempfile.TemporaryDirectory(prefix="avs-bm25-") as folder:
                    for name in names:
                        if "/" in name or name.startswith("."):
                            raise InvalidInputError(f"unexpected file {name!r} in a BM25 index")
                        (Path(folder) / name).write_bytes(archive.read(name))
                    retriever = bm25s.BM25.load(folder, mmap=False, show_progress=False)
        except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"not a bm25s index: {exc}") from exc
        return Bm25sIndex(retriever)


class _EmptyIndex:
    size = 0

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        return []

    def scores(self, tokens: Sequence[str], positions: Sequence[int]) -> list[float]:
        return [0.0 for _ in positions]

    def ceiling(self, tokens: Sequence[str]) -> float:
        return sum(math.log(1.0 + 0.5 / 0.5) for _ in tokens)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, files[name], zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
