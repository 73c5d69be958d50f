"""Word confidences: the decoder's token probabilities grouped into words, carried through post-editing,
and placed on the formatted report (the review page of `dictune serve` marks the low ones).

    words = group_words(token_ids, token_probs, decode)        # the engines, with_words=True
    words = realign(words, snapped_text)                       # after pipeline.correction snapped terms
    spans = low_confidence_spans(format_dictation(spoken), words, threshold=0.5)

Grouping follows faster-whisper's: a token whose text begins with a space starts a new word; a token that
ends in half a UTF-8 character waits for the next. A word's probability is the LOWEST of its tokens'
probabilities (faster-whisper takes their mean): the weakest piece is the one a reviewer should check,
and a long rare word split into many tokens is not marked down for its length, as a product would do.
Tokens of punctuation only ("," after "colon") do not count unless the word is nothing else: whether
the recognizer wrote a comma says little about the word it follows.

A word that snapping (pipeline.correction) wrote has no probability of its own: it gets the lowest
probability of the decoded words it replaced, and `corrected=True` (the page says so).

Formatted text: format_dictation turns spoken commands into marks ("period" -> "."), numbers and units
into figures ("four millimeters" -> "4 mm") and changes case. Decoded words and the formatted text are
both cut into runs of letters and digits, compared lower-cased in order (difflib), and a decoded word is
placed on the formatted runs it matches; a differing stretch of equal length is paired run by run, one of
unequal length (after dropping command words at its ends) becomes one span with the lowest probability
of its words; words with nothing in the formatted text (the commands) are given up. Nothing here logs text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

_RUN = re.compile(r"[^\W_]+")  # a run of letters and digits: what both texts are compared by
_MAX_CHARACTER_TOKENS = 4  # byte-level tokens one UTF-8 character can take


@dataclass(frozen=True)
class Word:
    text: str  # as decoded (spoken form), without its leading space
    probability: float  # the lowest probability of its tokens, in [0, 1]
    corrected: bool = False  # written by term snapping: the probability is that of the words it replaced


def group_words(ids: Sequence[int], probs: Sequence[float], decode: Callable[[list[int]], str]) -> list[Word]:
    """Words of a decoded token sequence (special tokens already removed), each with its probability."""
    # per word: its text, the probabilities of its spoken tokens and of its punctuation-only tokens
    words: list[tuple[str, list[float], list[float]]] = []
    pending: list[int] = []
    pending_probs: list[float] = []
    for index, (token, prob) in enumerate(zip(ids, probs)):
        pending.append(token)
        pending_probs.append(float(prob))
        text = decode(pending)
        if "\ufffd" in text and len(pending) < _MAX_CHARACTER_TOKENS and index < len(ids) - 1:
            continue  # part of a multi-byte character: decoded with the next token
        spoken = _RUN.search(text) is not None
        if text.startswith(" ") or not words:
            words.append(("", [], []))
        text_so_far, spoken_probs, mark_probs = words[-1]
        (spoken_probs if spoken else mark_probs).extend(pending_probs)
        words[-1] = (text_so_far + text, spoken_probs, mark_probs)
        pending, pending_probs = [], []
    return [Word(text.strip(), min(spoken or marks)) for text, spoken, marks in words if text.strip()]


def realign(words: Sequence[Word], text: str) -> list[Word]:
    """The words of `text` (a post-edit of the words' text) with probabilities: a word kept as decoded
    keeps its own; words that replaced decoded words get the lowest of those, marked corrected; a word
    with no decoded counterpart at all (a pure insertion) gets probability 0, marked corrected."""
    new = text.split()
    old_keys = [_key(w.text) for w in words]
    matcher = difflib.SequenceMatcher(None, old_keys, [_key(w) for w in new], autojunk=False)
    out: list[Word] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out += [replace(words[i], text=new[j]) for i, j in zip(range(i1, i2), range(j1, j2))]
        elif op in ("replace", "insert"):
            low = min((w.probability for w in words[i1:i2]), default=0.0)
            out += [Word(new[j], low, True) for j in range(j1, j2)]
    return out


def _trim_commands(runs: list[str], i1: int, i2: int, size: int) -> tuple[int, int]:
    """runs[i1:i2] without the command words at its ends (pipeline.text.COMMANDS) while longer than size."""
    from pipeline.text import COMMANDS

    words = {w for command in COMMANDS for w in command}
    while i2 - i1 > size and (runs[i1] in words or runs[i2 - 1] in words):
        i1, i2 = (i1 + 1, i2) if runs[i1] in words else (i1, i2 - 1)
    return i1, i2


def _key(word: str) -> str:
    return "".join(_RUN.findall(word.lower()))


def low_confidence_spans(formatted: str, words: Sequence[Word], threshold: float) -> list[dict[str, Any]]:
    """[{"start", "end", "word", "probability", "corrected"}] (characters of `formatted`) of the decoded
    words whose probability is at most `threshold`, in text order, never overlapping."""
    if threshold <= 0:
        return []  # off
    return [span for span in word_spans(formatted, words) if span["probability"] <= threshold]


def word_spans(formatted: str, words: Sequence[Word]) -> list[dict[str, Any]]:
    """Every decoded word that could be placed on the formatted text, as a span of it (see the module doc)."""
    runs = list(_RUN.finditer(formatted))
    spoken = [(k, run.lower()) for k, w in enumerate(words) for run in _RUN.findall(w.text)]
    # per formatted run: (the word or stretch it belongs to, probability, corrected), None if unplaced
    placed: list[tuple[tuple[str, int], float, bool] | None] = [None] * len(runs)
    matcher = difflib.SequenceMatcher(None, [r for _, r in spoken], [r.group(0).lower() for r in runs],
                                      autojunk=False)  # fmt: skip
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace" and i2 - i1 > j2 - j1:  # spoken commands beside a changed stretch ("colon four")
            i1, i2 = _trim_commands([r for _, r in spoken], i1, i2, j2 - j1)
        if op == "equal" or (op == "replace" and i2 - i1 == j2 - j1):
            for i, j in zip(range(i1, i2), range(j1, j2)):
                word = words[spoken[i][0]]
                placed[j] = (("word", spoken[i][0]), word.probability, word.corrected)
        elif op == "replace":
            stretch = [words[k] for k in sorted({spoken[i][0] for i in range(i1, i2)})]
            low, corrected = min(w.probability for w in stretch), any(w.corrected for w in stretch)
            for j in range(j1, j2):
                placed[j] = (("stretch", j1), low, corrected)
    spans: list[dict[str, Any]] = []
    for j, run in enumerate(runs):
        if placed[j] is None:
            continue
        unit, probability, corrected = placed[j]
        if j > 0 and placed[j - 1] is not None and placed[j - 1][0] == unit:
            spans[-1]["end"] = run.end()  # another run of the same word: "3.8", "L4-L5"
            continue
        spans.append({"start": run.start(), "end": run.end(), "probability": float(f"{probability:.4g}"),
                      "corrected": corrected})  # fmt: skip
    for span in spans:
        span["word"] = formatted[span["start"] : span["end"]]
    return spans
