"""pipeline.text and pipeline.scoring_form: dictation formatting, the spoken form for synthesis, the scoring
normalizer; lexicons."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.errors import DictuneError
from pipeline.lexicon import Lexicon, TermMatch, load_lexicon
from pipeline.scoring_form import ScoringNormalizer, normalize_for_scoring
from pipeline.text import format_dictation, to_spoken

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data_manifests" / "radiology_demo" / "corpus"

# ------------------------------------------------------------------------------- scoring normalizer

NORMALIZER_CASES = [
    # units are kept (Whisper's normalizer drops "mm" as a filler) and unified
    ("5 mm nodule", "5 mm nodule"),
    ("five millimeter nodule", "5 mm nodule"),
    ("5mm nodule", "5 mm nodule"),
    ("5-mm nodule", "5 mm nodule"),
    ("Four millimetres.", "4 mm"),
    ("three cm", "3 cm"),
    ("250 mL", "250 ml"),
    ("two hundred fifty milliliters", "250 ml"),
    ("20 cubic centimeters", "20 cc"),
    ("145 cm/s", "145 cm per second"),
    ("hmm, 5 mm", "5 mm"),
    # vertebral levels: one form, never "c 5 c 6"
    ("C5-C6", "c5-c6"),
    ("C5 C6", "c5-c6"),
    ("c5-6", "c5-c6"),
    ("at L4L5 broad", "at l4-l5 broad"),  # glued, as base tiny.en writes it
    ("T12L1 and L5S1", "t12-l1 and l5-s1"),
    ("C5 to C6", "c5-c6"),
    ("C 5 C 6", "c5-c6"),
    ("c five c six", "c5-c6"),
    ("C5–C6", "c5-c6"),
    ("L five S one", "l5-s1"),
    ("l four five", "l4-l5"),
    ("T12-L1", "t12-l1"),
    ("at L4 and L5", "at l4 and l5"),
    ("disc bulge at L4 5 mm", "disc bulge at l4 5 mm"),
    ("T2-weighted", "t2 weighted"),
    # dimensions and numbers
    ("1.2 x 0.8 cm", "1.2 x 0.8 cm"),
    ("1.2 by 0.8 centimeters", "1.2 x 0.8 cm"),
    ("1.2x0.8cm", "1.2 x 0.8 cm"),
    ("one point two by zero point eight centimeters", "1.2 x 0.8 cm"),
    ("1.4 × 1.1 × 1.2 cm", "1.4 x 1.1 x 1.2 cm"),
    (".8 cm", "0.8 cm"),
    ("point eight centimeters", "0.8 cm"),
    ("1,500 ml", "1500 ml"),
    ("4.5 cm.", "4.5 cm"),
    ("50-69% stenosis", "50 to 69 percent stenosis"),
    ("fifty to sixty-nine percent stenosis", "50 to 69 percent stenosis"),
    ("3rd ventricle", "third ventricle"),
    ("grade I anterolisthesis", "grade 1 anterolisthesis"),
    ("grade one anterolisthesis", "grade 1 anterolisthesis"),
    ("Chiari type II", "chiari type 2"),
    ("I see it", "i see it"),
    # hyphens, prefixes, spelling, contractions, fillers
    ("Ground-glass opacity", "ground glass opacity"),
    ("groundglass opacity", "ground glass opacity"),
    ("non-calcified nodule", "noncalcified nodule"),
    ("non calcified nodule", "noncalcified nodule"),
    ("post operative changes", "postoperative changes"),
    ("Haemorrhage in the oesophagus", "hemorrhage in the esophagus"),
    ("grey-white differentiation", "gray white differentiation"),
    ("x-ray", "x ray"),
    ("follow-up", "follow up"),
    ("The lesion isn't enhancing.", "the lesion is not enhancing"),
    ("There's no effusion", "there is no effusion"),
    ("Baker's cyst", "baker cyst"),
    ("Um, the uh nodule", "the nodule"),
    # dictation commands go, the organ and the time span stay
    ("No pleural effusion period", "no pleural effusion"),
    ("No pleural effusion. Period.", "no pleural effusion"),
    ("no effusion comma no pneumothorax period new paragraph", "no effusion no pneumothorax"),
    ("The colon is unremarkable.", "the colon is unremarkable"),
    ("impression colon no acute findings", "impression no acute findings"),
    ("over a period of time", "over a period of time"),
    ("ileus", "ileus"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZER_CASES)
def test_normalizer_cases(text, expected):
    assert normalize_for_scoring(text) == expected


EQUIVALENT_FORMS = [
    ["four millimeters", "4 mm", "4 millimeter", "4mm", "4-mm", "4 millimetres"],
    ["C5-C6", "C5 C6", "c5-6", "C5 to C6", "C 5 C 6", "c five c six", "C5/C6"],
    ["1.2 x 0.8 cm", "1.2 by 0.8 centimeters", "1.2x0.8 cm", "1.2 × 0.8 cm"],
    ["ground-glass", "ground glass", "Ground Glass"],
    ["Bosniak 2 cyst", "Bosniak two cyst", "Bosniak II cyst"],
]


@pytest.mark.parametrize("forms", EQUIVALENT_FORMS, ids=lambda forms: forms[0])
def test_normalizer_unifies_forms(forms):
    assert len({normalize_for_scoring(f) for f in forms}) == 1


def test_normalizer_keeps_what_whisper_drops():
    # Whisper's EnglishTextNormalizer: "5 mm nodule" -> "5 nodule", "C5-C6" -> "c 5 c 6"
    assert normalize_for_scoring("5 mm nodule at C5-C6") == "5 mm nodule at c5-c6"


def test_normalizer_without_commands_keeps_command_words():
    assert ScoringNormalizer(commands=False)("no effusion period") == "no effusion period"
    assert normalize_for_scoring("no effusion period") == "no effusion"


def test_normalizer_is_idempotent():
    texts = [case for case, _ in NORMALIZER_CASES] + _corpus_sentences()
    for text in texts:
        once = normalize_for_scoring(text)
        assert normalize_for_scoring(once) == once, text


# ------------------------------------------------------------------------------- formatting

FORMAT_CASES = [
    # colon: the organ and the command
    ("the colon is unremarkable period", "The colon is unremarkable."),
    ("moderate stool throughout the colon period", "Moderate stool throughout the colon."),
    ("fluid-filled colon comma which is normal period", "Fluid-filled colon, which is normal."),
    ("sigmoid colon diverticulosis period", "Sigmoid colon diverticulosis."),
    ("impression colon no acute findings period", "Impression: No acute findings."),
    ("colon colon unremarkable period", "Colon: Unremarkable."),
    ("kidneys and adrenal glands colon unremarkable period", "Kidneys and adrenal glands: Unremarkable."),
    ("gallbladder colon Wall thickening period", "Gallbladder: Wall thickening."),
    ("impression colon colon cancer period", "Impression: Colon cancer."),
    ("both lungs are now clear colon no effusion period", "Both lungs are now clear: no effusion."),
    # period: the time span and the command
    ("stable over a period of time period", "Stable over a period of time."),
    ("in the postoperative period period", "In the postoperative period."),
    ("likely postoperative period", "Likely postoperative."),
    ("period of observation is advised period", "Period of observation is advised."),
    ("No acute findings. Period.", "No acute findings."),
    ("no acute findings period.", "No acute findings."),
    # line breaks, lists
    (
        "no effusion period new paragraph impression colon normal period",
        "No effusion.\n\nImpression: Normal.",
    ),
    ("a new line is seen in the right ij period", "A new line is seen in the right ij."),
    ("clear period new line heart normal period", "Clear.\nHeart normal."),
    (
        "impression colon new line number one no pneumothorax period new line number 2 stable nodule period",
        "Impression:\n1. No pneumothorax.\n2. Stable nodule.",
    ),
    ("grade one anterolisthesis period", "Grade one anterolisthesis."),
    ("impression colon number one clear period number two stable period", "Impression: 1. Clear. 2. Stable."),
    # other marks and spacing
    ("ground hyphen glass opacity open paren stable close paren period", "Ground-glass opacity (stable)."),
    ("effusion semicolon recommend follow hyphen up period", "Effusion; recommend follow-up."),
    ("is it new question mark", "Is it new?"),
    ("no  effusion , no pneumothorax .", "No effusion, no pneumothorax."),
    ("and slash or", "And/or"),
    # units, dimensions, levels
    ("a 4 millimeters nodule period", "A 4 mm nodule."),
    ("four millimeters nodule period", "4 mm nodule."),
    ("1 millimeter nodule", "1 mm nodule"),
    ("a 1.2 by 0.8 centimeters lesion", "A 1.2 x 0.8 cm lesion"),
    ("increased by 2 centimeters", "Increased by 2 cm"),
    ("145 centimeters per second", "145 centimeters per second"),
    ("several millimeters", "Several millimeters"),
    ("250 milliliters", "250 milliliters"),
    ("at L4 L5 and L5 S1 period", "At L4-L5 and L5-S1."),
    ("from L3 to L5 period", "From L3 to L5."),
    ("", ""),
]


@pytest.mark.parametrize(("spoken", "expected"), FORMAT_CASES)
def test_format_dictation(spoken, expected):
    assert format_dictation(spoken) == expected


def test_format_keeps_case_inside_sentences():
    assert format_dictation("recommend CT chest period mild Kerley B lines period") == (
        "Recommend CT chest. Mild Kerley B lines."
    )


# ------------------------------------------------------------------------------- spoken form

SPOKEN_CASES = [
    ("A 4 mm nodule.", "A 4 millimeters nodule period"),
    ("A 1 mm focus.", "A 1 millimeter focus period"),
    ("Lesion measures 1.2 x 0.8 cm.", "Lesion measures 1.2 by 0.8 centimeters period"),
    ("Disc bulge at L4-L5, mild.", "Disc bulge at L4 L5 comma mild period"),
    ("From L3 to L5.", "From L3 to L5 period"),
    (
        "Findings: Clear.\n\nImpression: Normal.",
        "Findings colon Clear period new paragraph Impression colon Normal period",
    ),
    (
        "Impression:\n1. No effusion.\n2. Stable.",
        "Impression colon new line number 1 No effusion period new line number 2 Stable period",
    ),
    (
        "Effusion; recommend CT (stable).",
        "Effusion semicolon recommend CT open paren stable close paren period",
    ),
    ("Ground-glass opacity.", "Ground-glass opacity period"),
    ("1. Clear. 2. Stable.", "number 1 Clear period number 2 Stable period"),
]


@pytest.mark.parametrize(("formatted", "spoken"), SPOKEN_CASES)
def test_to_spoken(formatted, spoken):
    assert to_spoken(formatted) == spoken


def test_to_spoken_without_commands():
    assert to_spoken("A 4 mm nodule at L4-L5, stable.\n\nNo effusion.", commands=False) == (
        "A 4 millimeters nodule at L4 L5, stable. No effusion."
    )
    assert "period" not in to_spoken("No effusion.", commands=False).split()


ROUND_TRIP_EXAMPLES = [
    "The colon is unremarkable.",
    "Moderate stool burden throughout the colon.",
    "Ventral hernia containing a loop of transverse colon, without obstruction.",
    "No change over a 2 year period.",
    "Findings: The lungs are clear. No pleural effusion.\n\nImpression: No acute findings.",
    "Impression:\n1. Stable 4 mm nodule.\n2. Mild disc bulge at L4-L5 and L5-S1.",
    "There is a 1.2 x 0.8 cm hypoattenuating lesion; recommend MRI (nonurgent).",
    "Peak velocity is 145 centimeters per second, suggesting 50 to 69 percent stenosis.",
    "Grade one anterolisthesis of L4 on L5, Bosniak two cyst, and Chiari one malformation.",
    "Postvoid residual of 250 milliliters. Retropulsion of 1 mm.",
]


@pytest.mark.parametrize("formatted", ROUND_TRIP_EXAMPLES)
def test_round_trip_examples(formatted):
    assert format_dictation(to_spoken(formatted)) == formatted


@pytest.mark.parametrize("formatted", [t for t in ROUND_TRIP_EXAMPLES if "\n" not in t])
def test_round_trip_examples_without_commands(formatted):
    # line breaks are not spoken without commands, so only single-paragraph texts come back whole
    assert format_dictation(to_spoken(formatted, commands=False)) == formatted


def _corpus_sentences() -> list[str]:
    path = CORPUS_DIR / "sentences.tsv"
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle, delimiter="\t")]


def _corpus_reports() -> list[str]:
    path = CORPUS_DIR / "reports.jsonl"
    if not path.exists():
        return []
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                report = json.loads(line)
                texts += [report[k] for k in ("findings", "impression") if isinstance(report.get(k), str)]
    return texts


@pytest.mark.parametrize("source", [_corpus_sentences, _corpus_reports], ids=["sentences", "reports"])
def test_round_trip_demo_corpus(source):
    texts = source()
    if not texts:
        pytest.skip(f"demo corpus file for {source.__name__} not written yet")
    for commands in (True, False):
        failures = [t for t in texts if format_dictation(to_spoken(t, commands=commands)) != t and
                    (commands or "\n" not in t)]  # fmt: skip
        assert not failures, f"{len(failures)} of {len(texts)} (commands={commands}), e.g. {failures[:3]}"


# ------------------------------------------------------------------------------- lexicon


def test_load_lexicon(tmp_path):
    path = tmp_path / "lexicon.txt"
    path.write_text(
        "# radiology terms\nPleural Effusion\n\nground-glass opacity  # hyphen or not\nground glass opacity\n"
        "ile\nC5-C6\nlower lobe\nright lower lobe\n",
        encoding="utf-8",
    )
    lexicon = load_lexicon(path)
    assert lexicon.terms == (
        "pleural effusion",
        "ground glass opacity",
        "ile",
        "c5-c6",
        "lower lobe",
        "right lower lobe",
    )
    assert lexicon.display["ground glass opacity"] == "ground-glass opacity"
    assert "pleural effusion" in lexicon and len(lexicon) == 6


def test_lexicon_find_whole_tokens_longest_first():
    lexicon = Lexicon(["ile", "lower lobe", "right lower lobe", "pleural effusion"])
    tokens = normalize_for_scoring(
        "Ileus. Right lower lobe and left lower lobe, small pleural effusion, ile."
    ).split()
    assert lexicon.find(tokens) == [
        TermMatch(1, 4, "right lower lobe"),
        TermMatch(6, 8, "lower lobe"),
        TermMatch(9, 11, "pleural effusion"),
        TermMatch(11, 12, "ile"),
    ]
    assert "ileus" not in {tokens[m.start] for m in lexicon.find(tokens)}


def test_lexicon_words_skip_stop_words():
    lexicon = Lexicon(["tree-in-bud", "Chiari one malformation"])
    assert lexicon.words == {"tree", "bud", "chiari", "malformation"}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), (b"# only a comment\n\n", "no terms"), (b"caf\xe9\n", "UTF-8")],
)
def test_load_lexicon_errors(tmp_path, content, message):
    path = tmp_path / "lexicon.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DictuneError, match=message):
        load_lexicon(path)


@pytest.mark.parametrize(
    "spoken, formatted",
    [
        # Whisper adds its own punctuation around the commands it hears
        ("tubes period. New paragraph. Impression colon number 1 stable.", "Tubes.\n\nImpression: 1. Stable."),
        ("Impression colon. Number 2. Stable period.", "Impression: 2. Stable."),
        ("number one, no acute findings period", "1. No acute findings."),
        ("Lungs colon, a spiculated mass period", "Lungs: A spiculated mass."),
        ("The sigmoid colon, which is redundant period", "The sigmoid colon, which is redundant."),
    ],
)
def test_format_absorbs_whisper_punctuation_around_commands(spoken, formatted):
    assert format_dictation(spoken) == formatted
