"""Dictation text in its spoken and formatted forms; the third form, for scoring, is made in
pipeline/scoring_form.py (the lexicon of domain terms is in pipeline/lexicon.py).

    spoken     "the colon is unremarkable period new paragraph impression colon no acute findings period"
    formatted  "The colon is unremarkable.\\n\\nImpression: No acute findings."      format_dictation()
    scoring    "the colon is unremarkable impression no acute findings"   scoring_form.normalize_for_scoring()

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
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
_LEVEL_TOKEN_RE = re.compile(r"^([CTLSctls])(\d{1,2})$")
_LEVEL_PAIR_RE = re.compile(r"^([CTLSctls]\d{1,2})-([CTLSctls]\d{1,2})$")
SPINE_LEVELS = ([f"c{i}" for i in range(1, 8)] + [f"t{i}" for i in range(1, 13)]
                + [f"l{i}" for i in range(1, 6)] + [f"s{i}" for i in range(1, 6)])  # fmt: skip
SPINE_INDEX = {name: i for i, name in enumerate(SPINE_LEVELS)}


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
    return converted if NUMBER_RE.match(converted) else None


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
            if out and out[-1][0] == "word" and NUMBER_RE.match(out[-1][1]):
                out.append(("word", unit))
                continue
        out.append((kind, text))
    return out


def _join_dimensions_and_levels(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """'1.2 by 0.8 cm' -> '1.2 x 0.8 cm'; 'L4 L5' -> 'L4-L5' (two levels in ascending order)."""
    out: list[tuple[str, str]] = []
    for k, (kind, text) in enumerate(items):
        if kind == "word" and text.lower() == "by" and out and NUMBER_RE.match(out[-1][1]):
            rest = [t for _, t in items[k + 1 : k + 6]]
            if rest and NUMBER_RE.match(rest[0]) and _dimension_ends_in_unit(rest):
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
        if expected_number != bool(NUMBER_RE.match(text)) or (
            not expected_number and text.lower() not in ("by", "x")
        ):
            return False
    return False


def _ascending_levels(first: str, second: str) -> bool:
    a, b = SPINE_INDEX.get(first.lower()), SPINE_INDEX.get(second.lower())
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
    if token in UNIT_SPOKEN and NUMBER_RE.match(prev):
        singular, plural = UNIT_SPOKEN[token]
        return singular if prev == "1" else plural
    if token == "x" and NUMBER_RE.match(prev) and NUMBER_RE.match(nxt):
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
