"""Final signed reports from dictated ones: what a group's archive pairs with each recording.

An archive does not hold verbatim transcripts. Between dictation and signature a report goes through
edits, and a few recordings are filed with the wrong report. `final_report(text, ...)` takes a report as
dictated verbatim and returns what was said (`dictated`, formatted text that synthesize reads aloud), the
final report (`report`) and the truth: for each whitespace token of the report whether it was dictated at
that place, and the list of edits. The edit kinds, each drawn once per report with its rate
(synthesize.final_reports; rates are per edited report, `share` is the share of reports edited at all):

    mismatch  the recording is filed with another report of the same exam type (nothing in it was dictated)
    scratch   a sentence is first dictated wrong (a number or a side changed), then "Scratch that." and
              the right sentence; the report holds the right one only
    macro     a normal-finding sentence is dictated as a macro name ("Macro normal heart.") and the report
              holds the macro's template text instead
    delete    a dictated sentence is deleted from the report when it is signed
    template  a template sentence nobody dictated is added (comparison, technique, attestation)
    header    a header paragraph is added at the top ("FINAL REPORT")
    reorder   the impression is moved before the findings
    number    a measurement is changed in the report after dictation (3.4 -> 3.8)

Every draw comes from a hash of (seed, report id, kind), so the result depends only on its inputs.
Template and macro text that would repeat a held-out (test) sentence is not used.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.tts.corpus import PARAGRAPH, split_sentences

EDIT_KINDS = ("mismatch", "scratch", "macro", "delete", "template", "header", "reorder", "number")
SCRATCH = "Scratch that."
MACRO_PREFIX = "Macro"
# (name dictated after "Macro", its template text, a pattern the replaced sentence must match)
MACROS = (
    ("normal heart", "Heart size is normal. There is no pericardial effusion.", r"\b(heart|cardiac|pericardial)\b"),
    ("normal bones", "No acute fracture or aggressive osseous lesion. Alignment is maintained.", r"\b(bones?|osseous)\b"),
    ("clear lungs", "The lungs are clear without focal consolidation. No pleural effusion or pneumothorax.", r"\blungs?\b"),
    ("normal abdomen", "The visualized upper abdomen is within normal limits.", r"\babdomen\b"),
    ("normal study", "No other acute abnormality is identified in the visualized structures.", r""),
)
NORMAL = re.compile(r"\b(normal|unremarkable|clear|no acute|no focal|intact)\b", re.IGNORECASE)
MACRO_MAX_WORDS = 14  # longer sentences say more than a normal-finding macro would
# (text, where): "top" = a paragraph after the title, "end" = a paragraph at the end
TEMPLATES = (
    ("Technique: Images were acquired according to the departmental protocol.", "top"),
    ("Comparison: None available.", "top"),
    ("I have personally reviewed the images and agree with the findings above.", "end"),
    ("Critical results were not identified at the time of this report.", "end"),
)
HEADERS = ("FINAL REPORT", "Diagnostic radiology report")
HEADING = re.compile(r"^((?:[A-Z][a-z]+ ?){1,4}:\s)")  # "Lungs: ", "Heart and mediastinum: "
SECTION = re.compile(r"^(Findings|Impression):", re.IGNORECASE)
NUMBER = re.compile(r"^(\d+)(?:\.(\d+))?([,.;:)]?)$")  # "5", "3.4", "12," (not list markers "1.")
LIST_MARKER = re.compile(r"(^|:\s)\d+\.$")  # a sentence that is only a list number
SIDES = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}


@dataclass(frozen=True)
class Edit:
    kind: str  # one of EDIT_KINDS
    where: str  # e.g. "paragraph 2, sentence 3" (no transcript text)


@dataclass(frozen=True)
class FinalReport:
    dictated: str  # formatted verbatim transcript of what was said (spoken commands aside)
    report: str  # the final signed report filed with the recording
    spoken: tuple[bool, ...]  # per whitespace token of `report`: dictated at this place of the report
    edits: tuple[Edit, ...]

    @property
    def edited(self) -> bool:
        return bool(self.edits)


Token = tuple[str, bool]  # a report token and whether it was dictated


def final_report(
    report_id: str,
    text: str,
    rates: dict[str, float],
    share: float,
    seed: int,
    others: Sequence[str] = (),
    forbidden: Callable[[str], bool] = lambda sentence: False,
) -> FinalReport:
    """The dictation and final report of one formatted report `text` (see the module docstring).

    `rates`: kind -> probability (EDIT_KINDS); `others`: reports of the same exam type a mismatched
    recording can be filed with; `forbidden(sentence)`: True for a sentence that must not be added."""
    from pipeline.tts.plan import unit

    dictated = [sentences(p) for p in text.split(PARAGRAPH)]
    if unit(seed, "final-edited", report_id) >= share:
        return _result(dictated, _as_report(dictated), [])
    draw = lambda kind: unit(seed, "final", kind, report_id) < rates.get(kind, 0.0)
    rng = random.Random(f"{seed}:{report_id}:final")
    if others and draw("mismatch"):
        other = others[int(unit(seed, "final-other", report_id) * len(others))]
        report = [[[(t, False) for t in s.split()] for s in sentences(p)] for p in other.split(PARAGRAPH)]
        return _result(dictated, report, [Edit("mismatch", "another report of the same exam type")])
    report = _as_report(dictated)
    edits: list[Edit] = []
    used: set[tuple[int, int]] = set()
    if draw("number"):
        edits += _change_number(report, rng, used)
    if draw("scratch"):
        edits += _scratch(dictated, rng, used)
    if draw("macro"):
        edits += _macro(dictated, report, rng, used, forbidden)
    if draw("delete"):
        edits += _delete(report, rng, used)
    if draw("template"):
        edits += _template(report, rng, forbidden)
    if draw("header"):
        report.insert(0, [[(t, False) for t in rng.choice(HEADERS).split()]])
        edits.append(Edit("header", "paragraph 1"))
    if draw("reorder"):
        edits += _reorder(report)
    return _result(dictated, report, edits)


def sentences(paragraph: str) -> list[str]:
    """pipeline.tts.corpus.split_sentences, with a list marker ("2.", "Impression: 1.") kept with its item."""
    out: list[str] = []
    for sentence in split_sentences(paragraph):
        if out and LIST_MARKER.search(out[-1]):
            out[-1] = f"{out[-1]} {sentence}"
        else:
            out.append(sentence)
    return out


def _as_report(dictated: list[list[str]]) -> list[list[list[Token]]]:
    return [[[(t, True) for t in s.split()] for s in p] for p in dictated]


def _result(dictated: list[list[str]], report: list[list[list[Token]]], edits: list[Edit]) -> FinalReport:
    paragraphs = [[s for s in p if s] for p in report]
    paragraphs = [p for p in paragraphs if p]
    text = PARAGRAPH.join(" ".join(" ".join(t for t, _ in s) for s in p) for p in paragraphs)
    spoken = tuple(flag for p in paragraphs for s in p for _, flag in s)
    said = PARAGRAPH.join(" ".join(p) for p in dictated if p)
    return FinalReport(said, text, spoken, tuple(edits))


def _body_sentences(report, used, test: Callable[[list[Token]], bool]) -> list[tuple[int, int]]:
    """(paragraph, sentence) of sentences after a report's section heading that pass `test`, unused."""
    out = []
    for p, paragraph in enumerate(report):
        if not paragraph or not SECTION.match(paragraph[0][0][0] if paragraph[0] else ""):
            continue  # the title paragraph, a header or a template paragraph
        for s, sentence in enumerate(paragraph):
            words = " ".join(t for t, _ in sentence)
            if (p, s) not in used and not SECTION.match(words) and test(sentence):
                out.append((p, s))
    return out


def _numbers(sentence: list[Token]) -> list[int]:
    """Token indices of measurements (not a list marker at the start of a sentence)."""
    return [i for i, (t, _) in enumerate(sentence) if NUMBER.match(t) and not (i == 0 and t.endswith("."))]


def _other_number(token: str, rng: random.Random) -> str:
    whole, frac, tail = NUMBER.match(token).groups()
    if frac is not None:
        digit = (int(frac[-1]) + rng.randint(1, 8)) % 10
        return f"{whole}.{frac[:-1]}{digit}{tail}"
    return f"{int(whole) + rng.randint(1, 3)}{tail}"


def _change_number(report, rng: random.Random, used) -> list[Edit]:
    places = _body_sentences(report, used, lambda s: bool(_numbers(s)))
    if not places:
        return []
    p, s = rng.choice(places)
    i = rng.choice(_numbers(report[p][s]))
    report[p][s][i] = (_other_number(report[p][s][i][0], rng), False)
    used.add((p, s))
    return [Edit("number", f"paragraph {p + 1}, sentence {s + 1}")]


def _scratch(dictated: list[list[str]], rng: random.Random, used) -> list[Edit]:
    """Say a sentence wrong first (a number or a side changed), then "Scratch that." and the right one."""
    as_tokens = [[[(t, True) for t in s.split()] for s in p] for p in dictated]
    test = lambda s: bool(_numbers(s)) or any(t.strip(",.;:") in SIDES for t, _ in s)
    places = _body_sentences(as_tokens, used, test)
    if not places:
        return []
    p, s = rng.choice(places)
    tokens = dictated[p][s].split()
    numbers = _numbers(as_tokens[p][s])
    if numbers:
        i = rng.choice(numbers)
        tokens[i] = _other_number(tokens[i], rng)
    else:
        i = next(k for k, t in enumerate(tokens) if t.strip(",.;:") in SIDES)
        word = tokens[i].strip(",.;:")
        tokens[i] = tokens[i].replace(word, SIDES[word])
    wrong = re.sub(r"[,;:]?$", "", " ".join(tokens).rstrip("."))  # cut off where the speaker stops
    dictated[p][s] = f"{wrong}. {SCRATCH} {dictated[p][s]}"
    used.add((p, s))
    return [Edit("scratch", f"paragraph {p + 1}, sentence {s + 1}")]


def _macro(dictated, report, rng: random.Random, used, forbidden) -> list[Edit]:
    def fits(sentence: list[Token]) -> bool:
        words = " ".join(t for t, _ in sentence)
        return len(sentence) <= MACRO_MAX_WORDS and bool(NORMAL.search(words)) and not _numbers(sentence)

    places = _body_sentences(report, used, fits)
    if not places:
        return []
    p, s = rng.choice(places)
    words = " ".join(t for t, _ in report[p][s])
    heading = HEADING.match(words)
    head = heading.group(1) if heading else ""
    macro = next(
        ((n, x) for n, x, pattern in MACROS
         if re.search(pattern, words, re.IGNORECASE) and not any(map(forbidden, split_sentences(x)))),
        None,
    )
    if macro is None:
        return []
    name, expansion = macro
    dictated[p][s] = f"{head}{MACRO_PREFIX} {name}."
    report[p][s] = [(t, True) for t in head.split()] + [(t, False) for t in expansion.split()]
    used.add((p, s))
    return [Edit("macro", f"paragraph {p + 1}, sentence {s + 1}")]


def _delete(report, rng: random.Random, used) -> list[Edit]:
    places = _body_sentences(report, used, lambda s: not HEADING.match(" ".join(t for t, _ in s)))
    if not places:
        return []
    p, s = rng.choice(places)
    report[p][s] = []
    used.add((p, s))
    return [Edit("delete", f"paragraph {p + 1}, sentence {s + 1}")]


def _template(report, rng: random.Random, forbidden) -> list[Edit]:
    choices = [(text, where) for text, where in TEMPLATES if not forbidden(text)]
    if not choices:
        return []
    text, where = rng.choice(choices)
    paragraph = [[(t, False) for t in text.split()]]
    if where == "top":
        first_section = next((i for i, p in enumerate(report) if p and p[0] and SECTION.match(p[0][0][0])), 0)
        report.insert(first_section, paragraph)
        return [Edit("template", f"paragraph {first_section + 1}")]
    report.append(paragraph)
    return [Edit("template", f"paragraph {len(report)}")]


def _reorder(report) -> list[Edit]:
    sections = [i for i, p in enumerate(report) if p and p[0] and SECTION.match(p[0][0][0])]
    impression = [i for i in sections if report[i][0][0][0].lower().startswith("impression")]
    findings = [i for i in sections if report[i][0][0][0].lower().startswith("findings")]
    if not impression or not findings or impression[0] < findings[0]:
        return []
    report.insert(findings[0], report.pop(impression[0]))
    return [Edit("reorder", "impression moved before findings")]
