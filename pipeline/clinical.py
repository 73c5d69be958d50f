"""Clinical errors of a transcript: a flipped negation, a changed side, a changed number, unit or level.

Word error rate weighs "the" like "no"; these rules count the few error kinds that change what a report
says. They read the scoring form (pipeline.scoring_form.normalize_for_scoring: lowercase, no
punctuation, "5 millimeters" -> "5 mm", spelled numbers as digits, levels as "c5-c6") and the word
alignment of reference and hypothesis that pipeline.metrics already computes (jiwer), so that the same
finding is compared on both sides. Each rule is symmetric: what the reference has and the hypothesis
lost counts the same as what the hypothesis added.

Negation (a cue on one side that the other side does not share for the same finding):
  * cues, longest first: before a finding ("no", "not", "without", "no evidence of", "negative for",
    "free of", "absence of", ...; NEGATION_BEFORE) or after it ("not seen", "is absent", "excluded",
    "ruled out", ...; NEGATION_AFTER). Phrases that look like a cue but are not one ("cannot be
    excluded", "not ruled out": uncertainty) are skipped (PSEUDO_NEGATION);
  * the scope of a cue: up to NEGATION_WINDOW words after it (before it for an after-cue), ended early
    by a conjunction such as "but", "however", "which" (SCOPE_END), by another cue, after a change word
    ("no interval change": only "change" is denied, not what follows) and, after a cue, by an article or
    "is" / "are" once a finding word is in scope ("no dilatation and | the duct is normal": the text has
    no punctuation left to end a sentence);
  * the finding of a cue: the word in its scope nearest to it that is not a stop word and that the
    alignment marks equal on both sides;
  * the cue is an error when that same word on the other side is in no cue's scope ("negation
    dropped" for a reference cue, "negation added" for a hypothesis cue). A cue with no finding in
    scope (the finding itself was misrecognized, which WER and the term metrics count) is not judged.
  So "no evidence of pneumothorax" vs "without pneumothorax" and "no pneumothorax is seen" vs
  "pneumothorax is not seen" count nothing; "no pneumothorax" vs "pneumothorax", "a new mass" vs "no
  new mass", "heart is not enlarged" vs "heart is enlarged" count one each.

Laterality: the side words "left", "right", "bilateral", "bilaterally" ("left-sided" is "left sided":
the side word is the same). "both" means bilateral when it stands against a side word of the other
side, but on its own ("both the liver and spleen") never counts.
Numbers, units and levels: a measurement is a number, or numbers joined by "x" ("1.2 x 0.8"), with the
unit right after it if any (mm, cm, ml, cc, mg, kg, percent, hounsfield units); a vertebral level is
"l4", "c5-c6" and so on (SPINE_LEVELS; "t1"/"t2" of an MRI sequence read the same and count the same).
For both kinds an item of the reference is compared with the hypothesis items at the aligned position
(their alignment columns overlap):
  * equal: no error. Measurements are equal with the same numbers and unit, or the same quantity in
    another unit of the same dimension ("0.5 cm" = "5 mm", "ml" = "cc");
  * different: one error, of kind "level" when a level is involved, "unit" when only the unit changed
    ("5 mm" -> "5 cm", "5 mm" -> "5"), else "number" ("3.4" -> "3.9", "5 mm" -> "6 cm");
  * nothing at the aligned position: the item was dropped (one error), unless the other side has an
    equal unmatched item elsewhere in the utterance (moved, "on the left" -> "left ..."). A hypothesis
    item that no reference item claimed was added, one error, with the same exception.
Every number counts, not only measurements with a unit: a changed series or image number is counted.

The errors found are counted per utterance, per report and per corpus in pipeline/clinical_counts.py.

Why rules and not medspacy (whose ConText cue lists these follow, after NegEx, Chapman et al. 2001):
medspacy needs spaCy < 3.8, which pins numpy < 2 and brings about 40 packages, and its ConText judges
one text with sentence boundaries and a list of target findings. The scoring form has neither, and the
question here is a comparison of two aligned texts, which the alignment answers directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.clinical_counts import ClinicalError
from pipeline.text import NUMBER_RE, SPINE_LEVELS

NEGATION_WINDOW = 6  # words in the scope of a negation cue (NegEx: 5 terms; one more for "the", "a")
SNIPPET_WORDS = 3  # words of context either side of an error in its snippets
NEGATION_BEFORE = (  # cues before the finding they deny
    "no", "not", "without", "never", "none", "neither", "nor", "denies", "denied",
    "no evidence of", "no evidence for", "no signs of", "no sign of", "no findings of", "no finding of",
    "without evidence of", "without signs of", "negative for", "free of", "absence of", "absent",
    "rather than", "no longer",
)  # fmt: skip
NEGATION_AFTER = (  # cues after the finding they deny
    "not seen", "not identified", "not visualized", "not visualised", "not present", "not demonstrated",
    "not appreciated", "not detected", "not noted", "not evident", "is absent", "are absent",
    "excluded", "ruled out", "is negative", "are negative",
)  # fmt: skip
PSEUDO_NEGATION = (  # look like cues, are not: uncertainty or emphasis
    "cannot be excluded", "can not be excluded", "cannot be ruled out", "can not be ruled out",
    "not be excluded", "not be ruled out", "not excluded", "not ruled out", "not only", "not necessarily",
    "no doubt",
)  # fmt: skip
SCOPE_END = {"but", "however", "although", "though", "except", "aside", "apart", "which", "whereas", "yet",
             "otherwise", "nevertheless", "still", "because", "secondary", "due", "there", "impression",
             "findings", "conclusion"}  # fmt: skip
SCOPE_LAST = {"change", "changes", "changed", "progression", "increase", "decrease"}  # scope ends after these
# after a finding in scope these words start a new phrase and end the scope
NEW_PHRASE = {"the", "a", "an", "this", "these", "those", "is", "are", "was", "were"}  # fmt: skip
STOP_WORDS = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "is", "are", "was",
              "were", "be", "been", "any", "some", "there", "this", "that", "these", "those", "as", "by",
              "seen", "identified", "present", "noted", "evidence", "definite", "definitive"}  # fmt: skip
LATERALITY = {"left": "left", "right": "right", "bilateral": "bilateral", "bilaterally": "bilateral"}
WEAK_LATERALITY = {"both": "bilateral"}  # counts only against a side word at the aligned position
UNITS = {  # unit -> (dimension, factor to the dimension's base unit)
    "mm": ("length", 1.0), "cm": ("length", 10.0), "ml": ("volume", 1.0), "cc": ("volume", 1.0),
    "mg": ("mass", 1.0), "kg": ("mass", 1e6), "percent": ("percent", 1.0), "hounsfield": ("density", 1.0),
}  # fmt: skip
UNIT_TAIL = {"hounsfield": "units"}  # two-word units: the second word belongs to the unit

_LEVEL_RE = re.compile(r"^([ctls]\d{1,2})(?:-([ctls]\d{1,2}))?$")
_SPINE = set(SPINE_LEVELS)


def _phrases(cues: Sequence[str]) -> dict[tuple[str, ...], int]:
    return {tuple(c.split()): len(c.split()) for c in cues}


_BEFORE, _AFTER, _PSEUDO = _phrases(NEGATION_BEFORE), _phrases(NEGATION_AFTER), _phrases(PSEUDO_NEGATION)
_MAX_CUE_WORDS = max(len(p) for p in (*_BEFORE, *_AFTER, *_PSEUDO))


# ------------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class _Alignment:
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    ref_col: tuple[int, ...]  # alignment column of each reference token
    hyp_col: tuple[int, ...]
    ref_to_hyp: dict[int, int]  # equal tokens only
    hyp_to_ref: dict[int, int]
    inserted: frozenset[int]  # columns of insertions

    @classmethod
    def build(cls, ref: Sequence[str], hyp: Sequence[str], ops) -> _Alignment:
        ref_col, hyp_col, equal = [0] * len(ref), [0] * len(hyp), {}
        inserted = frozenset(col for col, (op, _, _) in enumerate(ops) if op == "insert")
        for col, (op, i, j) in enumerate(ops):
            if i is not None:
                ref_col[i] = col
            if j is not None:
                hyp_col[j] = col
            if op == "equal":
                equal[i] = j
        return cls(tuple(ref), tuple(hyp), tuple(ref_col), tuple(hyp_col), equal, {j: i for i, j in equal.items()},
                   inserted)  # fmt: skip

    def side(self, ref_side: bool) -> tuple[tuple[str, ...], tuple[int, ...], dict[int, int]]:
        return (
            (self.ref, self.ref_col, self.ref_to_hyp)
            if ref_side
            else (self.hyp, self.hyp_col, self.hyp_to_ref)
        )

    def snippets(self, first_col: int, last_col: int) -> tuple[str, str]:
        lo, hi = first_col - SNIPPET_WORDS, last_col + SNIPPET_WORDS
        ref = " ".join(w for w, c in zip(self.ref, self.ref_col) if lo <= c <= hi)
        hyp = " ".join(w for w, c in zip(self.hyp, self.hyp_col) if lo <= c <= hi)
        return ref, hyp


def find_errors(ref: Sequence[str], hyp: Sequence[str], ops) -> tuple[ClinicalError, ...]:
    """Clinical errors of one utterance. ref, hyp: scoring-form tokens; ops: the word alignment as
    (op, reference index, hypothesis index) per column, op in equal | substitute | delete | insert."""
    align = _Alignment.build(ref, hyp, ops)
    found = _negation_errors(align) + _item_errors(align, _laterality) + _item_errors(align, _measurements)
    return tuple(error for _, error in sorted(found, key=lambda pair: pair[0]))


# ------------------------------------------------------------------------------- negation


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    after: bool  # denies what comes before it
    scope: tuple[int, ...]  # token indices, nearest to the cue first


def _cues(tokens: Sequence[str]) -> tuple[list[_Cue], set[int]]:
    """Negation cues with their scopes, and the indices of every cue or pseudo-cue word."""
    spans: list[tuple[int, int, str]] = []  # (start, end, before | after | pseudo)
    i = 0
    while i < len(tokens):
        for size in range(min(_MAX_CUE_WORDS, len(tokens) - i), 0, -1):
            words = tuple(tokens[i : i + size])
            kind = (
                "pseudo"
                if words in _PSEUDO
                else "after"
                if words in _AFTER
                else "before"
                if words in _BEFORE
                else ""
            )
            if kind:
                spans.append((i, i + size, kind))
                i += size
                break
        else:
            i += 1
    cue_words = {k for s, e, _ in spans for k in range(s, e)}
    cues = [_Cue(s, e, kind == "after", _scope(tokens, s, e, kind == "after", cue_words))
            for s, e, kind in spans if kind != "pseudo"]  # fmt: skip
    return cues, cue_words


def _scope(tokens: Sequence[str], start: int, end: int, after: bool, cue_words: set[int]) -> tuple[int, ...]:
    step, k = (-1, start - 1) if after else (1, end)
    scope: list[int] = []
    while 0 <= k < len(tokens) and len(scope) < NEGATION_WINDOW:
        if tokens[k] in SCOPE_END or k in cue_words:
            break
        if not after and tokens[k] in NEW_PHRASE and any(tokens[m] not in STOP_WORDS for m in scope):
            break  # "no biliary dilatation and | the duct is normal"
        scope.append(k)
        if not after and tokens[k] in SCOPE_LAST:
            break
        k += step
    return tuple(scope)


def _negation_errors(align: _Alignment) -> list[tuple[int, ClinicalError]]:
    cues = {side: _cues(align.side(side)[0]) for side in (True, False)}
    denied = {side: {k for cue in cues[side][0] for k in cue.scope} for side in (True, False)}
    errors = []
    for ref_side in (True, False):
        tokens, cols, counterpart = align.side(ref_side)
        for cue in cues[ref_side][0]:
            finding = next((k for k in cue.scope if tokens[k] not in STOP_WORDS and k in counterpart), None)
            if finding is None or counterpart[finding] in denied[not ref_side]:
                continue
            text = " ".join(tokens[cue.start : cue.end])
            change = f"{text} -> (none)" if ref_side else f"(none) -> {text}"
            span = [cols[cue.start], cols[cue.end - 1], cols[finding]]
            ref, hyp = align.snippets(min(span), max(span))
            errors.append((min(span), ClinicalError("negation", change, ref, hyp)))
    return errors


# ------------------------------------------------------------------------------- sides, numbers, levels


@dataclass(frozen=True)
class _Item:
    kind: str  # laterality | measurement | level
    start: int
    end: int
    value: Any  # side name; (numbers, unit or None); level text
    text: str
    weak: bool = False  # "both": compared only against an item of the other side at the same position


def _laterality(tokens: Sequence[str]) -> list[_Item]:
    items = []
    for k, word in enumerate(tokens):
        side = LATERALITY.get(word) or WEAK_LATERALITY.get(word)
        if side:
            items.append(_Item("laterality", k, k + 1, side, word, word in WEAK_LATERALITY))
    return items


def _measurements(tokens: Sequence[str]) -> list[_Item]:
    items, k = [], 0
    while k < len(tokens):
        level = _LEVEL_RE.match(tokens[k])
        if level and all(g is None or g in _SPINE for g in level.groups()):
            items.append(_Item("level", k, k + 1, tokens[k], tokens[k]))
        elif NUMBER_RE.match(tokens[k]):
            values, j = [float(tokens[k])], k + 1
            while j + 1 < len(tokens) and tokens[j] == "x" and NUMBER_RE.match(tokens[j + 1]):
                values.append(float(tokens[j + 1]))
                j += 2
            unit = tokens[j] if j < len(tokens) and tokens[j] in UNITS else None
            j += (unit is not None) + (
                unit in UNIT_TAIL and j + 1 < len(tokens) and tokens[j + 1] == UNIT_TAIL[unit]
            )
            items.append(_Item("measurement", k, j, (tuple(values), unit), " ".join(tokens[k:j])))
            k = j
            continue
        k += 1
    return items


def _same(a: _Item, b: _Item) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind != "measurement":
        return a.value == b.value
    (values_a, unit_a), (values_b, unit_b) = a.value, b.value
    if len(values_a) != len(values_b):
        return False
    if unit_a == unit_b:
        return values_a == values_b
    if unit_a is None or unit_b is None or UNITS[unit_a][0] != UNITS[unit_b][0]:
        return False
    fa, fb = UNITS[unit_a][1], UNITS[unit_b][1]
    return all(abs(x * fa - y * fb) <= 1e-9 * max(abs(x * fa), 1.0) for x, y in zip(values_a, values_b))


def _kind(ref: _Item | None, hyp: _Item | None) -> str:
    items = [i for i in (ref, hyp) if i is not None]
    if items[0].kind == "laterality":
        return "laterality"
    if any(i.kind == "level" for i in items):
        return "level"
    if ref is not None and hyp is not None and ref.value[0] == hyp.value[0]:
        return "unit"
    return "number"


def _joined(items: list[_Item]) -> _Item:
    """Several hypothesis items against one reference item ("1.5 cm" -> "1 5 cm"): one error, all shown."""
    if len(items) == 1:
        return items[0]
    return _Item(
        items[-1].kind, items[0].start, items[-1].end, items[-1].value, " ".join(i.text for i in items)
    )


def _item_errors(align: _Alignment, parse) -> list[tuple[int, ClinicalError]]:
    """Compare the items of both sides at aligned positions (the rules in the module docstring)."""
    ref_items, hyp_items = parse(align.ref), parse(align.hyp)

    def cols(item: _Item, ref_side: bool) -> tuple[int, int]:
        col = align.ref_col if ref_side else align.hyp_col
        return col[item.start], col[item.end - 1]

    def reach(item: _Item) -> tuple[int, int]:  # a reference item's columns and the insertions beside them
        lo, hi = cols(item, True)
        while lo - 1 in align.inserted:
            lo -= 1
        while hi + 1 in align.inserted:
            hi += 1
        return lo, hi

    pairs: list[tuple[_Item | None, _Item | None]] = []
    claimed: set[int] = set()
    lone_ref: list[_Item] = []
    for r in ref_items:
        r_lo, r_hi = reach(r)
        over = [
            k for k, h in enumerate(hyp_items) if not (cols(h, False)[1] < r_lo or cols(h, False)[0] > r_hi)
        ]
        claimed.update(over)
        if not over:
            lone_ref.append(r)
        elif not any(_same(r, hyp_items[k]) for k in over) and not (
            r.weak and all(hyp_items[k].weak for k in over)
        ):
            pairs.append((r, _joined([hyp_items[k] for k in over])))
    lone_hyp = [h for k, h in enumerate(hyp_items) if k not in claimed]
    for r in lone_ref:
        moved = next((h for h in lone_hyp if _same(r, h)), None)
        if moved is not None:
            lone_hyp.remove(moved)
        elif not r.weak:
            pairs.append((r, None))
    pairs += [(None, h) for h in lone_hyp if not h.weak]
    errors = []
    for r, h in pairs:
        span = [c for item, side in ((r, True), (h, False)) if item is not None for c in cols(item, side)]
        ref, hyp = align.snippets(min(span), max(span))
        change = f"{r.text if r else '(none)'} -> {h.text if h else '(none)'}"
        errors.append((min(span), ClinicalError(_kind(r, h), change, ref, hyp)))
    return errors
