"""``LexicalIndexer`` in pure Python: the reference BM25 the contract suite compares bm25s with.

Postings (token → {position: tf}) and document lengths, serialised as JSON. Exact, simple and
slow on large corpora: meant for tests and small development setups.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence

from avatarstack.ports.errors import InvalidInputError
from avatarstack.ports.lexical import K1, B

NAME = "bm25-python"


class PythonBm25Index:
    def __init__(self, postings: dict[str, dict[int, int]], lengths: list[int]) -> None:
        self._postings = postings
        self._lengths = lengths
        self.size = len(lengths)
        self._avgdl = (sum(lengths) / len(lengths)) if lengths else 0.0

    def _idf(self, token: str) -> float:
        df = len(self._postings.get(token, ()))
        return math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))

    def _score_all(self, tokens: Sequence[str]) -> dict[int, float]:
        totals: dict[int, float] = {}
        for token in tokens:
            postings = self._postings.get(token)
            if not postings:
                continue
            idf = self._idf(token)
            for position, tf in postings.items():
                norm = K1 * (1 - B + B * self._lengths[position] / self._avgdl)
                totals[position] = totals.get(position, 0.0) + idf * tf / (tf + norm)
        return totals

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        totals = self._score_all(tokens)
        ranked = sorted(
            ((p, s) for p, s in totals.items() if s > 0.0), key=lambda item: (-item[1], item[0])
        )
        return ranked[: max(k, 0)]

    def scores(self, tokens: Sequence[str], positions: Sequence[int]) -> list[float]:
        totals = self._score_all(tokens)
        return [totals.get(p, 0.0) for p in positions]

    def ceiling(self, tokens: Sequence[str]) -> float:
        return sum(self._idf(token) for token in tokens)


class PythonBm25Indexer:
    name = NAME

    def build(self, documents: Sequence[Sequence[str]]) -> bytes:
        postings: dict[str, dict[int, int]] = {}
        lengths: list[int] = []
        for position, doc in enumerate(documents):
            lengths.append(len(doc))
            for token, tf in Counter(doc).items():
                postings.setdefault(token, {})[position] = tf
        body = {"lengths": lengths, "postings": postings}
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    def load(self, data: bytes) -> PythonBm25Index:
        try:
            body = json.loads(data)
            postings = {
                str(token): {int(p): int(tf) for p, tf in entries.items()}
                for token, entries in body["postings"].items()
            }
            lengths = [int(n) for n in body["lengths"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"not a {NAME} index: {exc}") from exc
        return PythonBm25Index(postings, lengths)
