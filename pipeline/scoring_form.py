"""The scoring form of dictation text: what WER and the other metrics compare.

    formatted  "The colon is unremarkable.\\n\\nImpression: No acute findings."
    scoring    "the colon is unremarkable impression no acute findings"         normalize_for_scoring()

Spoken dictation commands are interpreted first (pipeline.text.format_dictation). The scoring form is
domain-safe where Whisper's EnglishTextNormalizer is not: it keeps units ("5 mm"), vertebral levels
("c5-c6") and decimal measurements, and makes spelled and written forms agree (spelling variants are in
pipeline/data/spelling.json).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from pipeline.text import NUMBER_RE, SPINE_INDEX, format_dictation

SPELLING_FILE = Path(__file__).parent / "data" / "spelling.json"

FILLERS = {"uh", "um", "uhm", "umm", "uhh", "er", "erm", "ah", "hmm", "hm", "mhm"}  # never "mm"
UNITS = {"mm": "mm", "millimeter": "mm", "millimeters": "mm", "cm": "cm", "centimeter": "cm",
         "centimeters": "cm", "ml": "ml", "milliliter": "ml", "milliliters": "ml", "cc": "cc",
         "cm3": "cc", "percent": "percent", "hu": "hounsfield units", "mg": "mg", "milligram": "mg",
         "milligrams": "mg", "kg": "kg", "kilogram": "kg", "kilograms": "kg"}  # fmt: skip
UNIT_BIGRAMS = {("cubic", "centimeter"): "cc", ("cubic", "centimeters"): "cc", ("per", "cent"): "percent"}
ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "4th": "fourth", "5th": "fifth", "6th": "sixth",
            "7th": "seventh", "8th": "eighth", "9th": "ninth", "10th": "tenth", "11th": "eleventh",
            "12th": "twelfth"}  # fmt: skip
ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "vii": "7", "viii": "8"}
ROMAN_CONTEXT = {"grade", "type", "stage", "class", "chiari", "bosniak", "tanner", "zone", "segment",
                 "level", "cranial", "nerve", "lirads", "birads", "tirads", "category"}  # fmt: skip
PREFIXES = {"non", "pre", "post", "peri", "intra", "extra", "hypo", "hyper", "sub", "trans", "retro", "multi",
            "semi", "inter", "infra", "supra", "para", "micro", "macro", "pseudo", "anti", "bi"}  # fmt: skip
LEVEL_CONNECTORS = {"to", "through", "thru"}
CONTRACTIONS = {"can't": "can not", "won't": "will not", "shan't": "shall not", "let's": "let us",
                "it's": "it is", "that's": "that is", "there's": "there is", "here's": "here is",
                "what's": "what is", "where's": "where is", "who's": "who is", "he's": "he is",
                "she's": "she is"}  # fmt: skip
CONTRACTION_SUFFIXES = {
    "n't": " not",
    "'re": " are",
    "'ve": " have",
    "'ll": " will",
    "'m": " am",
    "'d": " would",
}
_GLUED_LEVELS_RE = re.compile(r"^([ctls]\d{1,2})([ctls]\d{1,2})$")


@functools.lru_cache(maxsize=1)
def _spelling_map() -> dict[str, tuple[str, ...]]:
    with open(SPELLING_FILE, encoding="utf-8") as handle:
        data = json.load(handle)
    merged = {**data["british_american"], **data["variants"]}
    return {key: tuple(value.split()) for key, value in merged.items()}


def _expand_contractions(text: str) -> str:
    text = re.sub(r"\b(\w+'\w+)\b", lambda m: CONTRACTIONS.get(m.group(1), m.group(1)), text)
    for suffix, expansion in CONTRACTION_SUFFIXES.items():
        text = re.sub(rf"(\w){suffix}\b", rf"\1{expansion}", text)
    return re.sub(r"(\w)'s\b|(\w)s'(?!\w)", lambda m: m.group(1) or m.group(2) + "s", text)  # possessive


def _split_numbers_and_units(text: str) -> str:
    text = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", text)  # 1,000 -> 1000
    text = re.sub(r"(?<![\w.])\.(\d)", r"0.\1", text)  # .8 -> 0.8
    text = re.sub(r"\b([ctls])(\d{1,2})\s*[-/]\s*(\d{1,2})\b", r"\1\2 \1\3", text)  # c5-6 -> c5 c6
    text = re.sub(r"(\d)\s*[x×*]\s*(?=\d)", r"\1 x ", text)  # 1.2x0.8 -> 1.2 x 0.8
    text = re.sub(r"\b(cm|mm)\s*/\s*(s|sec)\b", r"\1 per second", text)
    text = re.sub(r"(\d)\s*%", r"\1 percent", text)
    text = re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)(?![\w.])", r"\1 to \2", text)  # 50-69
    return re.sub(r"(\d)(mm|cm|ml|cc|mg|kg|hu)\b", r"\1 \2", text)  # 4mm -> 4 mm


def _strip_punctuation(text: str) -> str:
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points only
    text = text.replace("'", "")
    return re.sub(r"[^\w\s.]|_", " ", text)


def _words_to_digits(text: str) -> str:
    from text_to_num import alpha2digit

    return alpha2digit(text, "en", threshold=0)


def _map_tokens(tokens: list[str]) -> list[str]:
    """Fillers, spelling variants, ordinals, 'point 8', roman numerals after 'grade'/'type', prefixes
    written apart ('non calcified' -> 'noncalcified'), units."""
    spelling, out = _spelling_map(), []
    for token in tokens:
        if token in FILLERS:
            continue
        token = ORDINALS.get(token, token)
        for word in spelling.get(token, (token,)):
            bigram = (out[-1], word) if out else None
            if bigram in UNIT_BIGRAMS:
                out[-1] = UNIT_BIGRAMS[bigram]
            elif (
                word.isdigit()
                and out
                and out[-1] == "point"
                and not (len(out) > 1 and NUMBER_RE.match(out[-2]))
            ):
                out[-1] = f"0.{word}"
            elif word in ROMAN and out and out[-1] in ROMAN_CONTEXT:
                out.append(ROMAN[word])
            elif out and out[-1] in PREFIXES and word.isalpha():
                out[-1] += word  # 'non calcified', 'non-calcified' -> 'noncalcified'
            else:
                out.extend(UNITS.get(word, word).split())
    return out


def _join_numbers(tokens: list[str]) -> list[str]:
    """Dimensions ('4 by 3' -> '4 x 3') and vertebral levels ('c 5 c 6', 'l4 5', 'c5 to c6' -> 'c5-c6')."""
    merged: list[str] = []
    for token in tokens:  # letter + number -> level
        glued = _GLUED_LEVELS_RE.match(token)  # 'l4l5' -> 'l4', 'l5' (joined below when ascending)
        if glued and glued.group(1) in SPINE_INDEX and glued.group(2) in SPINE_INDEX:
            merged.extend(glued.groups())
        elif merged and merged[-1] in ("c", "t", "l", "s") and f"{merged[-1]}{token}" in SPINE_INDEX:
            merged[-1] += token
        else:
            merged.append(token)
    out: list[str] = []
    for k, token in enumerate(merged):
        prev = out[-1] if out else ""
        nxt = merged[k + 1] if k + 1 < len(merged) else ""
        if token in ("by", "x") and NUMBER_RE.match(prev) and NUMBER_RE.match(nxt):
            out.append("x")
        elif token.isdigit() and prev in SPINE_INDEX and nxt not in UNITS.values():
            short = f"{prev[0]}{token}"
            if SPINE_INDEX.get(short, -1) == SPINE_INDEX[prev] + 1:
                out[-1] = f"{prev}-{short}"
            else:
                out.append(token)
        elif token in SPINE_INDEX and prev in SPINE_INDEX and SPINE_INDEX[token] > SPINE_INDEX[prev]:
            out[-1] = f"{prev}-{token}"
        elif (token in SPINE_INDEX and len(out) > 1 and prev in LEVEL_CONNECTORS and out[-2] in SPINE_INDEX
              and SPINE_INDEX[token] > SPINE_INDEX[out[-2]]):  # fmt: skip
            out[-2:] = [f"{out[-2]}-{token}"]
        else:
            out.append(token)
    return out


@dataclass(frozen=True)
class ScoringNormalizer:
    """Callable str -> str giving the domain-safe scoring form (see the module docstring).

    Steps: dictation commands interpreted (format_dictation), lowercase, contractions expanded,
    numbers and units split and unified ("4mm", "four millimeters" -> "4 mm"), punctuation removed but
    decimal points kept, spelled numbers -> digits, spelling variants, fillers dropped, dimensions
    ("by" -> "x"), vertebral levels ("c5-c6") and hyphenated words ("ground glass") unified.
    """

    commands: bool = True  # interpret spoken dictation commands ("period", "new line") before scoring

    def __call__(self, text: str) -> str:
        if self.commands:
            text = format_dictation(text)
        text = unicodedata.normalize("NFKC", text).lower()
        text = text.translate(str.maketrans({"’": "'", "‘": "'", "–": "-", "—": "-", "−": "-", "×": " x "}))
        text = _split_numbers_and_units(_expand_contractions(text))
        text = _words_to_digits(_strip_punctuation(text))
        text = _split_numbers_and_units(text)
        return " ".join(_join_numbers(_map_tokens(text.split())))


normalize_for_scoring = ScoringNormalizer()
