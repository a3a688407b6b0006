"""The offline answer engine: the passages' best-supported sentences, quoted verbatim.

Pure Python and deterministic (the same request always gives the same answer); a request of five
1,000-character passages takes well under two milliseconds. How a sentence is chosen:

1. **Sentences.** Each passage is cut into lines (a line that is the wrapped continuation of the
   previous one is joined back) and each line into sentences at ``.``, ``!``, ``?``, ``…``
   followed by a space and a word that does not start with a lowercase letter, or at a CJK full
   stop, exclamation or question mark. A full stop after a known abbreviation (``Dr.``, ``e.g.``,
   ``approx.``…), an initial (``J.``, but not a unit after a figure: ``21.6 V.``) or a dotted
   abbreviation (``U.S.``) is not an end, and
   decimals (``3.5``) never are. The first sentence of a passage is skipped when it starts with a
   lowercase letter (a chunk cut mid-sentence), and sentences of fewer than three words (headings)
   are never chosen.
2. **Terms.** Words are NFKC-normalised and case-folded, English stopwords are dropped (unless
   the request's language is another one), and a light stemmer strips plural ``-s``/``-es``/
   ``-ies``, ``-ing``, ``-ed`` and a final ``-e`` (``refunds``/``refunded`` → ``refund``).
   A small table of everyday equivalents (``buy``/``purchase``, ``heavy``/``weight``,
   ``loud``/``noise``, ``volts``/``voltage``…, :data:`RELATED`, built from the lexical channel's
   :data:`avatarstack.core.lexical.RELATED_WORDS`) lets a question term match its
   usual counterpart in a manual.
3. **Score.** A sentence's *support* is the share of the question's terms it contains, each term
   weighted by its inverse document frequency over all the sentences given (rare terms count
   more; a question term found nowhere still counts in the total, so a question about something
   else scores low). The passage's title and heading count as part of each of its sentences:
   "the unit runs for 6 hours" under "Halvard T142 … manual / Power" supports a question about
   the Halvard T142's power, while the same sentence in the T143's manual does not (the
   sentence's own words weigh 0.6, with the title and heading 0.4). The score adds to the
   support:

   * what the *passage* says about the question (the share of the question's terms anywhere in
     it, its title and heading included): of two look-alike sentences, the one in the passage
     about the product asked for wins;
   * the *answer type*: a question that asks for a quantity ("how many", "how long", "what
     voltage", "how heavy"…) prefers sentences with a number, most of all a number with a unit of
     the kind asked for (hours, V, W, kg, dB, °C, m, litres, years…); a sentence without any
     number is worth half as much;
   * the search's ranking, as a prior: the passages ranked higher, and with a higher score.
4. **Choice.** Sentences that match at least ``min_matching_terms`` distinct question terms and
   score at least ``relative_cutoff`` times the best score are taken best first, up to
   ``max_sentences``; the second and third must also have a support of at least
   ``extra_support`` in their own words (a weakly supported answer stays one sentence long) and
   come from a passage
   about the question as much as the first one's (no figures of a sibling product). Titles and
   headings are never quoted. Near-duplicates
   (word-set Jaccard ≥ ``duplicate_similarity``; chunk overlaps repeat sentences) are skipped, and
   so are sentences that would make the answer longer than ``max_chars`` (the best sentence alone
   is cut at a word boundary if it is longer). The chosen sentences are spoken in the order of
   their passages and, within a passage, in their order there.

One :class:`AnswerPart` per sentence, each carrying the citation of its passage the first time
that passage is cited. When no sentence qualifies, or there are no passages, the answer is
exactly :data:`NO_ANSWER` without citations.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from avatarstack.core.lexical import RELATED_WORDS
from avatarstack.ports.answers import NO_ANSWER, AnswerPart, AnswerRequest, Citation, Passage

__all__ = ["ENGLISH_STOPWORDS", "RELATED", "ExtractiveAnswerEngine"]

_ENGLISH_STOPWORDS = """
    a about above after again against all also am an and any are aren as at be because been
    before being below between both but by can cannot could couldn did didn do does doesn doing
    don down during each either else ever every few for from further get gets got had hadn has
    hasn have haven having he her here hers herself him himself his how however i if in into is
    isn it its itself just know let like ll many may me might more most much must my myself need
    neither no nor not now of off on once only or other ought our ours ourselves out over own
    please re same say shall shan she should shouldn so some such tell than that the their theirs
    them themselves then there these they this those through to too under until up us ve very
    want was wasn we were weren what when where whether which while who whom whose why will with
    won would wouldn you your yours yourself yourselves
"""
ENGLISH_STOPWORDS = frozenset(_ENGLISH_STOPWORDS.split())

#: words that end in a full stop without ending the sentence (compared case-folded, no dot)
_ABBREVIATION_WORDS = """
    mr mrs ms dr prof sr jr st mt no nos fig figs approx dept est vol vols pp ca cf al vs
    inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec art sec ch ref resp
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_QUANTITY_HOW = _set(
    "many much long often frequently heavy loud far big large small wide tall high warm hot "
    "cold fast quick old deep"
)
#: unit kinds: the question words that ask for them and the units that answer them
_UNIT_KINDS: dict[str, tuple[frozenset[str], str]] = {
    "duration": (
        _set(
            "long hour hours minute minutes second seconds time duration day days week "
            "weeks month months year years often frequently last lasts"
        ),
        r"h|hrs?|hours?|min|mins|minutes?|s|sec|secs|seconds?|days?|weeks?|months?|years?",
    ),
    "length": (
        _set("length wide width tall height high far distance deep depth cable cord lead hose"),
        r"mm|cm|m|km|in|inch|inches|ft|feet|metres?|meters?",
    ),
    "mass": (_set("heavy weight weigh weighs"), r"mg|g|kg|lb|lbs|pounds?|grams?"),
    "power": (_set("watts watt power"), r"W|kW|watts?"),
    "voltage": (_set("volts volt voltage"), r"V|kV|mV|volts?"),
    "current": (_set("amps amp current"), r"A|mA|mAh|Ah|amps?"),
    "sound": (_set("loud noise sound"), r"dB|dBA|dB\(A\)|decibels?"),
    "temperature": (
        _set("warm hot cold temperature temperatures degrees"),
        r"°C|°F|° C|° F|degrees?|C|F",
    ),
    "volume": (
        _set("litre litres liter liters volume capacity mark"),
        r"ml|l|L|litres?|liters?",
    ),
}
#: measure nouns that make "what is the …" a question for a quantity
_MEASURES = _set(
    "temperature temperatures voltage volts watts weight power level length size capacity "
    "price cost speed duration hours minutes years weeks days months percent degrees width "
    "height depth pressure volume distance mark"
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")

_BOUNDARY = re.compile(
    r"[.!?\u2026]+[\"'\u2019\u201d)\]]*\s+|[\u3002\uff01\uff1f][\"'\u2019\u201d)\]]*\s*"
)
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # u.s / e.g / a.m
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_TERMINAL = tuple(".!?\u2026:;\u3002\uff01\uff1f\"'\u2019\u201d)")
_ELLIPSIS = "\u2026"


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A light English stemmer: plural and -ing/-ed endings and a final -e; idempotent enough
    that a word and its inflections meet (``policies``/``policy``, ``shipping``/``ships``)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "shes", "ches", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) > 5:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) > 4:
        word = _undouble(word[:-2])
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _undouble(word: str) -> str:
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "lsz" and word[-1].isalpha():
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    """The case-folded words of NFKC-normalised ``text``."""
    return _WORD.findall(text.casefold())


def _terms(words: Sequence[str], stopwords: frozenset[str]) -> dict[str, None]:
    """The distinct content terms of ``words``, in order of first appearance."""
    terms: dict[str, None] = {}
    for word in words:
        if word in stopwords or (len(word) < 2 and not word.isdigit()):
            continue
        terms[_stem(word)] = None
    return terms


#: the table above, stemmed: question term -> the terms it also matches
RELATED: dict[str, frozenset[str]] = {
    _stem(word): frozenset(_stem(w) for w in related.split())
    for word, related in RELATED_WORDS.items()
}


def _expected_units(words: Sequence[str]) -> tuple[bool, re.Pattern[str] | None]:
    """Whether the question asks for a quantity, and the units that would answer it."""
    asks = any(a == "how" and b in _QUANTITY_HOW for a, b in itertools.pairwise(words))
    asks = asks or any(w in _MEASURES for w in words)
    length = _names_a_length(words)
    kinds = [
        units
        for kind, (cues, units) in _UNIT_KINDS.items()
        if any(w in cues for w in words) and not (kind == "duration" and length)
    ]
    if not asks:
        return False, None
    if not kinds:
        return True, None
    alternatives = "|".join(kinds)
    return True, re.compile(rf"(?<![\w.])\d+(?:[.,]\d+)*\s?(?:{alternatives})(?![\w])")


#: the second word of "how long", "how often"…: it asks for a kind of answer, not about a topic
_INTERROGATIVE = _set("long often much many far big")


def _without_interrogatives(words: Sequence[str]) -> list[str]:
    """``words`` without the word after "how" when it only says what kind of answer is wanted
    ("how long" is not about something long)."""
    return [
        w for i, w in enumerate(words) if not (i and words[i - 1] == "how" and w in _INTERROGATIVE)
    ]


def _names_a_length(words: Sequence[str]) -> bool:
    """Whether "how long" asks for a length ("how long is the cable"), not a duration."""
    return any(w in {"cable", "cord", "lead", "hose", "length", "wide", "tall"} for w in words)


def _lines(text: str) -> list[str]:
    """The passage's lines, a wrapped continuation (lowercase start after no terminal
    punctuation) joined back to its line."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = _SPACE.sub(" ", raw).strip()
        if not line:
            continue
        if lines and line[0].islower() and not lines[-1].endswith(_TERMINAL):
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(line)
    return lines


def split_sentences(text: str) -> list[str]:
    """``text`` cut into sentences (see the module docstring for the rules)."""
    sentences: list[str] = []
    for line in _lines(text):
        start = 0
        for match in _BOUNDARY.finditer(line):
            end = match.end()
            if end < len(line) and line[end].islower():
                continue
            if line[match.start()] == "." and _is_abbreviation(line, start, match.start()):
                continue
            sentence = line[start:end].strip()
            if sentence:
                sentences.append(sentence)
            start = end
        rest = line[start:].strip()
        if rest:
            sentences.append(rest)
    return sentences


def _is_abbreviation(line: str, start: int, dot: int) -> bool:
    word_start = max(line.rfind(" ", start, dot) + 1, start)
    word = line[word_start:dot].lstrip("(\"'\u2018\u201c[")
    if not word:
        return False
    if len(word) == 1 and word.isalpha():
        # an initial ("J. Smith"), unless it is the unit of a figure ("rated at 21.6 V.")
        before = line[start:word_start].split()
        return not (before and before[-1][-1].isdigit())
    return word.casefold() in _ABBREVIATIONS or _DOTTED.fullmatch(word) is not None


@dataclass(slots=True)
class _Sentence:
    text: str
    passage: int  # index in the request's passages (its rank)
    position: int  # index among the passage's sentences
    words: frozenset[str]
    terms: dict[str, None]
    numbers: bool = False  # it states a figure
    own: float = 0.0  # the weighted share of the question's terms in its own words
    coverage: float = 0.0  # the same with its passage's title and heading
    about: float = 0.0  # the same share for its whole passage
    score: float = 0.0  # coverage, what its passage is about, the answer type, the prior


class ExtractiveAnswerEngine:
    """An ``AnswerEngine`` that quotes the passages' best-supported sentences (see the module
    docstring). Offline, deterministic, no resources to release."""

    def __init__(
        self,
        *,
        name: str = "extractive",
        max_sentences: int = 3,
        max_chars: int = 600,
        min_matching_terms: int = 1,
        relative_cutoff: float = 0.5,
        extra_support: float = 0.25,
        duplicate_similarity: float = 0.8,
        stopwords: frozenset[str] = ENGLISH_STOPWORDS,
    ) -> None:
        if max_sentences < 1 or max_chars < 20 or min_matching_terms < 1:
            raise ValueError("max_sentences and min_matching_terms must be >= 1, max_chars >= 20")
        self.name = name
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.min_matching_terms = min_matching_terms
        self.relative_cutoff = relative_cutoff
        self.extra_support = extra_support
        self.duplicate_similarity = duplicate_similarity
        self.stopwords = stopwords

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    async def answer(self, request: AnswerRequest) -> AsyncIterator[AnswerPart]:
        chosen = self.choose(request)
        if not chosen:
            yield AnswerPart(text=NO_ANSWER)
            return
        cited: set[Citation] = set()
        for number, (text, passage) in enumerate(chosen):
            citation = Citation.of(passage)
            new = () if citation in cited else (citation,)
            cited.add(citation)
            yield AnswerPart(text=text if number == 0 else f" {text}", citations=new)

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ selection

    def choose(self, request: AnswerRequest) -> list[tuple[str, Passage]]:
        """The sentences of the answer with their passages, in speaking order (may be empty)."""
        stopwords = self._stopwords_for(request.language)
        asked = _words(unicodedata.normalize("NFKC", request.question))
        question = _terms(_without_interrogatives(asked), stopwords)
        if not question or not request.passages:
            return []
        sentences, contexts = self._sentences(request.passages, stopwords)
        if not sentences:
            return []
        quantity, units = _expected_units(asked)
        # each question term with the terms that stand for it
        forms = {term: {term} | RELATED.get(term, frozenset()) for term in question}
        self._score(sentences, forms, request.passages, contexts, quantity, units)
        best = max(sentence.score for sentence in sentences)
        cutoff = best * self.relative_cutoff
        candidates = [
            s
            for s in sentences
            if s.score > 0
            and s.score >= cutoff
            and sum(1 for alike in forms.values() if not alike.isdisjoint(s.terms))
            >= self.min_matching_terms
        ]
        candidates.sort(key=lambda s: (-s.score, s.passage, s.position))
        picked: list[_Sentence] = []
        length = 0
        for sentence in candidates:
            if len(picked) == self.max_sentences:
                break
            if picked and sentence.own < self.extra_support:
                continue
            if picked and sentence.about < picked[0].about:
                continue  # a passage less about what was asked (another product's figures)
            if any(_similar(sentence.words, p.words, self.duplicate_similarity) for p in picked):
                continue
            extra = len(sentence.text) + (1 if picked else 0)
            if picked and length + extra > self.max_chars:
                continue
            if not picked and extra > self.max_chars:
                sentence.text = _shorten(sentence.text, self.max_chars)
                extra = len(sentence.text)
            picked.append(sentence)
            length += extra
        picked.sort(key=lambda s: (s.passage, s.position))
        return [(s.text, request.passages[s.passage]) for s in picked]

    def _stopwords_for(self, language: str | None) -> frozenset[str]:
        if language is None or language.casefold().split("-")[0].split("_")[0] == "en":
            return self.stopwords
        return frozenset()

    def _sentences(
        self, passages: Sequence[Passage], stopwords: frozenset[str]
    ) -> tuple[list[_Sentence], list[tuple[set[str], set[str]]]]:
        """The candidate sentences, and per passage the terms of its title and heading (which
        count for each of its sentences) and all its terms."""
        sentences: list[_Sentence] = []
        contexts: list[tuple[set[str], set[str]]] = []
        for rank, passage in enumerate(passages):
            labels = {
                " ".join(_words(unicodedata.normalize("NFKC", label)))
                for label in (passage.title, passage.heading or "")
                if label
            }
            context = set(
                _terms(_words(unicodedata.normalize("NFKC", " ".join(labels))), stopwords)
            )
            everything = set(context)
            text = unicodedata.normalize("NFKC", passage.text)
            for position, sentence in enumerate(split_sentences(text)):
                words = _words(sentence)
                terms = _terms(words, stopwords)
                everything.update(terms)
                if position == 0 and sentence[0].islower():
                    continue  # the chunk starts in the middle of a sentence
                if len(words) < 3 or " ".join(words) in labels:
                    continue  # a heading, the title or a fragment, not an answer
                sentences.append(
                    _Sentence(
                        text=sentence,
                        passage=rank,
                        position=position,
                        words=frozenset(words),
                        terms=terms,
                        numbers=_NUMBER.search(sentence) is not None,
                    )
                )
            contexts.append((context, everything))
        return sentences, contexts

    @staticmethod
    def _score(
        sentences: list[_Sentence],
        forms: dict[str, set[str]],
        passages: Sequence[Passage],
        contexts: Sequence[tuple[set[str], set[str]]],
        quantity: bool,
        units: re.Pattern[str] | None,
    ) -> None:
        count = len(sentences)
        weights: dict[str, float] = {}
        for term, alike in forms.items():
            frequency = sum(1 for s in sentences if not alike.isdisjoint(s.terms))
            weights[term] = math.log((count + 1) / (frequency + 0.5))
        total = math.fsum(weights.values())
        if total <= 0:
            return
        about = [
            math.fsum(w for t, w in weights.items() if not forms[t].isdisjoint(everything)) / total
            for _, everything in contexts
        ]
        for sentence in sentences:
            context = contexts[sentence.passage][0]
            own = math.fsum(
                w for t, w in weights.items() if not forms[t].isdisjoint(sentence.terms)
            )
            if own <= 0:
                continue
            matched = math.fsum(
                w
                for t, w in weights.items()
                if not forms[t].isdisjoint(sentence.terms) or not forms[t].isdisjoint(context)
            )
            passage = passages[sentence.passage]
            prior = 0.05 / (1 + sentence.passage) + 0.05 * min(max(passage.score, 0.0), 1.0)
            sentence.own = own / total
            sentence.coverage = matched / total
            sentence.about = about[sentence.passage]
            score = 0.6 * sentence.own + 0.4 * sentence.coverage + 0.5 * sentence.about + prior
            if quantity:
                if units is not None and units.search(sentence.text):
                    score += 0.5
                elif sentence.numbers:
                    score += 0.2
                else:
                    score *= 0.5
            sentence.score = score


def _similar(a: frozenset[str], b: frozenset[str], threshold: float) -> bool:
    union = len(a | b)
    return union > 0 and len(a & b) / union >= threshold


def _shorten(text: str, limit: int) -> str:
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + _ELLIPSIS
