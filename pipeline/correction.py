"""Post-editing a second-pass transcript to its context's terms (`context.correct`).

A word n-gram of the transcript that sounds and looks like one of its context's terms (the retrieval
score of pipeline.context: letters and Metaphone codes, rapidfuzz + jellyfish) but is not it is rewritten
as the term: "high atal hernia" -> "hiatal hernia" when "hiatal hernia" was in the context. A span made
only of real words is kept as written, so that "chronic" never becomes "chorionic" and "cavity" never
"cavitary": a real word is a lexicon word or an English word at least as common as `known_zipf` on
wordfreq's Zipf scale (3 = once per million words). Measured on the demo's test, test_unseen and
test_general splits (README, "New words"): without that rule snapping cost up to 0.6 pt WER on plain
English; with it no split got worse.

Nothing here logs transcript text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from pipeline.context import MAX_NGRAM, sound_alike

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _plain(word: str) -> str:
    """A word as snapping compares it: lower case, no hyphen or apostrophe."""
    return word.lower().replace("-", "").replace("'", "")


class KnownWords:
    """Is a (plain) word a real word: one of the lexicon's words or its plural (-s, -es, -ies), or an English word
    with a wordfreq Zipf frequency >= known_zipf (None: only the lexicon's words)."""

    def __init__(self, lexicon_terms: Iterable[str], known_zipf: float | None):
        words = set()
        for term in lexicon_terms:
            parts = term.lower().replace("'", "").split()
            words.update(_plain(p) for p in parts)
            words.update(_plain(p) for part in parts for p in part.split("-"))
        self.words = frozenset(words)
        self.known_zipf = known_zipf
        self._cache: dict[str, bool] = {}

    def __call__(self, word: str) -> bool:
        if word in self.words or any(word.endswith(end) and word[: -len(end)] + stem in self.words
                                     for end, stem in (("s", ""), ("es", ""), ("ies", "y"))):  # fmt: skip
            return True  # a lexicon word or its plural: "hemidiaphragms", "opacities"
        if self.known_zipf is None:
            return False
        if word not in self._cache:
            from wordfreq import zipf_frequency

            self._cache[word] = zipf_frequency(word, "en") >= self.known_zipf
        return self._cache[word]


def snap_terms(text: str, terms: Sequence[str], min_score: float, known: Callable[[str], bool] | None = None) -> str:
    """Replace word n-grams of a transcript that sound and look like a context term (TermRetriever's score
    >= min_score) but are not it, by the term: "infal trait" -> "infiltrate" when "infiltrate" was in the
    context. Only terms of the context are written; the best-scoring spans first, never overlapping; a
    span that already is a context term, or whose every word is `known` (a real word), is kept as written;
    the first word's capital is kept."""
    words = list(_WORD.finditer(text))
    if not words or not terms:
        return text
    lowered = [_plain(w.group(0)) for w in words]
    own = [t.lower().replace("-", " ").split() for t in terms]
    taken: set[int] = set()  # words of context terms already written: never rewritten
    for term_words in own:
        glued = "".join(w.replace("'", "") for w in term_words)
        n = len(term_words)
        for i in range(len(words) - n + 1):
            if lowered[i : i + n] == term_words or "".join(lowered[i : i + n]) == glued:
                taken.update(range(i, i + n))
    real = [known is not None and known(w) for w in lowered]
    spans = [(i, i + n) for n in range(1, MAX_NGRAM + 1) for i in range(len(words) - n + 1)
             if taken.isdisjoint(range(i, i + n)) and not all(real[i : i + n])]  # fmt: skip
    if not spans:
        return text
    glued = ["".join(term.lower().replace("-", " ").split()) for term in terms]
    scores = sound_alike(["".join(lowered[a:b]) for a, b in spans], glued, dtype=np.float64)
    candidates = [(float(scores[s, t]), *spans[s], terms[t]) for s, t in zip(*np.nonzero(scores >= min_score))]
    chosen = []
    for score, start, end, term in sorted(candidates, key=lambda c: (-c[0], c[1], c[3])):
        if taken.isdisjoint(range(start, end)):
            taken.update(range(start, end))
            chosen.append((start, end, term))
    for start, end, term in sorted(chosen, reverse=True):
        first, last = words[start], words[end - 1]
        written = term[0].upper() + term[1:] if first.group(0)[0].isupper() else term
        text = text[: first.start()] + written + text[last.end() :]
    return text
