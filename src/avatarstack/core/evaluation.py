"""Retrieval figures, one implementation for the golden-set evaluation, the ``if_better``
activation gate and ``benchmarks/retrieval.py``.

A result is *relevant* to a question when its text contains the expected phrase (compared
NFKC-normalised, case-folded, whitespace collapsed) and, when one is expected, it comes from the
expected document. Each question contributes the 1-based rank of its first relevant result within
the top ``k`` (None when there is none).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RankFigures", "first_relevant_rank", "phrase_key", "rank_figures"]


def phrase_key(text: str) -> str:
    """The form phrases and passages are compared in."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def first_relevant_rank(relevant: Sequence[bool], k: int) -> int | None:
    """The 1-based rank of the first True among the first ``k`` flags, None without one."""
    for rank, flag in enumerate(relevant[:k], start=1):
        if flag:
            return rank
    return None


@dataclass(frozen=True)
class RankFigures:
    questions: int
    hit_at_1: float
    hit_at_k: float
    mrr: float
    k: int


def rank_figures(ranks: Sequence[int | None], k: int) -> RankFigures:
    """hit@1, hit@k and mean reciprocal rank (0 for a miss) of first-relevant ranks."""
    count = len(ranks)
    if count == 0:
        return RankFigures(0, 0.0, 0.0, 0.0, k)
    found = [r for r in ranks if r is not None and r <= k]
    return RankFigures(
        questions=count,
        hit_at_1=sum(1 for r in found if r == 1) / count,
        hit_at_k=len(found) / count,
        mrr=sum(1.0 / r for r in found) / count,
        k=k,
    )
