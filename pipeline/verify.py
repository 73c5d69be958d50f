"""Verified spans: the parts of a final (non-verbatim) report that a long dictation's audio supports.

A group's archive pairs each recording with the signed report, not with what was said: template text
nobody dictated, sentences deleted or edited after dictation, "scratch that" corrections, reordered
sections, now and then the wrong report. `plan_verified` keeps only what the audio supports, from the
same alignment the segment stage cuts verbatim dictations with (pipeline.alignment: the base model's
timed words aligned to the report's words, spoken commands free):

1. the report is split into sentences (a heading or a list number stays with its sentence);
2. a sentence is verified when the base model heard most of it where the alignment puts it: at least
   `segment.verify_min_support` of its words matched, a word error rate (its substitutions, deletions and
   the insertions between its first and last word) at most `segment.verify_max_wer`, and no number or side
   (left / right) heard differently, since a changed measurement is the edit that hurts patients most;
3. speech between two sentences that the report does not hold (a deleted sentence, a macro name, a
   retracted phrase before "scratch that": `segment.verify_max_gap_words` or more hypothesis words that
   align to nothing) separates them: no piece spans it;
4. runs of verified sentences with no such speech between them are packed into pieces of at most
   `segment.max_seconds`, cut in the pause between two sentences (a VAD pause when there is one);
5. an item whose verified sentences hold less than `segment.verify_min_share` of the report's words is
   rejected whole: a wrong report, or one the dictation hardly supports.

Every dropped sentence is returned with its reason; pieces carry their text (an exact slice of the
report), their audio span and their error counts, as the segment stage's verbatim plan does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.alignment import SENTENCE_END, Alignment, SegmentText

NUMBER_OR_SIDE = re.compile(r"\d|^(left|right|bilateral)$")
LIST_MARKER = re.compile(r"^\d+[.)]$")  # a list number ("2.") stays with the sentence after it
HEADING = re.compile(r":$")  # "Findings:", "Lungs:" stay with what follows


@dataclass(frozen=True)
class VerifyOptions:
    min_support: float = 0.5  # share of a sentence's words the base model must match
    max_wer: float = 0.6  # a sentence's word error rate against the base model, at most
    max_gap_words: int = 2  # unreported words between two sentences that separate them
    min_share: float = 0.5  # verified share of the report's words below which the item is rejected
    max_seconds: float = 30.0  # longest piece
    min_seconds: float = 1.0  # shorter pieces are dropped
    edge_pad: float = 0.2  # silence kept around a piece where the neighbouring speech allows


@dataclass
class Sentence:
    first_token: int
    end_token: int  # tokens [first_token, end_token)
    words: list[int] = field(default_factory=list)  # normalized reference word indices
    matched: int = 0
    errors: int = 0  # substitutions + deletions + insertions inside
    insertions: int = 0
    critical: int = 0  # numbers or sides heard differently
    start: float | None = None  # first hypothesis word's start (s)
    end: float | None = None  # last hypothesis word's end, spoken commands after it included
    gap_words: int = 0  # unreported hypothesis words between this sentence and the next
    reason: str | None = None  # why it is not verified (None: verified)

    @property
    def n_words(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class VerifiedPlan:
    segments: tuple[SegmentText, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()  # (where, reason) per sentence not kept
    share: float = 0.0  # verified share of the report's words
    reason: str | None = None  # the item is rejected whole


def sentences(alignment: Alignment) -> list[Sentence]:
    """The report's tokens grouped into sentences; a heading or a list number joins what follows."""
    out: list[Sentence] = []
    first = 0
    tokens = alignment.tokens
    for i, token in enumerate(tokens):
        closes = SENTENCE_END.search(token.text) and not HEADING.search(token.text)
        if closes and not LIST_MARKER.match(token.text) or i == len(tokens) - 1:
            out.append(Sentence(first, i + 1))
            first = i + 1
    owner = {}
    for k, s in enumerate(out):
        for t in range(s.first_token, s.end_token):
            owner[t] = k
    for w, t in enumerate(alignment.word_token):
        out[owner[t]].words.append(w)
    return [s for s in out if s.words]


def _measure(alignment: Alignment, spans: Sequence[tuple[float, float]], found: list[Sentence], ref_text, hyp_text) -> None:
    """Fill each sentence's counts and audio span from the alignment's operations, in order."""
    of_word = {w: k for k, s in enumerate(found) for w in s.words}
    current, pending = -1, []  # sentence of the last reference word seen; insertions since then
    for op in alignment.ops:
        if op.ref >= 0:
            k = of_word.get(op.ref, -1)
            if k < 0:
                continue
            s = found[k]
            if pending:
                if k == current:
                    s.errors += len(pending)
                    s.insertions += len(pending)
                    s.critical += sum(bool(NUMBER_OR_SIDE.search(hyp_text(h))) for h in pending)
                elif current >= 0:
                    found[current].gap_words += len(pending)
                pending = []
            current = k
            if op.kind in ("match", "merge"):
                s.matched += 1
            else:
                s.errors += 1
                ref_word, heard = ref_text(op.ref), hyp_text(op.hyp) if op.hyp >= 0 else ""
                if NUMBER_OR_SIDE.search(ref_word) or NUMBER_OR_SIDE.search(heard):
                    s.critical += 1
            if op.hyp >= 0:
                last = op.hyp + 1 if op.kind == "merge" else op.hyp
                s.start = spans[op.hyp][0] if s.start is None else s.start
                s.end = spans[last][1]
        elif op.kind == "ins":
            pending.append(op.hyp)
        elif op.kind == "free" and current >= 0 and not pending:
            found[current].end = spans[op.hyp][1]  # "period" after the sentence is part of it
    if pending and current >= 0:
        found[current].gap_words += len(pending)


def _judge(s: Sentence, options: VerifyOptions) -> str | None:
    if s.start is None:
        return "not heard: no word of it in the audio (template or macro text, or the wrong report)"
    support = s.matched / s.n_words
    if support < options.min_support:
        return f"{s.matched} of {s.n_words} words heard (< segment.verify_min_support {options.min_support:g})"
    if s.critical:
        return f"{s.critical} number or side heard differently (an edited measurement?)"
    if s.errors / s.n_words > options.max_wer:
        return f"base-model WER {s.errors / s.n_words:.2f} > segment.verify_max_wer {options.max_wer:g}"
    return None


def plan_verified(
    reference: str,
    alignment: Alignment,
    pauses: Sequence[tuple[float, float]],
    duration: float,
    options: VerifyOptions,
) -> VerifiedPlan:
    """The verified pieces of one long dictation filed with a final report (module docstring)."""
    found = sentences(alignment)
    if not found:
        return VerifiedPlan(reason="the report has no words after scoring normalization")
    ref_words = [w for t in alignment.tokens for w in t.words]
    hyp_spans = alignment.hyp_spans
    _measure(alignment, hyp_spans, found, ref_words.__getitem__, alignment.hyp_words.__getitem__)
    for s in found:
        s.reason = _judge(s, options)
    total = sum(s.n_words for s in found)
    kept = sum(s.n_words for s in found if s.reason is None)
    share = kept / total
    dropped = [(f"sentence {k + 1}/{len(found)}", s.reason) for k, s in enumerate(found) if s.reason]
    if share < options.min_share:
        return VerifiedPlan(
            dropped=tuple(dropped), share=share,
            reason=f"only {share:.0%} of the report's {total} words are supported by the audio "
            f"(< segment.verify_min_share {options.min_share:g}): the wrong report, or mostly text not dictated",
        )  # fmt: skip
    segments, too_short = _pack(reference, alignment, found, hyp_spans, pauses, duration, options)
    dropped += too_short
    return VerifiedPlan(tuple(segments), tuple(dropped), share)


def _runs(found: list[Sentence], options: VerifyOptions) -> list[list[int]]:
    """Indices of verified sentences, grouped where neither a dropped sentence nor unreported speech
    lies between neighbours."""
    runs: list[list[int]] = []
    open_run = False
    for k, s in enumerate(found):
        if s.reason is not None:
            open_run = False
            continue
        if not open_run:
            runs.append([])
        runs[-1].append(k)
        open_run = s.gap_words < options.max_gap_words
    return runs


def _cut_between(a: Sentence, b: Sentence, pauses) -> float:
    """Where to cut between two neighbouring sentences: the middle of the VAD pause overlapping the gap
    between them most, else the middle of the gap."""
    lo, hi = a.end, max(a.end, b.start)
    best, best_overlap = (lo + hi) / 2, 0.0
    for p0, p1 in pauses:
        overlap = min(p1, hi) - max(p0, lo)
        if overlap > best_overlap:
            best, best_overlap = (max(p0, lo) + min(p1, hi)) / 2, overlap
    return best


def _pack(reference, alignment, found, hyp_spans, pauses, duration, options):
    """Pieces of at most max_seconds from each run, cut between sentences."""
    starts = sorted(s for s, _ in hyp_spans)
    ends = sorted(e for _, e in hyp_spans)
    segments: list[SegmentText] = []
    dropped: list[tuple[str, str]] = []

    def outer_start(s: Sentence) -> float:
        before = max((e for e in ends if e <= s.start), default=0.0)
        return max(before, s.start - options.edge_pad, (before + s.start) / 2, 0.0)

    def outer_end(s: Sentence) -> float:
        after = min((x for x in starts if x >= s.end), default=duration)
        return min(after, s.end + options.edge_pad, max((after + s.end) / 2, s.end), duration)

    for run in _runs(found, options):
        pieces: list[list[int]] = [[run[0]]]
        for k in run[1:]:
            head = found[pieces[-1][0]]
            if found[k].end - head.start + 2 * options.edge_pad > options.max_seconds:
                pieces.append([k])
            else:
                pieces[-1].append(k)
        for n, piece in enumerate(pieces):
            first, last = found[piece[0]], found[piece[-1]]
            prev_piece = pieces[n - 1] if n else None
            next_piece = pieces[n + 1] if n + 1 < len(pieces) else None
            start = _cut_between(found[prev_piece[-1]], first, pauses) if prev_piece else outer_start(first)
            end = _cut_between(last, found[next_piece[0]], pauses) if next_piece else outer_end(last)
            where = f"sentences {piece[0] + 1}-{piece[-1] + 1}/{len(found)}"
            if end - start > options.max_seconds:
                dropped.append((where, f"one sentence of {end - start:.1f} s > segment.max_seconds"))
                continue
            if end - start < options.min_seconds:
                dropped.append((where, f"{end - start:.2f} s of verified speech < {options.min_seconds:g} s"))
                continue
            tokens = alignment.tokens
            text = reference[tokens[first.first_token].char_start : tokens[last.end_token - 1].char_end]
            members = [found[k] for k in piece]
            segments.append(SegmentText(
                len(segments), start, end, first.first_token, last.end_token, text,
                sum(s.n_words for s in members), sum(s.errors for s in members), sum(s.insertions for s in members),
            ))  # fmt: skip
    return segments, dropped
