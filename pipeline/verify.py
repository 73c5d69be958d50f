"""Verified spans: the parts of a final (non-verbatim) report that a long dictation's audio supports.

A group's archive pairs each recording with the signed report, not with what was said: template text
nobody dictated, sentences deleted or edited after dictation, "scratch that" corrections, reordered
sections, now and then the wrong report. `plan_verified` keeps only what the audio supports, from the
same alignment the segment stage cuts verbatim dictations with (pipeline.alignment: the base model's
timed words aligned to the report's words, spoken commands free):

1. the report is split into sentences (a heading or a list number stays with its sentence);
2. a sentence is verified when the base model heard most of it where the alignment puts it: at least
   `segment.verify_min_support` of its words matched or substituted by a word spelled alike ("plural"
   for "pleural": the base model's misspelling, not another word), a word error rate (other
   substitutions, deletions and the insertions between its first and last word) at most
   `segment.verify_max_wer`, and no number or side heard as another one ("3.8" for "3.4", "left" for
   "right"; the same digits written otherwise, "t89" for "t8-t9", are not a change): a changed
   measurement is the edit that hurts patients most;
3. speech between two sentences that the report does not hold (a deleted sentence, a macro name, a
   retracted phrase before "scratch that": `segment.verify_max_gap_words` or more hypothesis words that
   align to nothing) separates them: no piece spans it;
4. a second chance for what the first alignment, which keeps order, cannot follow (a section the report
   moved): each stretch of dropped sentences is aligned alone against each run of audio no verified
   sentence holds, and kept where at least half its words verify there;
5. runs of verified sentences with no such speech between them are packed into pieces of at most
   `segment.max_seconds`, cut in the pause between two sentences (a VAD pause when there is one);
6. an item whose verified sentences hold less than `segment.verify_min_share` of the report's words is
   rejected whole: a wrong report, or one the dictation hardly supports.

The thresholds were chosen on half the demo's final-report recordings (scripts/verify_check.py reports
all of them against the generator's truth).

Every dropped sentence is returned with its reason; pieces carry their text (an exact slice of the
report), their audio span and their error counts, as the segment stage's verbatim plan does.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.alignment import SENTENCE_END, Alignment, HypWord, SegmentText

NUMBER = re.compile(r"\d")
SIDES = frozenset({"left", "right", "bilateral"})
MAX_INSIDE_INSERTION = 3  # longer runs of unreported words inside a sentence: speech the report lacks
RETRACTIONS = {("scratch", "that")}  # spoken commands that take back the sentence before them
RETRACT_MAX_WORDS = 40  # a retraction reaches back at most this many words
REANCHOR_MIN_WORDS = 6  # shortest dropped stretch / unreported audio run given a second alignment
NEAR_SIMILARITY = 0.5  # a substitution this similar in spelling ("plural" for "pleural") counts as heard
LIST_MARKER = re.compile(r"^\d+[.)]$")  # a list number ("2.") stays with the sentence after it
HEADING = re.compile(r":$")  # "Findings:", "Lungs:" stay with what follows


@dataclass(frozen=True)
class VerifyOptions:
    min_support: float = 0.5  # share of a sentence's words the base model must match
    max_wer: float = 0.8  # a sentence's word error rate against the base model, at most
    max_gap_words: int = 2  # unreported words between two sentences that separate them
    min_share: float = 0.3  # verified share of the report's words below which the item is rejected
    max_seconds: float = 30.0  # longest piece
    min_seconds: float = 1.0  # shorter pieces are dropped
    edge_pad: float = 0.2  # silence kept around a piece where the neighbouring speech allows


@dataclass
class Sentence:
    first_token: int
    end_token: int  # tokens [first_token, end_token)
    words: list[int] = field(default_factory=list)  # normalized reference word indices
    matched: int = 0
    near: int = 0  # substitutions spelled alike: heard, misspelled by the base model
    errors: int = 0  # other substitutions + deletions + insertions inside
    insertions: int = 0
    critical: int = 0  # numbers or sides heard differently
    longest_insertion: int = 0  # most consecutive unreported words inside it
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


def apply_retractions(words: Sequence[HypWord]) -> tuple[list[HypWord], list[tuple[float, float]]]:
    """Carry out the spoken retraction command, as a dictation system does: "scratch that" removes itself
    and the sentence said just before it. Returns the words left and the (start, end) audio span of each
    retraction (no piece may hold it)."""
    bare = [re.sub(r"[^\w']+", "", w.text.lower()) for w in words]
    ends = [b == "period" or w.text.rstrip().endswith((".", "!", "?")) for w, b in zip(words, bare)]
    drop: set[int] = set()
    spans = []
    i = 0
    while i < len(words) - 1:
        if (bare[i], bare[i + 1]) not in RETRACTIONS:
            i += 1
            continue
        j = i - 1
        while j >= 0 and bare[j] == "period":  # the command closing the retracted sentence
            j -= 1
        start = j
        while start > max(0, i - RETRACT_MAX_WORDS) and not ends[start - 1] and start - 1 not in drop:
            start -= 1
        end = i + 2 if i + 2 < len(words) and bare[i + 2] == "period" else i + 1
        start = max(start, 0) if j >= 0 else i
        drop.update(range(start, end + 1))
        spans.append((words[start].start, words[end].end))
        i = end + 1
    return [w for k, w in enumerate(words) if k not in drop], spans


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


def _critical(ref_word: str, heard: str) -> bool:
    """A measurement or a side heard as another one: "3.8" for "3.4", "left" for "right" (not the same
    digits written otherwise: "t89" for "t8-t9")."""
    digits = lambda w: re.sub(r"\D", "", w)
    if NUMBER.search(ref_word) and NUMBER.search(heard):
        return digits(ref_word) != digits(heard)
    return ref_word in SIDES and heard in SIDES and ref_word != heard


def _near(ref_word: str, heard: str, commands: frozenset[str]) -> bool:
    from rapidfuzz.distance import Levenshtein

    return heard not in commands and Levenshtein.normalized_similarity(ref_word, heard) >= NEAR_SIMILARITY


def _measure(alignment: Alignment, found: list[Sentence], commands: frozenset[str]) -> None:
    """Fill each sentence's counts and audio span from the alignment's operations, in order."""
    spans = alignment.hyp_spans
    ref_words = [w for t in alignment.tokens for w in t.words]
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
                    s.longest_insertion = max(s.longest_insertion, len(pending))
                elif current >= 0:
                    found[current].gap_words += len(pending)
                pending = []
            current = k
            if op.kind in ("match", "merge"):
                s.matched += 1
            elif op.kind == "sub" and _critical(ref_words[op.ref], alignment.hyp_words[op.hyp]):
                s.critical += 1
                s.errors += 1
            elif op.kind == "sub" and _near(ref_words[op.ref], alignment.hyp_words[op.hyp], commands):
                s.near += 1
            else:
                s.errors += 1
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
    heard = s.matched + s.near
    if heard / s.n_words < options.min_support:
        return f"{heard} of {s.n_words} words heard (< segment.verify_min_support {options.min_support:g})"
    if s.critical:
        return f"{s.critical} number or side heard differently (an edited measurement?)"
    if s.longest_insertion > MAX_INSIDE_INSERTION:
        return (f"{s.longest_insertion} words in a row inside it are not in the report "
                "(a retracted phrase, or a sentence edited after dictation)")
    if s.errors / s.n_words > options.max_wer:
        return f"base-model WER {s.errors / s.n_words:.2f} > segment.verify_max_wer {options.max_wer:g}"
    return None


def plan_verified(
    reference: str,
    alignment: Alignment,
    pauses: Sequence[tuple[float, float]],
    duration: float,
    options: VerifyOptions,
    commands: Sequence[str] = (),
    normalize: Callable[[str], str] | None = None,
    retracted: Sequence[tuple[float, float]] = (),
) -> VerifiedPlan:
    """The verified pieces of one long dictation filed with a final report (module docstring). With
    `normalize` (the alignment's normalizer), dropped stretches get a second chance in unreported audio.
    `retracted`: audio spans apply_retractions took out of the words aligned: no piece holds one."""
    found = sentences(alignment)
    if not found:
        return VerifiedPlan(reason="the report has no words after scoring normalization")
    command_set = frozenset(commands)
    _measure(alignment, found, command_set)
    for s in found:
        s.reason = _judge(s, options)
    groups = [_Group(reference, alignment, found, 0)]
    if normalize is not None:
        groups += _reanchor(reference, alignment, found, options, command_set, normalize, duration)
    rescued = {k for g in groups[1:] for k in g.replaces}
    total = sum(s.n_words for s in found)
    kept = sum(s.n_words for g in groups for s in g.found if s.reason is None)
    share = kept / total
    dropped = [(f"sentence {k + 1}/{len(found)}", s.reason) for k, s in enumerate(found) if s.reason and k not in rescued]
    if share < options.min_share:
        return VerifiedPlan(
            dropped=tuple(dropped), share=share,
            reason=f"only {share:.0%} of the report's {total} words are supported by the audio "
            f"(< segment.verify_min_share {options.min_share:g}): the wrong report, or mostly text not dictated",
        )  # fmt: skip
    starts = sorted([a for a, _ in alignment.hyp_spans] + [a for a, _ in retracted])
    ends = sorted([e for _, e in alignment.hyp_spans] + [e for _, e in retracted])
    segments: list[SegmentText] = []
    for group in groups:
        pieces, too_short = _pack(group, starts, ends, pauses, duration, options, retracted)
        segments += pieces
        dropped += too_short
    segments.sort(key=lambda seg: seg.start)
    segments = [dataclasses.replace(seg, index=k) for k, seg in enumerate(segments)]
    return VerifiedPlan(tuple(segments), tuple(dropped), share)


@dataclass(frozen=True)
class _Group:
    """Sentences aligned together: the whole report, or a re-anchored stretch of it (a slice of the
    reference starting at token `token_offset`)."""

    reference: str
    alignment: Alignment
    found: list[Sentence]
    token_offset: int
    replaces: tuple[int, ...] = ()  # indices of the whole report's sentences this stretch stands for


def _free_runs(alignment: Alignment, found: list[Sentence], commands: frozenset[str]) -> list[list[int]]:
    """Runs of consecutive hypothesis words outside every verified sentence's audio, with at least
    REANCHOR_MIN_WORDS words that are not spoken commands."""
    spans = [(s.start, s.end) for s in found if s.reason is None]
    runs: list[list[int]] = []
    previous = -2
    for h, (a, b) in enumerate(alignment.hyp_spans):
        middle = (a + b) / 2
        if any(lo <= middle <= hi for lo, hi in spans):
            continue
        if h != previous + 1 or not runs:
            runs.append([])
        runs[-1].append(h)
        previous = h
    return [r for r in runs if sum(alignment.hyp_words[h] not in commands for h in r) >= REANCHOR_MIN_WORDS]


def _reanchor(reference, alignment, found, options, commands, normalize, duration) -> list[_Group]:
    """A stretch of dropped sentences (a section the report moved, say) aligned alone against each run of
    audio the first alignment left unreported; kept where at least half its words verify there."""
    from pipeline.alignment import HypWord, align

    stretches: list[list[int]] = []
    for k, s in enumerate(found):
        if s.reason is None:
            continue
        if stretches and stretches[-1][-1] == k - 1:
            stretches[-1].append(k)
        else:
            stretches.append([k])
    stretches = [st for st in stretches if sum(found[k].n_words for k in st) >= REANCHOR_MIN_WORDS]
    runs = _free_runs(alignment, found, commands)
    tokens = alignment.tokens
    groups = []
    for stretch in sorted(stretches, key=lambda st: -sum(found[k].n_words for k in st)):
        first, last = found[stretch[0]].first_token, found[stretch[-1]].end_token
        text = reference[tokens[first].char_start : tokens[last - 1].char_end]
        words_in = sum(found[k].n_words for k in stretch)
        best = None
        for run in runs:
            words = [HypWord(alignment.hyp_words[h], *alignment.hyp_spans[h]) for h in run]
            local = align(text, words, normalize, commands, duration)
            local_found = sentences(local)
            _measure(local, local_found, commands)
            for s in local_found:
                s.reason = _judge(s, options)
            verified = sum(s.n_words for s in local_found if s.reason is None)
            if verified >= words_in / 2 and (best is None or verified > best[0]):
                best = (verified, run, _Group(text, local, local_found, first, tuple(stretch)))
        if best is not None:
            groups.append(best[2])
            runs.remove(best[1])
    return groups


def _runs(found: list[Sentence], options: VerifyOptions, retracted=()) -> list[list[int]]:
    """Indices of verified sentences, grouped where neither a dropped sentence, nor unreported speech,
    nor a retraction lies between neighbours."""
    runs: list[list[int]] = []
    open_run = False
    for k, s in enumerate(found):
        if s.reason is not None:
            open_run = False
            continue
        if open_run and any(found[runs[-1][-1]].end <= a and b <= s.start for a, b in retracted):
            open_run = False
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


def _pack(group: _Group, starts, ends, pauses, duration, options, retracted=()) -> tuple[list[SegmentText], list]:
    """Pieces of at most max_seconds from each run of the group's verified sentences, cut between sentences.
    `starts` / `ends`: every hypothesis word's times in the whole recording (the neighbours of a piece)."""
    reference, alignment, found = group.reference, group.alignment, group.found
    segments: list[SegmentText] = []
    dropped: list[tuple[str, str]] = []

    def outer_start(s: Sentence) -> float:  # `starts` and `ends` are sorted: the neighbours by bisection
        k = bisect.bisect_right(ends, s.start)
        before = ends[k - 1] if k else 0.0
        return max(before, s.start - options.edge_pad, (before + s.start) / 2, 0.0)

    def outer_end(s: Sentence) -> float:
        k = bisect.bisect_left(starts, s.end)
        after = starts[k] if k < len(starts) else duration
        return min(after, s.end + options.edge_pad, max((after + s.end) / 2, s.end), duration)

    for run in _runs(found, options, retracted):

        def end_at(j: int, run: list[int] = run) -> float:  # a piece ending with run[j] ends at the next cut
            if j + 1 < len(run):
                return _cut_between(found[run[j]], found[run[j + 1]], pauses)
            return outer_end(found[run[j]])

        i = 0
        while i < len(run):
            start = end_at(i - 1) if i else outer_start(found[run[i]])
            j = i
            while j + 1 < len(run) and end_at(j + 1) - start <= options.max_seconds:
                j += 1
            end = end_at(j)
            first, last = found[run[i]], found[run[j]]
            members = [found[k] for k in run[i : j + 1]]
            i = j + 1
            where = f"tokens {first.first_token + group.token_offset}-{last.end_token + group.token_offset}"
            if end - start > options.max_seconds:
                dropped.append((where, f"one sentence of {end - start:.1f} s > segment.max_seconds"))
                continue
            if end - start < options.min_seconds:
                dropped.append((where, f"{end - start:.2f} s of verified speech < {options.min_seconds:g} s"))
                continue
            tokens = alignment.tokens
            text = reference[tokens[first.first_token].char_start : tokens[last.end_token - 1].char_end]
            segments.append(SegmentText(
                len(segments), start, end, first.first_token + group.token_offset,
                last.end_token + group.token_offset, text, sum(s.n_words for s in members),
                sum(s.errors for s in members), sum(s.insertions for s in members),
            ))  # fmt: skip
    return segments, dropped
