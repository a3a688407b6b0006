"""Text the avatar speaks: sentence splitting within a provider's limit, speaking-time estimates."""

from __future__ import annotations

import re

from avatarstack.ports.errors import FieldError, InvalidInputError

#: average speaking rate used when a vendor does not report durations
WORDS_PER_MINUTE = 150.0
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026\u3002\uff01\uff1f])\s+")
_SPACE = re.compile(r"\s+")
SPEAK_MODES = ("repeat", "talk")


def estimate_speech_seconds(text: str, words_per_minute: float = WORDS_PER_MINUTE) -> float:
    """Roughly how long speaking ``text`` takes (at least a quarter of a second)."""
    words = len(text.split()) or 1
    return max(0.25, words * 60.0 / words_per_minute)


def check_speech(text: str, mode: str, max_length: int, vendor: str = "the avatar") -> None:
    """What every provider's ``speak`` refuses: an unknown mode, empty text, text over the
    limit (callers split long text with :func:`split_for_speech` first)."""
    if mode not in SPEAK_MODES:
        raise InvalidInputError(
            "the speech mode must be 'repeat' or 'talk'",
            [FieldError("mode", "use repeat (say it verbatim) or talk (let the vendor answer)")],
        )
    if not text.strip():
        raise InvalidInputError(
            "there is nothing to say", [FieldError("text", "the text is empty")]
        )
    if len(text) > max_length:
        raise InvalidInputError(
            f"{vendor} speaks at most {max_length} characters per call; split the text first",
            [FieldError("text", f"at most {max_length} characters")],
        )


def split_for_speech(text: str, max_length: int) -> list[str]:
    """Split ``text`` into chunks of at most ``max_length`` characters, at sentence ends where
    possible, then at spaces, and only as a last resort inside a word. Empty text is refused."""
    cleaned = _SPACE.sub(" ", text).strip()
    if not cleaned:
        raise InvalidInputError(
            "there is nothing to say", [FieldError("text", "the text is empty")]
        )
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(cleaned):
        for piece in _fit(sentence, max_length):
            if current and len(current) + 1 + len(piece) <= max_length:
                current = f"{current} {piece}"
            else:
                if current:
                    chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks


def _fit(sentence: str, max_length: int) -> list[str]:
    if len(sentence) <= max_length:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.split(" "):
        while len(word) > max_length:  # a "word" longer than the limit (a URL, a hash)
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_length])
            word = word[max_length:]
        if current and len(current) + 1 + len(word) > max_length:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces
