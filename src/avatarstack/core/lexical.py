"""Tokens of the lexical (BM25) channel, the indexed text of a chunk, and score fusion.

**Tokens** (:func:`tokens`, versioned by :data:`TOKENIZER_VERSION`, recorded with each
generation's lexical index): NFKC, case-folded; possessive ``'s`` dropped (``X200's`` → ``x200``);
runs of letters and digits are tokens, and a decimal number keeps its point (``7.5``, ``7,5`` →
``7.5``). A token that mixes letters and digits is kept whole *and* split at each letter/digit
boundary (``t142`` → ``t142``, ``t``, ``142``; ``12v`` → ``12v``, ``12``, ``v``), so model numbers
match exactly and figures glued to units still match ``12 V``. Single letters and digits are
kept (``V``, ``W``, ``m`` are units). English stop words are dropped; alphabetic words are
stemmed with the Snowball English stemmer (``hours`` → ``hour``, ``charging`` → ``charg``).

**Indexed text** (:func:`indexed_text`): the document title and the chunk's section heading
above its text. Both channels index and embed it, so "the X200's warranty" finds the warranty
chunk of the X200 manual even when that chunk never names the product.

**Related terms** (:func:`related_terms`, :func:`expand`): a question and a manual often say the
same thing in different words ("how heavy" / "weight", "covered" / "warranty", "how long does it
last" / "runs for"). The lexical channel adds, to the query only, the everyday equivalents of its
words from :data:`RELATED_WORDS` (plus the operator's ``kb.related_terms``), each counted once.
The index is untouched, so the table can change without a rebuild. The BM25 ceiling is taken over
the question's own tokens, so an expansion can only raise a score, and a passage holding every
word of the question still scores 1.0.

**Fusion** (:func:`fuse`): each candidate's score is ``w · dense + (1 - w) · lexical`` with
``dense`` = cosine similarity clipped to 0..1 and ``lexical`` = BM25 ÷ the query's BM25 ceiling
(Σ idf of its tokens), also 0..1. The fused score is therefore 0..1 too: 1.0 means the chunk's
vector points the query's way and it holds every query token often enough to saturate BM25.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

import snowballstemmer

__all__ = [
    "RELATED_WORDS",
    "TOKENIZER_VERSION",
    "Candidate",
    "chunk_tokens",
    "expand",
    "fuse",
    "indexed_text",
    "query_tokens",
    "related_terms",
    "tokens",
]

TOKENIZER_VERSION = "1"
#: how many times an identifier (letters and digits: ``t142``) counts in a query
IDENTIFIER_WEIGHT = 3
STOP_WORDS = frozenset(
    """
    a about above after again all am an and any are as at be been before being below between
    both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_POSSESSIVE = re.compile(r"(?<=\w)['\u2019]s\b")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")
_TOKEN = re.compile(r"\d+(?:\.\d+)+|[^\W_]+")
_BOUNDARY = re.compile(r"\d+(?:\.\d+)*|[^\W\d_]+")
_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def tokens(text: str) -> list[str]:
    """The lexical tokens of ``text``, in order (see the module documentation)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _DECIMAL_COMMA.sub(".", _POSSESSIVE.sub("", text))
    out: list[str] = []
    for token in _TOKEN.findall(text):
        if token in STOP_WORDS:
            continue
        if token.isalpha():
            out.append(_stem(token))
            continue
        out.append(token)
        parts = _BOUNDARY.findall(token)
        if len(parts) > 1:
            out.extend(_stem(p) if p.isalpha() else p for p in parts)
    return out


def chunk_tokens(text: str) -> list[str]:
    """What the lexical index holds for a chunk: its distinct tokens, each counted once. A
    chunk that repeats the product name five times is not five times more about it, and every
    chunk carries the title anyway."""
    return list(dict.fromkeys(tokens(text)))


def query_tokens(text: str) -> list[str]:
    """The distinct tokens of a query, in order of first appearance; identifiers (tokens of
    letters *and* digits: model numbers such as ``t142``, ``r114``) are repeated
    :data:`IDENTIFIER_WEIGHT` times, so they count that many times in BM25 and in its ceiling: a
    passage about a sibling model that shares every other word must not outrank the right one."""
    out: list[str] = []
    for token in dict.fromkeys(tokens(text)):
        weight = IDENTIFIER_WEIGHT if _is_identifier(token) else 1
        out.extend([token] * weight)
    return out


#: everyday equivalents in questions and manuals: a question word also matches these words
RELATED_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "buy": "purchase bought",
        "bought": "purchase buy",
        "purchase": "buy bought",
        "covered": "warranty guarantee",
        "cover": "warranty guarantee",
        "guarantee": "warranty",
        "warranty": "guarantee",
        "heavy": "weight weigh kg",
        "weigh": "weight",
        "weight": "weigh heavy",
        "loud": "sound noise db",
        "noise": "sound loud",
        "noisy": "sound noise loud",
        "volts": "voltage v",
        "volt": "voltage v",
        "voltage": "volt v",
        "watts": "power w",
        "watt": "power w",
        "kilograms": "kg weight",
        "kilogram": "kg weight",
        "grams": "g weight",
        "decibels": "db noise",
        "decibel": "db noise",
        "metres": "m long",
        "meters": "m long",
        "centimetres": "cm",
        "centimeters": "cm",
        "litres": "l litre",
        "liters": "l litre",
        "minutes": "min",
        "time": "hours minutes",
        "degrees": "°c temperature",
        "last": "run runs runtime",
        "lasts": "run runs runtime",
        "lead": "cable cord",
        "cord": "cable",
        "cable": "cord",
        "bin": "container",
        "container": "bin",
        "rinse": "wash",
        "wash": "rinse clean",
        "recharge": "charge charging",
        "frequently": "every often",
        "often": "every",
        "length": "long",
        "warm": "temperature",
        "hot": "temperature",
        "cold": "temperature",
        "temperatures": "temperature",
        "price": "cost",
        "cost": "price",
    }
)


def related_terms(extra: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """:data:`RELATED_WORDS` merged with ``extra`` (a word → space-separated words; an entry of
    ``extra`` adds to the built-in one), in lexical tokens: token → the tokens it also matches."""
    table: dict[str, dict[str, None]] = {}
    for source in (RELATED_WORDS, extra or {}):
        for word, related in source.items():
            for key in tokens(word):
                slot = table.setdefault(key, {})
                for other in tokens(related):
                    if other != key:
                        slot[other] = None
    return {key: tuple(slot) for key, slot in table.items() if slot}


def expand(terms: Sequence[str], related: Mapping[str, Sequence[str]]) -> list[str]:
    """The tokens :func:`query_tokens` ``terms`` also match through ``related`` and do not hold
    already, each once, in order."""
    have = set(terms)
    out: dict[str, None] = {}
    for term in dict.fromkeys(terms):
        for other in related.get(term, ()):
            if other not in have:
                out[other] = None
    return list(out)


def _is_identifier(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def indexed_text(title: str | None, heading: str | None, text: str) -> str:
    """What both channels index for a chunk: title and section heading, then the text."""
    head = [part for part in (title, heading) if part and part.strip()]
    if heading and title and heading.strip().casefold() in title.casefold():
        head = [title]
    return "\n".join([*head, text]) if head else text


@dataclass
class Candidate:
    """One chunk found by either channel, with both channels' normalised scores (0..1)."""

    chunk_id: str
    dense: float = 0.0
    lexical: float = 0.0
    channels: set[str] = field(default_factory=set)
    score: float = 0.0


def fuse(candidates: Iterable[Candidate], dense_weight: float) -> list[Candidate]:
    """Score every candidate ``w · dense + (1 - w) · lexical``; best first, ties by chunk id."""
    ranked: list[Candidate] = []
    for candidate in candidates:
        candidate.score = dense_weight * candidate.dense + (1.0 - dense_weight) * candidate.lexical
        ranked.append(candidate)
    ranked.sort(key=lambda c: (-c.score, c.chunk_id))
    return ranked


def normalised_dense(cosine: float) -> float:
    return min(1.0, max(0.0, cosine))


def normalised_lexical(score: float, ceiling: float) -> float:
    return min(1.0, max(0.0, score / ceiling)) if ceiling > 0 else 0.0


def channel_names(channels: Sequence[str]) -> list[str]:
    """Channel names in their documented order (``lexical`` before ``dense``)."""
    return [name for name in ("lexical", "dense") if name in channels]
