"""Building a domain lexicon from a report archive: the words and phrases the archive uses far more often
than general English does.

    dictune lexicon build --archive reports.jsonl --field findings --field impression --out terms.txt

Single words: every word of the archive (lower case, letters with inner hyphens or apostrophes, at least
`min_length` letters) seen at least `min_count` times and rarer in general English than `max_zipf` on
wordfreq's Zipf scale, ranked by how much more often the archive uses it than English does:
log2(archive frequency / English frequency) (wordfreq; a word English never uses gets wordfreq's floor).
Phrases: runs of 2-3 words inside one clause, with no stopword, number or unit in them (an inner "of"
is allowed), seen at least `min_count` times, holding at least one word that passed the single-word
test, and cohesive: the phrase makes at least `min_cohesion` of the occurrences of its rarest word.
Phrases are ranked by log2(count) plus the specificity of their most specific word.

The output is a lexicon file (pipeline.lexicon reads it): one term a line, the counts after '#', single
words first, for a person to edit. Counting n-grams is a Counter over clauses; a collocation library
(nltk) would add a large dependency for the same few lines.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.lexicon import NUMBER_RE, STOPWORDS

_WORD = re.compile(r"[a-z][a-z]*(?:[-'][a-z]+)*")
_CLAUSE = re.compile(r"[.;:!?()\[\]\"]|,\s|\n")  # phrases never cross these
FLOOR_FREQUENCY = 1e-9  # below wordfreq's smallest English frequency


@dataclass(frozen=True)
class MinedTerm:
    term: str
    count: int
    score: float
    kind: str  # "word" or "phrase"


@dataclass(frozen=True)
class BuildOptions:
    min_count: int = 2
    min_length: int = 4
    max_zipf: float = 4.0  # words at least this common in English are not domain terms
    min_cohesion: float = 0.3
    max_words: int = 3
    top_words: int = 1000
    top_phrases: int = 1000


def _clauses(text: str) -> list[list[str]]:
    return [_WORD.findall(part) for part in _CLAUSE.split(text.lower())]


def mine_terms(texts: Iterable[str], options: BuildOptions = BuildOptions()) -> list[MinedTerm]:
    """Domain words then domain phrases of `texts`, each list best first (ties alphabetical)."""
    from wordfreq import word_frequency, zipf_frequency

    clauses = [c for text in texts for c in _clauses(text) if c]
    words = Counter(w for c in clauses for w in c)
    total = sum(words.values()) or 1
    specificity: dict[str, float] = {}
    for word, count in words.items():
        if count < options.min_count or len(word) < options.min_length or word in STOPWORDS:
            continue
        if zipf_frequency(word, "en") >= options.max_zipf:
            continue
        english = max(word_frequency(word, "en"), FLOOR_FREQUENCY)
        specificity[word] = math.log2(count / total / english)
    singles = [MinedTerm(w, words[w], round(s, 3), "word") for w, s in specificity.items()]
    singles.sort(key=lambda t: (-t.score, t.term))
    phrases = _phrases(clauses, words, specificity, options)
    return singles[: options.top_words] + phrases[: options.top_phrases]


def _phrases(clauses: Sequence[Sequence[str]], words: Counter, specificity: dict[str, float],
             options: BuildOptions) -> list[MinedTerm]:  # fmt: skip
    grams: Counter = Counter()
    for clause in clauses:
        for n in range(2, options.max_words + 1):
            for i in range(len(clause) - n + 1):
                gram = tuple(clause[i : i + n])
                inner_ok = all(w == "of" or _edge_ok(w) for w in gram[1:-1])  # "loss of height", not "a and b"
                if _edge_ok(gram[0]) and _edge_ok(gram[-1]) and inner_ok:
                    grams[gram] += 1
    out = []
    for gram, count in grams.items():
        known = [specificity[w] for w in gram if w in specificity]
        if count < options.min_count or not known:
            continue
        if count < options.min_cohesion * min(words[w] for w in gram if w not in STOPWORDS):
            continue
        out.append(MinedTerm(" ".join(gram), count, round(math.log2(count) + max(known), 3), "phrase"))
    out.sort(key=lambda t: (-t.score, t.term))
    return _drop_nested(out)


UNITS = {"mm", "cm", "ml", "cc", "kg", "mg", "hu", "mcg"}  # "5 mm nodule": the unit is not part of the term


def _edge_ok(word: str) -> bool:
    return word not in STOPWORDS and word not in UNITS and not NUMBER_RE.match(word)


def _drop_nested(phrases: list[MinedTerm]) -> list[MinedTerm]:
    """A phrase seen only inside one longer phrase (same count) is that phrase's part: dropped."""
    longer = [p for p in phrases if len(p.term.split()) > 2]
    return [p for p in phrases
            if not any(q.count == p.count and f" {p.term} " in f" {q.term} " for q in longer if q is not p)]  # fmt: skip


def lexicon_text(terms: Sequence[MinedTerm], sources: Sequence[str], reports: int) -> str:
    """The lexicon file: a header, then one term a line with its count and score as a comment."""
    head = [
        "# Domain lexicon mined by `dictune lexicon build` (pipeline/lexicon_build.py): edit freely.",
        f"# Archive: {', '.join(sources)} ({reports} reports). After '#': occurrences, specificity score.",
    ]
    width = max((len(t.term) for t in terms), default=0)
    body, kind = [], None
    for term in terms:
        if term.kind != kind:
            kind = term.kind
            body.append(f"# --- {'single words' if kind == 'word' else 'phrases'} ---")
        body.append(f"{term.term.ljust(width)}  # {term.count} {term.score:.2f}")
    return "\n".join(head + body) + "\n"


def compare(mined: Sequence[MinedTerm], reference: set[str], top: int) -> dict[str, float | int]:
    """Precision and recall of the first `top` mined terms against a reference set (same form)."""
    found = {t.term for t in mined[:top]}
    hits = len(found & reference)
    return {"top": top, "mined": len(found), "reference": len(reference), "hits": hits,
            "precision": round(hits / len(found), 4) if found else 0.0,
            "recall": round(hits / len(reference), 4) if reference else 0.0}  # fmt: skip
