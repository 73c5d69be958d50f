"""Error rates for dictation: WER, CER, B-WER / U-WER, lexicon-term precision / recall / F1, a per-term
table; paired bootstrap confidence intervals for the difference of two systems are in pipeline.bootstrap.

Every metric is computed on the scoring form (pipeline.scoring_form.normalize_for_scoring) and is
corpus-level: summed errors over summed reference counts, never a mean of per-utterance rates. A rate
whose denominator is zero is undefined and reported as None.

Alignment: jiwer (rapidfuzz Levenshtein) word alignment, so WER and CER equal jiwer's on the same
normalized strings. Where several minimal alignments exist the one jiwer returns is used.

B-WER / U-WER follow Le et al. 2021, "Contextualized streaming end-to-end speech recognition with trie-based
deep biasing and shallow fusion" (Interspeech; scorer fbai-speech/is21_deep_bias/score.py): reference words
are split into biased words and the rest; substitutions and deletions count where their reference word
belongs; B-WER = (S + D + I on biased words) / biased reference words, U-WER likewise on the rest. An
insertion counts as biased when the inserted hypothesis word is a biasing word. Here the biasing list is
the lexicon, whose terms can span several words, so:
  * a reference word is biased when it lies inside an occurrence of a lexicon term in the reference
    (whole tokens: the term "ile" never matches "ileus");
  * an inserted hypothesis word is biased when it lies inside a term occurrence in the hypothesis, or is
    a content word of some term (a word of a term other than a stop word such as "in" or a number).
Thus errors_B + errors_U = errors of the WER, and N_B + N_U = N.

Term precision / recall: term occurrences are found in reference and hypothesis (Lexicon.find: whole
tokens, longest term first). A reference occurrence is recovered when the hypothesis has an occurrence
of the same term exactly at the aligned position (the hypothesis tokens aligned to the reference span,
insertions inside the span included). recall = recovered / reference occurrences; precision =
recovered / hypothesis occurrences (a hypothesis occurrence not recovering a reference one is a false
positive); F1 = 2 * recovered / (reference + hypothesis occurrences). Term error rate = 1 - recall, the
"domain-term error" of the reports. The wrong rendering of a missed occurrence is the hypothesis text at
the aligned position, with insertions right next to the span included ("" when all of it was deleted).

Clinical errors (flipped negation, changed side, number, unit or vertebral level) are found on the same
alignment by pipeline.clinical, whose docstring has the rules; `groups` (a report id per utterance)
sums them per report, and pipeline.bootstrap.paired_bootstrap(by_report=True) resamples whole reports.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipeline.clinical import find_errors
from pipeline.clinical_counts import ClinicalError, ClinicalScores, aggregate
from pipeline.lexicon import Lexicon
from pipeline.scoring_form import normalize_for_scoring

TOP_RENDERINGS = 3  # wrong renderings kept per term


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


# ------------------------------------------------------------------------------- typed results


@dataclass(frozen=True)
class ErrorRate:
    """Edit counts against `ref_count` reference units (words or characters)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_count: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float | None:
        return _rate(self.errors, self.ref_count)

    def __add__(self, other: ErrorRate) -> ErrorRate:
        return ErrorRate(*(a + b for a, b in zip(self._counts(), other._counts())))

    def _counts(self) -> tuple[int, int, int, int]:
        return (self.substitutions, self.deletions, self.insertions, self.ref_count)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors, "rate": self.rate}


@dataclass(frozen=True)
class TermOutcome:
    """One reference occurrence of a lexicon term."""

    term: str  # scoring form
    hit: bool  # recovered at the aligned position
    rendering: str  # hypothesis text at the aligned position


@dataclass(frozen=True)
class UtteranceScore:
    """Counts for one utterance; corpus metrics and the bootstrap are sums of these."""

    ref: str  # scoring form
    hyp: str
    words: ErrorRate
    chars: ErrorRate
    biased: ErrorRate
    unbiased: ErrorRate
    term_ref: int = 0  # term occurrences in the reference
    term_hyp: int = 0  # term occurrences in the hypothesis
    term_hits: int = 0  # reference occurrences recovered
    outcomes: tuple[TermOutcome, ...] = ()
    false_positives: tuple[str, ...] = ()  # hypothesis occurrences that recovered nothing
    clinical: tuple[ClinicalError, ...] = ()  # pipeline.clinical errors, in reference order


@dataclass(frozen=True)
class TermScores:
    ref_occurrences: int
    hyp_occurrences: int
    hits: int

    @property
    def precision(self) -> float | None:
        return _rate(self.hits, self.hyp_occurrences)

    @property
    def recall(self) -> float | None:
        return _rate(self.hits, self.ref_occurrences)

    @property
    def f1(self) -> float | None:
        return _rate(2 * self.hits, self.ref_occurrences + self.hyp_occurrences)

    @property
    def error_rate(self) -> float | None:
        recall = self.recall
        return None if recall is None else 1.0 - recall

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "error_rate": self.error_rate}  # fmt: skip


@dataclass(frozen=True)
class TermRow:
    """One line of the per-term table."""

    term: str  # scoring form
    display: str  # as written in the lexicon
    occurrences: int  # in the references
    hits: int
    false_positives: int
    wrong_renderings: tuple[tuple[str, int], ...]  # most frequent first

    @property
    def misses(self) -> int:
        return self.occurrences - self.hits

    @property
    def error_rate(self) -> float | None:
        return _rate(self.misses, self.occurrences)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["wrong_renderings"] = [{"text": text, "count": count} for text, count in self.wrong_renderings]
        return {**out, "misses": self.misses, "error_rate": self.error_rate}


@dataclass(frozen=True)
class Scores:
    """Corpus-level metrics of one system on a list of utterances."""

    utterances: int
    wer: ErrorRate
    cer: ErrorRate
    b_wer: ErrorRate | None = None  # None without a lexicon
    u_wer: ErrorRate | None = None
    terms: TermScores | None = None
    per_term: tuple[TermRow, ...] = ()  # most misses first
    per_utterance: tuple[UtteranceScore, ...] = field(default=(), repr=False)
    clinical: ClinicalScores | None = None  # negation, laterality, number / unit / level errors
    groups: tuple[str, ...] | None = None  # report id per utterance; None: each utterance is a report

    def to_dict(self, per_utterance: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "utterances": self.utterances,
            "wer": self.wer.to_dict(),
            "cer": self.cer.to_dict(),
        }
        if self.clinical is not None:
            out["clinical"] = self.clinical.to_dict()
        if self.terms is not None:
            out["b_wer"] = self.b_wer.to_dict() if self.b_wer else None
            out["u_wer"] = self.u_wer.to_dict() if self.u_wer else None
            out["terms"] = self.terms.to_dict()
            out["per_term"] = [row.to_dict() for row in self.per_term]
        if per_utterance:
            out["per_utterance"] = [_utterance_dict(u) for u in self.per_utterance]
        return out


def _utterance_dict(u: UtteranceScore) -> dict[str, Any]:
    return {"ref": u.ref, "hyp": u.hyp, "wer": u.words.to_dict(), "cer": u.chars.to_dict(),
            "term_ref": u.term_ref, "term_hyp": u.term_hyp, "term_hits": u.term_hits,
            "missed_terms": [o.term for o in u.outcomes if not o.hit],
            "clinical": [e.to_dict() for e in u.clinical]}  # fmt: skip


# ------------------------------------------------------------------------------- alignment


def _expand(chunks) -> list[tuple[str, int | None, int | None]]:
    """jiwer alignment chunks -> one (op, ref index, hyp index) per token."""
    ops: list[tuple[str, int | None, int | None]] = []
    for c in chunks:
        if c.type in ("equal", "substitute"):
            assert c.ref_end_idx - c.ref_start_idx == c.hyp_end_idx - c.hyp_start_idx
            ops += [
                (c.type, c.ref_start_idx + k, c.hyp_start_idx + k)
                for k in range(c.ref_end_idx - c.ref_start_idx)
            ]
        elif c.type == "delete":
            ops += [("delete", i, None) for i in range(c.ref_start_idx, c.ref_end_idx)]
        else:
            ops += [("insert", None, j) for j in range(c.hyp_start_idx, c.hyp_end_idx)]
    return ops


def _counts(ops) -> ErrorRate:
    kinds = Counter(op for op, _, _ in ops)
    ref_count = kinds["equal"] + kinds["substitute"] + kinds["delete"]
    return ErrorRate(kinds["substitute"], kinds["delete"], kinds["insert"], ref_count)


def _hyp_bounds(ops, ref_len: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Per reference token its hypothesis span [start, end); per gap k (before reference token k, gap
    ref_len at the end) the span [lo, hi) of the insertions in it."""
    start, end = [0] * ref_len, [0] * ref_len
    lo: list[int | None] = [None] * (ref_len + 1)
    hi = [0] * (ref_len + 1)
    i = j = 0
    for op, _, _ in ops:
        if lo[i] is None:
            lo[i] = j
        if op == "insert":
            j += 1
            hi[i] = j
            continue
        hi[i] = max(hi[i], j)
        start[i] = j
        j += op != "delete"
        end[i] = j
        i += 1
    if lo[ref_len] is None:
        lo[ref_len] = hi[ref_len] = j
    return start, end, [x if x is not None else 0 for x in lo], hi


# ------------------------------------------------------------------------------- per utterance


def _score_terms(ref_tok, hyp_tok, ops, lexicon: Lexicon):
    """Term outcomes and false positives; also the biased reference positions and hypothesis positions."""
    ref_matches, hyp_matches = lexicon.find(ref_tok), lexicon.find(hyp_tok)
    start, end, lo, hi = _hyp_bounds(ops, len(ref_tok))
    hyp_at = {(m.start, m.end): m.term for m in hyp_matches}
    used, outcomes = set(), []
    for m in ref_matches:
        span = (start[m.start], end[m.end - 1])
        hit = hyp_at.get(span) == m.term and span not in used
        if hit:
            used.add(span)
        rendering = " ".join(hyp_tok[lo[m.start] : hi[m.end]])
        outcomes.append(TermOutcome(m.term, hit, rendering))
    false_positives = tuple(m.term for m in hyp_matches if (m.start, m.end) not in used)
    biased_ref = {i for m in ref_matches for i in range(m.start, m.end)}
    biased_hyp = {j for m in hyp_matches for j in range(m.start, m.end)}
    biased_hyp |= {j for j, w in enumerate(hyp_tok) if w in lexicon.words}
    return tuple(outcomes), false_positives, biased_ref, biased_hyp, len(hyp_matches)


def _split_biased(ops, biased_ref: set[int], biased_hyp: set[int]) -> tuple[ErrorRate, ErrorRate]:
    b_ops = [o for o in ops if (o[1] in biased_ref if o[0] != "insert" else o[2] in biased_hyp)]
    u_ops = [o for o in ops if (o[1] not in biased_ref if o[0] != "insert" else o[2] not in biased_hyp)]
    return _counts(b_ops), _counts(u_ops)


def _score_one(ref_tok, hyp_tok, word_chunks, char_chunks, lexicon: Lexicon | None) -> UtteranceScore:
    ops = _expand(word_chunks)
    words, chars = _counts(ops), _counts(_expand(char_chunks))
    ref, hyp = " ".join(ref_tok), " ".join(hyp_tok)
    clinical = find_errors(ref_tok, hyp_tok, ops)
    if lexicon is None:
        return UtteranceScore(ref, hyp, words, chars, ErrorRate(), words, clinical=clinical)
    outcomes, false_pos, biased_ref, biased_hyp, n_hyp = _score_terms(ref_tok, hyp_tok, ops, lexicon)
    biased, unbiased = _split_biased(ops, biased_ref, biased_hyp)
    hits = sum(o.hit for o in outcomes)
    return UtteranceScore(
        ref, hyp, words, chars, biased, unbiased, len(outcomes), n_hyp, hits, outcomes, false_pos, clinical
    )


# ------------------------------------------------------------------------------- corpus


def score(
    refs: Sequence[str],
    hyps: Sequence[str],
    lexicon: Lexicon | None = None,
    normalizer: Callable[[str], str] | None = normalize_for_scoring,
    groups: Sequence[str] | None = None,
) -> Scores:
    """Score hypotheses against references (same order, same length). `normalizer=None` when both
    are already in scoring form; `groups`: the report id of each utterance, for the clinical counts."""
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm = normalizer or (lambda s: s)
    refs_n = [" ".join(norm(r).split()) for r in refs]
    hyps_n = [" ".join(norm(h).split()) for h in hyps]
    groups = tuple(groups) if groups is not None else None
    if groups is not None and len(groups) != len(refs):
        raise ValueError(f"{len(groups)} report ids for {len(refs)} utterances")
    if not refs_n:
        scores = Scores(
            0, ErrorRate(), ErrorRate(), *((ErrorRate(), ErrorRate(), TermScores(0, 0, 0)) if lexicon else ())
        )
    else:
        words = jiwer.process_words(refs_n, hyps_n)
        chars = jiwer.process_characters(refs_n, hyps_n)
        per_utt = tuple(
            _score_one(r, h, wc, cc, lexicon)
            for r, h, wc, cc in zip(words.references, words.hypotheses, words.alignments, chars.alignments)
        )
        scores = _aggregate(per_utt, lexicon)
    clinical = aggregate([u.clinical for u in scores.per_utterance], groups)
    return replace(scores, clinical=clinical, groups=groups)


def _sum(rates) -> ErrorRate:
    total = ErrorRate()
    for r in rates:
        total = total + r
    return total


def _aggregate(per_utt: tuple[UtteranceScore, ...], lexicon: Lexicon | None) -> Scores:
    wer, cer = _sum(u.words for u in per_utt), _sum(u.chars for u in per_utt)
    if lexicon is None:
        return Scores(len(per_utt), wer, cer, per_utterance=per_utt)
    terms = TermScores(*(sum(getattr(u, k) for u in per_utt) for k in ("term_ref", "term_hyp", "term_hits")))
    return Scores(
        len(per_utt), wer, cer, _sum(u.biased for u in per_utt), _sum(u.unbiased for u in per_utt),
        terms, _term_table(per_utt, lexicon), per_utt,
    )  # fmt: skip


def _term_table(per_utt: Sequence[UtteranceScore], lexicon: Lexicon) -> tuple[TermRow, ...]:
    occurrences, hits, false_pos = Counter(), Counter(), Counter()
    renderings: dict[str, Counter] = defaultdict(Counter)
    for u in per_utt:
        false_pos.update(u.false_positives)
        for o in u.outcomes:
            occurrences[o.term] += 1
            hits[o.term] += o.hit
            if not o.hit:
                renderings[o.term][o.rendering] += 1
    rows = [
        TermRow(
            term,
            lexicon.display.get(term, term),
            occurrences[term],
            hits[term],
            false_pos[term],
            tuple(renderings[term].most_common(TOP_RENDERINGS)),
        )
        for term in set(occurrences) | set(false_pos)
    ]
    rows.sort(key=lambda r: (-r.misses, -r.occurrences, r.term))
    return tuple(rows)


# ------------------------------------------------------------------------------- before / after


@dataclass(frozen=True)
class TermChange:
    """One term, before and after adaptation, on the same references."""

    term: str  # scoring form
    display: str
    occurrences: int
    misses_before: int
    misses_after: int
    wrong_renderings_after: tuple[tuple[str, int], ...]

    @property
    def fixed(self) -> int:
        """Misses removed (negative: the term got worse)."""
        return self.misses_before - self.misses_after

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["wrong_renderings_after"] = [{"text": t, "count": c} for t, c in self.wrong_renderings_after]
        return {**out, "fixed": self.fixed}


def compare_terms(before: Scores, after: Scores) -> tuple[TermChange, ...]:
    """Per-term misses before and after, most fixed first, those that got worse last."""
    rows_b = {r.term: r for r in before.per_term}
    rows_a = {r.term: r for r in after.per_term}
    changes = []
    for term in set(rows_b) | set(rows_a):
        rb, ra = rows_b.get(term), rows_a.get(term)
        row = rb or ra
        if not row.occurrences:
            continue
        changes.append(TermChange(
            term, row.display, row.occurrences, rb.misses if rb else 0, ra.misses if ra else 0,
            ra.wrong_renderings if ra else (),
        ))  # fmt: skip
    changes.sort(key=lambda c: (-c.fixed, -c.occurrences, c.term))
    return tuple(changes)
