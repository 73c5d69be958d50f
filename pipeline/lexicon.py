"""Domain lexicon: terms in scoring form, and their occurrences as whole-token spans.

A lexicon file holds one term per line (single words or phrases); '#' starts a comment; case does not
matter. Terms are kept in the scoring form of pipeline.scoring_form, so "Ground-glass opacity" in the
file matches "ground glass opacity" in a normalized transcript.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DictuneError
from pipeline.scoring_form import ScoringNormalizer

NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")  # numbers are not content words of a term

STOPWORDS = {"a", "an", "the", "of", "in", "on", "at", "to", "and", "or", "with", "without", "by", "for",
             "from", "x", "is", "are"}  # fmt: skip


@dataclass(frozen=True)
class TermMatch:
    start: int  # first token index
    end: int  # one past the last token index
    term: str  # the term in scoring form


class Lexicon:
    """Domain terms in scoring form; finds their occurrences as whole-token spans."""

    def __init__(self, terms: Iterable[str], normalizer: ScoringNormalizer | None = None):
        self._whole: Lexicon | None = None  # set by subset(): matches are the whole lexicon's
        normalizer = normalizer or ScoringNormalizer(commands=False)
        self.display: dict[str, str] = {}  # scoring form -> the term as first written
        for term in terms:
            key = normalizer(term)
            if key and key not in self.display:
                self.display[key] = term.strip()
        self._by_first: dict[str, list[tuple[str, ...]]] = {}
        for key in self.display:
            tokens = tuple(key.split())
            self._by_first.setdefault(tokens[0], []).append(tokens)
        for candidates in self._by_first.values():
            candidates.sort(key=len, reverse=True)
        self.words = frozenset(  # content words of the terms (for B-WER insertions)
            w for key in self.display for w in key.split() if w not in STOPWORDS and not NUMBER_RE.match(w)
        )

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(self.display)

    def __len__(self) -> int:
        return len(self.display)

    def __contains__(self, term: str) -> bool:
        return term in self.display

    def subset(self, keys: Iterable[str]) -> Lexicon:
        """The terms `keys` (scoring form) of this lexicon, still matched against all of it: an occurrence is
        one of the whole lexicon's longest matches, so the words of a longer term are never an occurrence of
        a shorter term they contain ("bibasilar" inside "bibasilar atelectasis"), and a term's words belong to
        one subset only."""
        whole = self._whole or self
        sub = Lexicon([k for k in keys if k in self.display], normalizer=lambda text: text)
        sub.display = {k: self.display[k] for k in sub.display}
        sub._whole = whole
        return sub

    def find(self, tokens: Sequence[str]) -> list[TermMatch]:
        """Non-overlapping occurrences, left to right, the longest term first at each position."""
        if self._whole is not None:
            return [m for m in self._whole.find(tokens) if m.term in self.display]
        matches, i = [], 0
        while i < len(tokens):
            for candidate in self._by_first.get(tokens[i], ()):
                if tuple(tokens[i : i + len(candidate)]) == candidate:
                    matches.append(TermMatch(i, i + len(candidate), " ".join(candidate)))
                    i += len(candidate)
                    break
            else:
                i += 1
        return matches


def load_lexicon(path: str | Path) -> Lexicon:
    """One term per line; '#' starts a comment; blank lines are skipped; case does not matter."""
    path = Path(path)
    terms = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                term = line.split("#", 1)[0].strip()
                if term:
                    terms.append(term)
    except FileNotFoundError:
        raise DictuneError(
            f"{path}: lexicon file not found; give a text file with one term per line"
        ) from None
    except UnicodeDecodeError as e:
        raise DictuneError(f"{path}: lexicon is not UTF-8 text ({e.reason}); save it as UTF-8") from e
    lexicon = Lexicon(terms)
    if not len(lexicon):
        raise DictuneError(f"{path}: lexicon holds no terms; write one term per line")
    return lexicon
