"""The offline default embedder: signed feature hashing, no model download, pure Python.

Features of a text (after NFKC normalisation and lower-casing; words are ``\\w+`` runs):

* word unigrams (weight :data:`UNIGRAM_WEIGHT`),
* word bigrams — adjacent word pairs (weight :data:`BIGRAM_WEIGHT`),
* character trigrams of each word padded with one space on either side, so short words and word
  edges count too and inflected forms (``embedding`` / ``embeddings``) overlap (weight
  :data:`TRIGRAM_WEIGHT`).

Words of the small English :data:`STOP_WORDS` list ("the", "of", "how"…) only take part in
bigrams with a content word, at :data:`STOP_WORD_WEIGHT` for their unigram and no trigrams: without
corpus statistics (IDF) they would otherwise dominate short texts such as questions. Other
languages work, just without that help.

Each distinct feature contributes ``weight · (1 + ln tf)`` (sublinear term frequency) to one
coordinate, chosen — with a ± sign, so collisions cancel on average instead of piling up — by a
keyed BLAKE2b hash of the feature. BLAKE2b, unlike Python's salted ``hash()``, gives the same
vector in every process and on every machine. The vector is then L2-normalised.

**Featureless texts** (the empty string, whitespace, punctuation only) get a fixed unit vector:
the signed one-hot of the reserved feature :data:`EMPTY_FEATURE`. All such texts are thus equal to
each other and, like any unrelated text, nearly orthogonal to everything else.

Any change to the features, weights or hashing changes the vectors: give the embedder a new
``name`` then, since the name keys the embedding cache and is recorded on index generations.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

from avatarstack.core.lexical import STOP_WORDS

UNIGRAM_WEIGHT = 1.0
BIGRAM_WEIGHT = 0.7
TRIGRAM_WEIGHT = 0.35
STOP_WORD_WEIGHT = 0.1
#: the feature whose signed one-hot is the vector of a text with no features
EMPTY_FEATURE = "\x00empty"
#: BLAKE2b key: changing it changes every vector
_HASH_KEY = b"avatarstack.hashing.v1"
_WORD = re.compile(r"\w+")
#: batches with more texts than this are embedded in a worker thread
DEFAULT_THREAD_THRESHOLD = 16
#: bound on the per-instance feature → (index, sign) memo; cleared when exceeded
_MEMO_LIMIT = 500_000


class HashingEmbedder:
    """Deterministic offline embedder; see the module documentation for the features."""

    def __init__(
        self,
        dimensions: int = 384,
        name: str = "hashing",
        *,
        thread_threshold: int = DEFAULT_THREAD_THRESHOLD,
    ) -> None:
        if dimensions < 2:
            raise ValueError("dimensions must be at least 2")
        self.name = name
        self.dimensions = dimensions
        self._thread_threshold = thread_threshold
        # feature → signed slot (index + 1, negated for a minus sign); the trigram vocabulary is
        # small, so this removes most hashing work on real text
        self._slots: dict[str, int] = {}
        # word → the signed slots of its padded character trigrams
        self._word_trigrams: dict[str, list[int]] = {}

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        if len(texts) > self._thread_threshold:
            return await asyncio.to_thread(self.embed_sync, texts)
        return self.embed_sync(texts)

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """The synchronous core of :meth:`embed` (CPU-bound; call it off the event loop)."""
        return [self._embed_one(text) for text in texts]

    def _slot(self, feature: str) -> int:
        slot = self._slots.get(feature)
        if slot is None:
            digest = hashlib.blake2b(
                feature.encode("utf-8", "surrogatepass"), digest_size=8, key=_HASH_KEY
            ).digest()
            value = int.from_bytes(digest, "big")
            slot = (value >> 1) % self.dimensions + 1
            if value & 1:
                slot = -slot
            if len(self._slots) >= _MEMO_LIMIT:
                self._slots.clear()
            self._slots[feature] = slot
        return slot

    def _trigram_slots(self, word: str) -> list[int]:
        slots = self._word_trigrams.get(word)
        if slots is None:
            padded = f" {word} "
            slots = [self._slot("c" + padded[i : i + 3]) for i in range(len(padded) - 2)]
            if len(self._word_trigrams) >= _MEMO_LIMIT:
                self._word_trigrams.clear()
            self._word_trigrams[word] = slots
        return slots

    def _embed_one(self, text: str) -> list[float]:
        words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
        vector = [0.0] * self.dimensions
        if not words:
            slot = self._slot(EMPTY_FEATURE)
            vector[abs(slot) - 1] = 1.0 if slot > 0 else -1.0
            return vector
        word_counts = Counter(words)
        # trigram counts are gathered per signed slot (C-speed Counter.update over cached slot
        # lists); two trigrams sharing a slot and sign already collide, so this is equivalent
        # up to the log of their summed count
        trigram_counts: Counter[int] = Counter()
        for word, count in word_counts.items():
            if word in STOP_WORDS:
                continue
            slots = self._trigram_slots(word)
            trigram_counts.update(slots * count if count > 1 else slots)
        slot_of = self._slot
        content = [(w, c) for w, c in word_counts.items() if w not in STOP_WORDS]
        stop = [(w, c) for w, c in word_counts.items() if w in STOP_WORDS]
        groups: tuple[tuple[float, list[tuple[int, int]]], ...] = (
            (UNIGRAM_WEIGHT, [(slot_of("w" + w), c) for w, c in content]),
            (STOP_WORD_WEIGHT, [(slot_of("w" + w), c) for w, c in stop]),
            (
                BIGRAM_WEIGHT,
                [
                    (slot_of(f"b{a} {b}"), c)
                    for (a, b), c in Counter(pairwise(words)).items()
                    if a not in STOP_WORDS or b not in STOP_WORDS
                ],
            ),
            (TRIGRAM_WEIGHT, list(trigram_counts.items())),
        )
        log = math.log
        for weight, slot_counts in groups:
            for slot, count in slot_counts:
                value = weight if count == 1 else weight * (1.0 + log(count))
                if slot > 0:
                    vector[slot - 1] += value
                else:
                    vector[-slot - 1] -= value
        norm = math.sqrt(math.fsum(v * v for v in vector))
        if norm == 0.0:  # every feature cancelled out: practically impossible, still defined
            return self._embed_one("")
        return [v / norm for v in vector]
