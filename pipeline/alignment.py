"""Align a formatted reference to timed hypothesis words, choose cut points, assign text to segments.

Pure functions, no model. A long dictation's reference is formatted text ("Small right effusion.\\n\\n
IMPRESSION: ..."); its hypothesis is a list of timed words from the base model, spoken commands included
("... effusion period new paragraph impression colon ..."). The steps:

1. `reference_tokens`: the reference split at whitespace; each token keeps its character span and its
   scoring-normalized words (the same normalizer is applied to each hypothesis word), so every normalized
   word maps back to the token it came from. Punctuation-only tokens have no words and travel with the
   token before them.
2. `edit_ops`: word-level edit distance. Substitutions cost less for similar spellings (which word pairs
   with which); hypothesis words that are spoken commands ("period", "new", "paragraph") are inserted for
   free, so commands never pull the alignment off the reference words; two hypothesis words that
   normalize together to one reference word ("C5 C6" -> "c5-c6", "twenty five" -> "25") match it.
3. `align`: matched and substituted reference words take their hypothesis word's time; the others are
   spread evenly over the gap between their neighbours. Each token gets one time point (its words'
   middle) and the span of its words plus the spoken commands that follow it.
4. `candidate_cuts` / `choose_cuts`: cut in the middle of a pause, choosing by dynamic programming the
   set of pauses that keeps every segment within [min, max] seconds at the lowest total cost: a
   constant per cut (fewer pieces) plus its risk, 1 / pause length, halved at a sentence end, plus a
   large cost for a cut that would split a token from its own words or trailing spoken commands.
5. `assign_segments`: each token goes to the segment containing its time point; times never go back, so
   a segment's text is an exact slice of the reference and the slices cover it in order. Each segment
   carries its word error rate from the same alignment (free command insertions not counted).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Edit costs (in units of one word error)
DELETION_COST = 1.0  # a reference word the hypothesis lacks
INSERTION_COST = 1.0  # a hypothesis word the reference lacks
FREE_INSERTION_COST = 0.0  # a spoken command word (the reference shows it as formatting)
SUBSTITUTION_MIN_COST = 0.5  # a substitution costs between this (near-identical spelling) and 1
SIMILARITY_BLOCK_ROWS = 256  # reference words per block of the spelling-similarity matrix
TIE_EPSILON = 1e-9  # cost differences below this count as ties (prefer match/substitution, then deletion)

# Cut risk (see module docstring)
CUT_COST = 1.0  # every cut costs this much on top of its risk: fewer, longer pieces when risks are equal
SENTENCE_END_FACTOR = 0.5  # risk multiplier for a cut right after a sentence or paragraph end
STRADDLE_COST = 20.0  # risk of a cut that separates a token's words (or its spoken commands) in time
MIN_PAUSE_SECONDS = 0.02  # floor of the pause length in the 1 / pause risk
SENTENCE_END = re.compile(r"[.!?:;]['\")\]]*$")  # a token that closes a sentence or clause heading

Normalizer = Callable[[str], str]


@dataclass(frozen=True)
class HypWord:
    text: str  # as the model wrote it (may carry punctuation and a leading space)
    start: float  # seconds from the start of the audio
    end: float  # seconds


@dataclass(frozen=True)
class RefToken:
    text: str  # the token exactly as in the reference (no whitespace)
    char_start: int  # span in the reference string
    char_end: int
    words: tuple[str, ...]  # its scoring-normalized words (empty for punctuation-only tokens)


@dataclass(frozen=True)
class EditOp:
    kind: str  # match | merge (two hypothesis words match one) | sub | del | ins | free (a spoken command)
    ref: int  # index of the normalized reference word, -1 for ins/free
    hyp: int  # index of the normalized hypothesis word (the first of a merge), -1 for del


@dataclass(frozen=True)
class Alignment:
    tokens: tuple[RefToken, ...]
    token_times: tuple[float, ...]  # one time point per token (s), non-decreasing
    token_spans: tuple[tuple[float, float], ...]  # (first, last) word middle per token, commands included
    word_token: tuple[int, ...]  # token index of each normalized reference word
    hyp_times: tuple[float, ...]  # middle of each normalized hypothesis word (s)
    ops: tuple[EditOp, ...]
    hyp_words: tuple[str, ...] = ()  # the normalized hypothesis words
    hyp_spans: tuple[tuple[float, float], ...] = ()  # (start, end) of each (s)

    @property
    def n_ref_words(self) -> int:
        return len(self.word_token)

    @property
    def n_matched(self) -> int:
        return sum(op.kind in ("match", "merge") for op in self.ops)

    @property
    def matched_fraction(self) -> float:
        return self.n_matched / self.n_ref_words if self.n_ref_words else 0.0

    @property
    def errors(self) -> int:
        return sum(op.kind in ("sub", "del", "ins") for op in self.ops)


@dataclass(frozen=True)
class Candidate:
    time: float  # where the cut would go (s)
    cost: float  # risk of cutting here (lower is better)


@dataclass(frozen=True)
class SegmentText:
    index: int  # 0-based position in the item
    start: float  # audio span (s)
    end: float
    first_token: int  # reference tokens [first_token, end_token)
    end_token: int
    text: str  # exact slice of the reference (outer whitespace stripped; inner newlines kept)
    n_ref_words: int  # normalized reference words inside
    errors: int  # substitutions + deletions + insertions (free command words not counted)
    insertions: int  # of which insertions

    @property
    def wer(self) -> float:
        if self.n_ref_words:
            return self.errors / self.n_ref_words
        return math.inf if self.errors else 0.0


# ---------------------------------------------------------------------------------------------- words


def reference_tokens(reference: str, normalize: Normalizer) -> list[RefToken]:
    """Whitespace tokens of the reference with their character spans and normalized words."""
    return [
        RefToken(m.group(), m.start(), m.end(), tuple(normalize(m.group()).split()))
        for m in re.finditer(r"\S+", reference)
    ]


def hypothesis_words(
    words: Sequence[HypWord], normalize: Normalizer, keep: Iterable[str] = ()
) -> tuple[list[HypWord], list[str | None]]:
    """Normalized hypothesis words, and for each the single word it forms with the next one (or None).

    A word that normalizes to several shares its time span evenly; one that normalizes to nothing is
    dropped unless it is in `keep` (spoken commands such as "period", kept as themselves). The pair
    form is set only where two hypothesis words, normalized together, give one word ("c5-c6").
    """
    keep = set(keep)
    out: list[HypWord] = []
    owner: list[int] = []  # index in `words` of each normalized word
    for k, word in enumerate(words):
        parts = normalize(word.text).split()
        if not parts:
            bare = re.sub(r"[^\w']+", "", word.text.lower())
            parts = [bare] if bare in keep else []
        step = (word.end - word.start) / len(parts) if parts else 0.0
        for i, part in enumerate(parts):
            out.append(HypWord(part, word.start + i * step, word.start + (i + 1) * step))
            owner.append(k)
    single = {k for k, count in Counter(owner).items() if count == 1}  # words giving exactly one word
    pairs: list[str | None] = [None] * len(out)
    for j in range(len(out) - 1):
        a, b = owner[j], owner[j + 1]
        if b == a + 1 and a in single and b in single:
            joined = normalize(words[a].text + " " + words[b].text.lstrip()).split()
            if len(joined) == 1 and joined[0] != out[j].text:
                pairs[j] = joined[0]
    return out, pairs


# ---------------------------------------------------------------------------------------------- edit distance


def _substitution_block(ref: Sequence[str], hyp: Sequence[str]) -> np.ndarray:
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    similarity = cdist(ref, hyp, scorer=Levenshtein.normalized_similarity, dtype=np.float32, workers=1)
    cost = SUBSTITUTION_MIN_COST + (1.0 - SUBSTITUTION_MIN_COST) * (1.0 - similarity.astype(np.float64))
    cost[np.asarray(ref, dtype=object)[:, None] == np.asarray(hyp, dtype=object)[None, :]] = 0.0
    return cost


def edit_ops(
    ref: Sequence[str],
    hyp: Sequence[str],
    free: Iterable[str] = (),
    pairs: Sequence[str | None] | None = None,
) -> list[EditOp]:
    """Minimum-cost word alignment of `hyp` to `ref` (see the cost constants); ops in order.

    `pairs[j]`, when set, is the one word hyp[j] and hyp[j + 1] form together: it matches a reference
    word equal to it at no cost (a merge).

    Row by row over the reference; the insertion chain inside a row is a running minimum
    (D[j] = C[j] + min_k<=j (B[k] - C[k]), C the cumulative insertion cost), so each row is a few
    numpy operations and a long dictation aligns in well under a second.
    """
    free = set(free)
    n, m = len(ref), len(hyp)
    ins = np.array([FREE_INSERTION_COST if w in free else INSERTION_COST for w in hyp], dtype=np.float64)
    cum_ins = np.concatenate([[0.0], np.cumsum(ins)])
    from_left = np.zeros((n + 1, m + 1), dtype=bool)
    from_diag = np.zeros((n + 1, m + 1), dtype=bool)
    from_merge = np.zeros((n + 1, m + 1), dtype=bool)
    from_left[0, 1:] = True
    pair_words = np.asarray(list(pairs) if pairs is not None else [None] * m, dtype=object)
    prev = cum_ins.copy()
    block: np.ndarray | None = None
    for i in range(1, n + 1):
        if (i - 1) % SIMILARITY_BLOCK_ROWS == 0:
            block = _substitution_block(ref[i - 1 : i - 1 + SIMILARITY_BLOCK_ROWS], hyp) if m else None
        up = prev + DELETION_COST
        diag = np.full(m + 1, np.inf)
        if m:
            diag[1:] = prev[:-1] + block[(i - 1) % SIMILARITY_BLOCK_ROWS]
        best = np.minimum(up, diag)
        from_diag[i] = diag <= up + TIE_EPSILON
        if m > 1:
            merge = np.full(m + 1, np.inf)
            hits = pair_words[:-1] == ref[i - 1]
            merge[2:][hits] = prev[:-2][hits]
            from_merge[i] = merge < best - TIE_EPSILON
            best = np.minimum(best, merge)
        row = np.minimum.accumulate(best - cum_ins) + cum_ins
        from_left[i] = row < best - TIE_EPSILON
        prev = row
    return _trace(ref, hyp, free, from_left, from_diag, from_merge)


def _trace(ref, hyp, free, from_left, from_diag, from_merge) -> list[EditOp]:
    ops = []
    i, j = len(ref), len(hyp)
    while i > 0 or j > 0:
        if j > 0 and (i == 0 or from_left[i, j]):
            ops.append(EditOp("free" if hyp[j - 1] in free else "ins", -1, j - 1))
            j -= 1
        elif from_merge[i, j]:
            ops.append(EditOp("merge", i - 1, j - 2))
            i, j = i - 1, j - 2
        elif i > 0 and (j == 0 or not from_diag[i, j]):
            ops.append(EditOp("del", i - 1, -1))
            i -= 1
        else:
            ops.append(EditOp("match" if ref[i - 1] == hyp[j - 1] else "sub", i - 1, j - 1))
            i, j = i - 1, j - 1
    ops.reverse()
    return ops


# ---------------------------------------------------------------------------------------------- alignment


def align(
    reference: str,
    words: Sequence[HypWord],
    normalize: Normalizer,
    command_words: Iterable[str] = (),
    duration: float | None = None,
) -> Alignment:
    """Align timed hypothesis words to the reference and give every reference token a time."""
    tokens = reference_tokens(reference, normalize)
    commands = {w.lower() for c in command_words for w in c.split()}
    free = commands | {w for c in commands for w in normalize(c).split()}
    hyp, pairs = hypothesis_words(words, normalize, keep=commands)
    ref_words = [w for t in tokens for w in t.words]
    word_token = tuple(i for i, t in enumerate(tokens) for _ in t.words)
    ops = edit_ops(ref_words, [h.text for h in hyp], free, pairs)
    end = duration if duration is not None else max((h.end for h in hyp), default=0.0)
    spans = _word_spans(len(ref_words), ops, hyp, end)
    middles = [(s + e) / 2 for s, e in spans]
    hyp_times = tuple((h.start + h.end) / 2 for h in hyp)
    token_times = _token_times(tokens, word_token, middles)
    token_spans = _token_spans(tokens, word_token, middles, ops, hyp_times, token_times)
    return Alignment(
        tuple(tokens), token_times, token_spans, word_token, hyp_times, tuple(ops),
        tuple(h.text for h in hyp), tuple((h.start, h.end) for h in hyp),
    )  # fmt: skip


def _word_spans(
    n: int, ops: Sequence[EditOp], hyp: Sequence[HypWord], end: float
) -> list[tuple[float, float]]:
    """(start, end) per reference word: its hypothesis word's, or an even share of the gap it lies in."""
    anchored: list[tuple[float, float] | None] = [None] * n
    for op in ops:
        if op.kind in ("match", "sub"):
            anchored[op.ref] = (hyp[op.hyp].start, hyp[op.hyp].end)
        elif op.kind == "merge":
            anchored[op.ref] = (hyp[op.hyp].start, hyp[op.hyp + 1].end)
    spans: list[tuple[float, float]] = []
    i = 0
    while i < n:
        if anchored[i] is not None:
            spans.append(anchored[i])
            i += 1
            continue
        j = i
        while j < n and anchored[j] is None:
            j += 1
        left = spans[-1][1] if spans else 0.0
        right = anchored[j][0] if j < n else max(end, left)
        right = max(right, left)
        step = (right - left) / (j - i)
        spans.extend((left + k * step, left + (k + 1) * step) for k in range(j - i))
        i = j
    return spans


def _token_times(tokens, word_token, middles) -> tuple[float, ...]:
    """Middle of each token's words; word-less tokens take the previous token's time; never decreasing."""
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for w, t in enumerate(word_token):
        first.setdefault(t, middles[w])
        last[t] = middles[w]
    times, current = [], None
    for t in range(len(tokens)):
        if t in first:
            value = (first[t] + last[t]) / 2
            current = value if current is None else max(current, value)
        times.append(current)
    start = next((x for x in times if x is not None), 0.0)
    return tuple(start if x is None else x for x in times)


def _token_spans(tokens, word_token, middles, ops, hyp_times, token_times) -> tuple[tuple[float, float], ...]:
    """(earliest, latest) word middle per token, counting the spoken commands aligned right after it."""
    spans = [[t, t] for t in token_times]
    for w, t in enumerate(word_token):
        spans[t][0] = min(spans[t][0], middles[w])
        spans[t][1] = max(spans[t][1], middles[w])
    owner = -1  # token of the last reference word seen in op order
    for op in ops:
        if op.ref >= 0:
            owner = word_token[op.ref]
        elif op.kind == "free" and owner >= 0:
            spans[owner][1] = max(spans[owner][1], hyp_times[op.hyp])
    return tuple((a, b) for a, b in spans)


# ---------------------------------------------------------------------------------------------- cut points


def candidate_cuts(pauses: Iterable[tuple[float, float]], alignment: Alignment) -> list[Candidate]:
    """One candidate per pause (start, end), in its middle, priced by its risk (module docstring)."""
    out = []
    for start, end in pauses:
        time = (start + end) / 2
        risk = 1.0 / max(end - start, MIN_PAUSE_SECONDS)
        before = bisect.bisect_left(alignment.token_times, time) - 1  # last token before the cut
        if before >= 0 and _ends_sentence(alignment.tokens, before):
            risk *= SENTENCE_END_FACTOR
        if any(a < time < b for a, b in alignment.token_spans[max(0, before - 1) : before + 2]):
            risk += STRADDLE_COST
        out.append(Candidate(time, CUT_COST + risk))
    return out


def _ends_sentence(tokens: Sequence[RefToken], index: int) -> bool:
    return bool(SENTENCE_END.search(tokens[index].text))


def choose_cuts(
    candidates: Sequence[Candidate], start: float, end: float, max_seconds: float, min_seconds: float = 0.0
) -> list[float] | None:
    """Segment bounds [start, cut..., end] with every piece in [min, max] s at least total risk.

    Returns None when no choice of candidates fits. A piece that is already short enough is not cut.
    """
    if end - start <= max_seconds:
        return [start, end]
    points = [Candidate(start, 0.0)]
    points += sorted((c for c in candidates if start < c.time < end), key=lambda c: c.time)
    points.append(Candidate(end, 0.0))
    best = [math.inf] * len(points)
    back = [-1] * len(points)
    best[0] = 0.0
    for j in range(1, len(points)):
        for i in range(j - 1, -1, -1):
            length = points[j].time - points[i].time
            if length > max_seconds:
                break
            if length >= min_seconds and best[i] + points[j].cost < best[j]:
                best[j], back[j] = best[i] + points[j].cost, i
    if math.isinf(best[-1]):
        return None
    bounds, j = [], len(points) - 1
    while j >= 0:
        bounds.append(points[j].time)
        j = back[j]
    return bounds[::-1]


def longest_uncut(candidates: Sequence[Candidate], start: float, end: float) -> float:
    """The longest stretch (s) between neighbouring cut candidates: what a failed plan could not fit."""
    times = [start, *sorted(c.time for c in candidates if start < c.time < end), end]
    return max(b - a for a, b in itertools.pairwise(times))


# ---------------------------------------------------------------------------------------------- text


def assign_segments(reference: str, alignment: Alignment, bounds: Sequence[float]) -> list[SegmentText]:
    """Cut the reference into one exact slice per segment: each token goes where its time point lies."""
    inner = list(bounds[1:-1])
    token_segment = [bisect.bisect_right(inner, t) for t in alignment.token_times]
    errors = [0] * (len(bounds) - 1)
    insertions = [0] * (len(bounds) - 1)
    for op in alignment.ops:
        if op.kind in ("sub", "del"):
            errors[token_segment[alignment.word_token[op.ref]]] += 1
        elif op.kind == "ins":
            k = bisect.bisect_right(inner, alignment.hyp_times[op.hyp])
            errors[k] += 1
            insertions[k] += 1
    words = [0] * (len(bounds) - 1)
    for t in alignment.word_token:
        words[token_segment[t]] += 1
    segments = []
    for k in range(len(bounds) - 1):
        first = bisect.bisect_left(token_segment, k)
        last = bisect.bisect_left(token_segment, k + 1)
        text = ""
        if last > first:
            tokens = alignment.tokens
            text = reference[tokens[first].char_start : tokens[last - 1].char_end]
        segments.append(
            SegmentText(k, bounds[k], bounds[k + 1], first, last, text, words[k], errors[k], insertions[k])
        )
    return segments
