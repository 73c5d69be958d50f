"""Dictation text in three forms (the lexicon of domain terms is in pipeline/lexicon.py).

    spoken     "the colon is unremarkable period new paragraph impression colon no acute findings period"
    formatted  "The colon is unremarkable.\\n\\nImpression: No acute findings."      format_dictation()
    scoring    "the colon is unremarkable impression no acute findings"              normalize_for_scoring()

`to_spoken()` goes from formatted back to spoken (what the speech synthesizer reads).

Command words that are also nouns ("colon", "period", "dash", and "line" in "new line") are formatting
only in a context where the noun cannot stand. `_is_noun_use` decides, first rule that fires:
  1. the word before is a determiner or a modifier of that noun ("the colon", "sigmoid colon");
  2. a lowercase command word followed by a Capitalized word: the command ("gallbladder colon Wall
     thickening"; the synthesizer's spoken form keeps the case of the formatted text);
  3. the word after continues the noun ("colon is", "period of", "colon cancer");
  4. the word before is a report heading ("impression colon ..."): the command;
  5. the same word follows ("colon colon unremarkable", "a 2 year period period"): the first is the noun;
  6. after a weak modifier ("postoperative", "year"): the noun when a determiner opens the phrase ("a 2
     year period", "the postoperative period") or a word continues it; else the command ("stable for
     1 year period", "likely postoperative period");
  7. "colon" followed by punctuation or another command ("colon, which", "colon period"): the noun,
     except within the first words of a line or sentence ("Lungs colon, a mass": the recognizer's
     own comma after a spoken heading colon);
  8. at the start of a sentence: the noun ("Period of observation"), unless the word stands alone
     before punctuation or the end ("... findings. Period."): then it is the command, spoken and also
     punctuated by the recognizer;
  9. otherwise: the command.
"new line" / "next line" is a command unless a determiner precedes it ("a new line") or a word that
continues the noun follows ("new line tip").

The scoring form is domain-safe where Whisper's EnglishTextNormalizer is not: it keeps units ("5 mm"),
vertebral levels ("c5-c6") and decimal measurements, and makes spelled and written forms agree.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SPELLING_FILE = Path(__file__).parent / "data" / "spelling.json"

# ------------------------------------------------------------------------------- dictation commands

COMMANDS: dict[tuple[str, ...], str] = {
    ("new", "paragraph"): "\n\n", ("next", "paragraph"): "\n\n",
    ("new", "line"): "\n", ("next", "line"): "\n", ("newline",): "\n",
    ("period",): ".", ("full", "stop"): ".", ("comma",): ",", ("colon",): ":",
    ("semicolon",): ";", ("semi", "colon"): ";", ("question", "mark"): "?",
    ("exclamation", "point"): "!", ("exclamation", "mark"): "!",
    ("open", "paren"): "(", ("open", "parenthesis"): "(", ("left", "paren"): "(",
    ("close", "paren"): ")", ("close", "parenthesis"): ")", ("right", "paren"): ")",
    ("hyphen",): "-", ("dash",): "-", ("slash",): "/", ("forward", "slash"): "/",
}  # fmt: skip
MAX_COMMAND_WORDS = 2
NOUN_COMMANDS = {("colon",), ("period",), ("dash",)}
LINE_COMMANDS = {("new", "line"), ("next", "line")}
SENTENCE_END = ".?!"
MARK_STRENGTH = {",": 1, ";": 2, ":": 3, ".": 4, "?": 4, "!": 4}  # of two adjacent marks the stronger stays
PUNCT_FIRST_WORDS = {
    "period",
    "full",
    "comma",
    "colon",
    "semicolon",
    "semi",
    "question",
    "close",
    "new",
    "next",
}

DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "its", "his", "her", "their", "our",
               "each", "every", "any", "no", "same", "whole", "entire", "remaining", "residual"}  # fmt: skip
ARTICLES = {"a", "an", "the", "this", "that", "these", "those"}
NOUN_PRECEDERS = {  # per command word: the noun follows these ("sigmoid colon", "throughout colon")
    "colon": DETERMINERS | {
        "sigmoid", "transverse", "ascending", "descending", "rectosigmoid", "redundant", "proximal",
        "distal", "mid", "right", "left", "of", "in", "into", "within", "throughout", "involving", "along",
        "across", "visualized", "decompressed", "distended", "collapsed",
    },
    "period": DETERMINERS,
    "dash": DETERMINERS,
}  # fmt: skip
WEAK_NOUN_PRECEDERS = {  # "a 2 year period", but "stable for 1 year period" (sentence end) is the command
    "time", "waiting", "observation", "interval", "postoperative", "perioperative", "postpartum",
    "neonatal", "perinatal", "refractory", "latent", "incubation", "recovery", "short", "brief", "long",
    "prolonged", "extended", "day", "week", "month", "year", "follow-up",
}  # fmt: skip
DETERMINER_WINDOW = 3  # words looked back for "a"/"the" before a weak modifier: "a 2 year period"
NOUN_FOLLOWERS = {"is", "are", "was", "were", "of", "and", "or", "with", "without", "shows", "show",
                  "demonstrates", "appears", "appear", "wall", "walls", "cancer", "carcinoma", "mass",
                  "lesion", "which", "that", "has", "have", "contains", "loop", "loops"}  # fmt: skip
LINE_FOLLOWERS = {"is", "was", "in", "placed", "placement", "tip", "terminates", "courses", "projects",
                  "extends", "with", "has", "and", "seen", "noted", "insertion", "position"}  # fmt: skip
HEADING_WORDS = {"impression", "impressions", "findings", "finding", "comparison", "technique", "indication",
                 "history", "conclusion", "conclusions", "recommendation", "recommendations", "procedure",
                 "examination", "exam", "result", "results", "note", "addendum"}  # fmt: skip
HEADING_MAX_WORDS = 4  # a colon after at most this many words opening a line ends a heading
LIST_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
              "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")  # fmt: skip
LIST_NUMBERS = {word: number for number, word in enumerate(LIST_WORDS, start=1)}

UNIT_ABBREVIATIONS = {"millimeter": "mm", "millimeters": "mm", "millimetre": "mm", "millimetres": "mm",
                      "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm"}  # fmt: skip
UNIT_SPOKEN = {"mm": ("millimeter", "millimeters"), "cm": ("centimeter", "centimeters")}
NUMBER_WORDS = set(LIST_NUMBERS) | {"zero", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                                    "ninety", "hundred", "thousand", "point", "oh"}  # fmt: skip

_TOKEN_RE = re.compile(
    r"\n\n|\n|(?<![\w.])\.\d+|\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\w)|[\w'’]+(?:[-./][\w'’]+)*|[^\w\s]"
)
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
_LEVEL_TOKEN_RE = re.compile(r"^([CTLSctls])(\d{1,2})$")
_GLUED_LEVELS_RE = re.compile(r"^([ctls]\d{1,2})([ctls]\d{1,2})$")
_LEVEL_PAIR_RE = re.compile(r"^([CTLSctls]\d{1,2})-([CTLSctls]\d{1,2})$")
SPINE_LEVELS = ([f"c{i}" for i in range(1, 8)] + [f"t{i}" for i in range(1, 13)]
                + [f"l{i}" for i in range(1, 6)] + [f"s{i}" for i in range(1, 6)])  # fmt: skip
_SPINE_INDEX = {name: i for i, name in enumerate(SPINE_LEVELS)}


def _tokenize(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r"\s*\n\s*\n\s*", "\n\n", text)
    text = re.sub(r" *\n *", "\n", text)
    return _TOKEN_RE.findall(text)


def _is_word(token: str | None) -> bool:
    return bool(token) and (token[0].isalnum() or token[0] in "'’_")


def _mark_kind(mark: str) -> str:
    if mark in ("\n", "\n\n"):
        return "break"
    return {"(": "open", ")": "close", "-": "join", "/": "join"}.get(mark, "punct")


def _match_command(tokens: Sequence[str], i: int) -> tuple[str, ...] | None:
    for size in range(MAX_COMMAND_WORDS, 0, -1):
        words = tuple(t.lower() for t in tokens[i : i + size])
        if len(words) == size and words in COMMANDS:
            return words
    return None


def _is_noun_use(words: tuple[str, ...], spoken: str, items: list[tuple[str, str]], nxt: str | None) -> bool:
    """True when a command word is meant as the noun; the rules are in the module docstring."""
    prev = items[-1] if items else None
    prev_word = prev[1].lower() if prev and prev[0] == "word" else None
    nxt_low = nxt.lower() if nxt else None
    if words in LINE_COMMANDS:
        return prev_word in DETERMINERS or nxt_low in LINE_FOLLOWERS
    if words not in NOUN_COMMANDS:
        return False
    nxt_is_mark = nxt is not None and not _is_word(nxt)
    nxt_is_boundary = nxt is None or nxt_is_mark or nxt_low in PUNCT_FIRST_WORDS
    if prev_word in NOUN_PRECEDERS[words[0]]:
        return True
    if spoken.islower() and nxt is not None and nxt[:1].isupper() and nxt[1:].islower():
        return False  # "gallbladder colon Wall thickening": a capitalized word starts what follows
    if nxt_low in NOUN_FOLLOWERS:
        return True
    if prev_word in HEADING_WORDS:
        return False
    if nxt_low == words[0]:
        return True
    if prev_word in WEAK_NOUN_PRECEDERS:
        return not nxt_is_boundary or _determiner_before(items)
    if words == ("colon",) and nxt in (",", ".") and 0 < _words_since_start(items) <= HEADING_MAX_WORDS:
        return False  # "Lungs colon, a mass": Whisper's own comma after a spoken heading colon
    if words == ("colon",) and nxt is not None and nxt_is_boundary:
        return True
    at_start = (
        prev is None or prev[0] in ("break", "list") or (prev[0] == "punct" and prev[1] in SENTENCE_END)
    )
    if at_start:
        return not (nxt is None or nxt_is_mark)
    return False


def _words_since_start(items: list[tuple[str, str]]) -> int:
    """Words since the start of the line or sentence (the start counts as 0 words)."""
    count = 0
    for kind, text in reversed(items):
        if kind == "word":
            count += 1
        elif kind in ("break", "list") or (kind == "punct" and text in SENTENCE_END):
            break
    return count


def _determiner_before(items: list[tuple[str, str]]) -> bool:
    """An article among the last DETERMINER_WINDOW words, within the clause ('a 2 year ...')."""
    for kind, text in reversed(items[-DETERMINER_WINDOW:]):
        if kind != "word":
            return False
        if text.lower() in ARTICLES:
            return True
    return False


def _list_marker(tokens: Sequence[str], i: int, prev: tuple[str, str] | None) -> str | None:
    """'number two' opening a line, a sentence or what follows a colon becomes the list marker '2.'."""
    if tokens[i].lower() != "number" or i + 1 >= len(tokens):
        return None
    if not (prev is None or prev[0] == "break" or (prev[0] == "punct" and prev[1] in SENTENCE_END + ":")):
        return None
    value = tokens[i + 1].lower()
    number = LIST_NUMBERS.get(value) or (int(value) if value.isdigit() and 0 < int(value) <= 99 else None)
    return f"{number}." if number else None


def _apply_commands(tokens: list[str]) -> list[tuple[str, str]]:
    """Tokens -> items (kind, text) with kind word | punct | open | close | join | break | list."""
    items: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        prev = items[-1] if items else None
        if not _is_word(token):
            items.append((_mark_kind(token), token))
            i += 1
            continue
        words = _match_command(tokens, i)
        nxt = tokens[i + len(words)] if words and i + len(words) < len(tokens) else None
        if words and not _is_noun_use(words, token, items, nxt):
            mark = COMMANDS[words]
            items.append((_mark_kind(mark), mark))
            i += len(words)
            continue
        marker = _list_marker(tokens, i, prev)
        if marker:
            items.append(("list", marker))
            i += 2
            continue
        items.append(("word", token))
        i += 1
    return items


def _words_to_number(words: list[str]) -> str | None:
    from text_to_num import alpha2digit

    converted = alpha2digit(" ".join(words), "en", threshold=0)
    return converted if _NUMBER_RE.match(converted) else None


def _abbreviate_units(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """'4 millimeters' -> '4 mm', 'four millimeters' -> '4 mm' (not '... centimeters per second')."""
    out: list[tuple[str, str]] = []
    for k, (kind, text) in enumerate(items):
        unit = UNIT_ABBREVIATIONS.get(text.lower()) if kind == "word" else None
        following = items[k + 1][1].lower() if k + 1 < len(items) else ""
        if unit and following != "per":
            start = len(out)
            while start > 0 and out[start - 1][0] == "word" and out[start - 1][1].lower() in NUMBER_WORDS:
                start -= 1
            number = _words_to_number([t for _, t in out[start:]]) if start < len(out) else None
            if number is not None:
                out[start:] = [("word", number)]
            if out and out[-1][0] == "word" and _NUMBER_RE.match(out[-1][1]):
                out.append(("word", unit))
                continue
        out.append((kind, text))
    return out


def _join_dimensions_and_levels(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """'1.2 by 0.8 cm' -> '1.2 x 0.8 cm'; 'L4 L5' -> 'L4-L5' (two levels in ascending order)."""
    out: list[tuple[str, str]] = []
    for k, (kind, text) in enumerate(items):
        if kind == "word" and text.lower() == "by" and out and _NUMBER_RE.match(out[-1][1]):
            rest = [t for _, t in items[k + 1 : k + 6]]
            if rest and _NUMBER_RE.match(rest[0]) and _dimension_ends_in_unit(rest):
                out.append(("word", "x"))
                continue
        if kind == "word" and out and out[-1][0] == "word" and _ascending_levels(out[-1][1], text):
            out[-1] = ("word", f"{out[-1][1]}-{text}")
            continue
        out.append((kind, text))
    return out


def _dimension_ends_in_unit(rest: list[str]) -> bool:
    for j, text in enumerate(rest):
        if text in UNIT_SPOKEN or text.lower() in UNIT_ABBREVIATIONS:
            return True
        expected_number = j % 2 == 0
        if expected_number != bool(_NUMBER_RE.match(text)) or (
            not expected_number and text.lower() not in ("by", "x")
        ):
            return False
    return False


def _ascending_levels(first: str, second: str) -> bool:
    a, b = _SPINE_INDEX.get(first.lower()), _SPINE_INDEX.get(second.lower())
    return a is not None and b is not None and b > a and bool(_LEVEL_TOKEN_RE.match(first))


def _render(items: list[tuple[str, str]]) -> str:
    out: list[str] = []
    capitalize, line_words, last = True, 0, "break"
    for kind, text in items:
        if kind in ("word", "list", "open"):
            if kind != "open" and capitalize:
                text = text[:1].upper() + text[1:]
                capitalize = False
            capitalize = capitalize or kind == "list"
            space = "" if not out or last in ("open", "join", "break") else " "
            out.append(space + text)
            line_words += kind == "word"
        elif kind == "punct":
            if out and last in ("break", "list"):
                continue  # Whisper's own mark around a spoken command: "period. New paragraph." "Number 2."
            if last == "punct" and out[-1].endswith(":"):
                continue  # a dictated colon outranks the mark Whisper hears after it ("colon. Number 2")
            if last == "punct":
                if MARK_STRENGTH.get(text, 0) <= MARK_STRENGTH.get(out[-1][-1], 0):
                    continue
                out[-1] = out[-1][:-1]
            out.append(text)
            heading = text == ":" and 0 < line_words <= HEADING_MAX_WORDS
            capitalize = capitalize or text in SENTENCE_END or heading
            line_words = HEADING_MAX_WORDS + 1 if text == ":" else (0 if text in SENTENCE_END else line_words)
        elif kind in ("close", "join"):
            out.append(text)
        elif kind == "break":
            out = [piece.rstrip(" ") for piece in out]
            out.append(text)
            capitalize, line_words = True, 0
        last = kind
    return "".join(out).strip()


def format_dictation(spoken: str) -> str:
    """Spoken dictation -> formatted report text (commands become punctuation and line breaks).

    Existing punctuation is kept, sentence starts are capitalized (no other case is changed), a
    number before "millimeters"/"centimeters" gets the abbreviation ("4 mm"), dimensions use "x"
    ("1.2 x 0.8 cm") and two vertebral levels in a row are joined ("L4 L5" -> "L4-L5").
    """
    items = _apply_commands(_tokenize(spoken))
    items = _join_dimensions_and_levels(_abbreviate_units(items))
    return _render(items)


# ------------------------------------------------------------------------------- formatted -> spoken

SPOKEN_MARKS = {".": "period", ",": "comma", ":": "colon", ";": "semicolon", "?": "question mark",
                "!": "exclamation point", "(": "open paren", ")": "close paren"}  # fmt: skip


def _spoken_word(tokens: list[str], k: int) -> str:
    token = tokens[k]
    prev = tokens[k - 1] if k > 0 else ""
    nxt = tokens[k + 1] if k + 1 < len(tokens) else ""
    pair = _LEVEL_PAIR_RE.match(token)
    if pair and _ascending_levels(pair.group(1), pair.group(2)):
        return f"{pair.group(1)} {pair.group(2)}"
    if token in UNIT_SPOKEN and _NUMBER_RE.match(prev):
        singular, plural = UNIT_SPOKEN[token]
        return singular if prev == "1" else plural
    if token == "x" and _NUMBER_RE.match(prev) and _NUMBER_RE.match(nxt):
        return "by"
    return token


def to_spoken(formatted: str, commands: bool = True) -> str:
    """Formatted report text -> what a radiologist says, for the speech synthesizer.

    Units are read out ("4 mm" -> "4 millimeters"), dimensions use "by", vertebral level pairs are
    two levels ("L4-L5" -> "L4 L5"), a list marker ("2. " opening a line or sentence) is "number 2".
    With `commands`, punctuation and line breaks are spoken ("period", "comma", "new paragraph");
    without, no command word is spoken: line breaks become spaces and punctuation marks stay as
    prosody cues (a synthesizer does not read them out), which suits short sentences dictated
    without commands.
    """
    tokens = _tokenize(formatted)
    words: list[str] = []
    line_start = True
    for k, token in enumerate(tokens):
        if token in ("\n", "\n\n"):
            if commands:
                words.append("new paragraph" if token == "\n\n" else "new line")
            line_start = True
            continue
        nxt = tokens[k + 1] if k + 1 < len(tokens) else ""
        after = tokens[k + 2] if k + 2 < len(tokens) else ""
        item_start = line_start or (k > 0 and tokens[k - 1] in (".", ":"))
        if commands and item_start and token.isdigit() and nxt == "." and after[:1].isupper():
            words.append(f"number {token}")
            tokens[k + 1] = ""  # the marker's period is not spoken
        elif token == "":
            pass
        elif _is_word(token):
            words.append(_spoken_word(tokens, k))
        elif commands and token in SPOKEN_MARKS:
            words.append(SPOKEN_MARKS[token])
        elif commands and token in "-/":
            words.append("dash" if token == "-" else "slash")
        elif not commands:
            words.append(token)
        line_start = False
    if commands:
        return " ".join(words)
    return _render([(("word" if _is_word(w) else _mark_kind(w)), w) for w in words]) if words else ""


# ------------------------------------------------------------------------------- scoring normalizer

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
                and not (len(out) > 1 and _NUMBER_RE.match(out[-2]))
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
        if glued and glued.group(1) in _SPINE_INDEX and glued.group(2) in _SPINE_INDEX:
            merged.extend(glued.groups())
        elif merged and merged[-1] in ("c", "t", "l", "s") and f"{merged[-1]}{token}" in _SPINE_INDEX:
            merged[-1] += token
        else:
            merged.append(token)
    out: list[str] = []
    for k, token in enumerate(merged):
        prev = out[-1] if out else ""
        nxt = merged[k + 1] if k + 1 < len(merged) else ""
        if token in ("by", "x") and _NUMBER_RE.match(prev) and _NUMBER_RE.match(nxt):
            out.append("x")
        elif token.isdigit() and prev in _SPINE_INDEX and nxt not in UNITS.values():
            short = f"{prev[0]}{token}"
            if _SPINE_INDEX.get(short, -1) == _SPINE_INDEX[prev] + 1:
                out[-1] = f"{prev}-{short}"
            else:
                out.append(token)
        elif token in _SPINE_INDEX and prev in _SPINE_INDEX and _SPINE_INDEX[token] > _SPINE_INDEX[prev]:
            out[-1] = f"{prev}-{token}"
        elif (token in _SPINE_INDEX and len(out) > 1 and prev in LEVEL_CONNECTORS and out[-2] in _SPINE_INDEX
              and _SPINE_INDEX[token] > _SPINE_INDEX[out[-2]]):  # fmt: skip
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
