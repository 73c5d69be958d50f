#!/usr/bin/env python3
"""Validate the radiology demo text corpus and the radiology lexicon.

Checks (any failure makes the script exit with status 1):

* sentences.tsv: header ``id<TAB>modality<TAB>text``, >= 440 rows, unique ids,
  unique texts, known modality keys, ASCII only, 6-25 words per sentence.
* reports.jsonl: >= 44 reports with id/modality/title/findings/impression,
  unique ids, ASCII only, dictated word count (text words plus spoken
  punctuation commands) between 110 and 400.
* radiology.txt: >= 1000 terms in all, lowercase, no duplicates. The file has
  two sections, split by the DISTRACTOR_MARKER comment line:
  - core terms (before the marker): >= 320, sorted, and every term occurs in
    >= 3 different sentences of sentences.tsv (case-insensitive, word-boundary
    match; "ground-glass" and "ground glass" are equivalent);
  - distractor terms (after the marker): sorted, and none occurs in any
    sentence of sentences.tsv, any text field of reports.jsonl or any
    sentence of general.tsv (same matching), so a retrieval step choosing
    prompt terms among them must pick the right ones.
* general.tsv: header ``id<TAB>text``, >= 80 rows, unique ids and texts,
  ASCII only, no digits, 8-20 words, and no lexicon term inside.

Usage: python3 scripts/check_corpus.py [--repo-root PATH] [--verbose]
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

MODALITIES = {
    "chest_xray": "cxr",
    "ct_chest": "ctc",
    "ct_abdomen_pelvis": "abd",
    "mri_brain": "mrb",
    "mri_spine": "mrs",
    "ultrasound": "uls",
}

MIN_SENTENCES = 440
MIN_REPORTS = 44
MIN_TERMS = 320  # core terms, before DISTRACTOR_MARKER
MIN_LEXICON_TERMS = 1000  # core and distractor terms together
DISTRACTOR_MARKER = ("# --- Terms no demo sentence contains (retrieval distractors; "
                     "scripts/check_corpus.py exempts them) ---")
MIN_GENERAL = 80
MIN_TERM_SENTENCES = 3
SENT_WORDS = (6, 25)
GENERAL_WORDS = (8, 20)
REPORT_WORDS = (110, 400)
REPORT_FINDINGS_SENTENCES = (6, 18)
REPORT_IMPRESSION_SENTENCES = (1, 4)
HELD_OUT_FRACTION = 0.2

ALLOWED_PUNCT = set(".,:;-()/")

# Spoken dictation commands for punctuation, used to estimate how long a
# report takes to dictate. Each maps to the number of spoken words.
SPOKEN_PUNCT = {".": 1, ",": 1, ":": 1, ";": 1, "(": 2, ")": 2, "/": 1}


class Checker:
    def __init__(self, verbose: bool = False) -> None:
        self.failures: list[str] = []
        self.verbose = verbose

    def fail(self, msg: str) -> None:
        self.failures.append(msg)

    def expect(self, cond: bool, msg: str) -> bool:
        if not cond:
            self.fail(msg)
        return cond


def normalize(text: str) -> str:
    """Lowercase, treat hyphens as spaces, collapse whitespace."""
    text = text.lower().replace("-", " ")
    return re.sub(r"\s+", " ", text).strip()


def term_pattern(term: str) -> re.Pattern[str]:
    norm = normalize(term)
    return re.compile(r"(?<![a-z0-9])" + re.escape(norm) + r"(?![a-z0-9])")


def is_ascii(text: str) -> bool:
    return all(32 <= ord(ch) < 127 for ch in text)


def check_text_chars(ck: Checker, where: str, text: str) -> None:
    if not is_ascii(text):
        ck.fail(f"{where}: non-ASCII or control character in {text!r}")
        return
    bad = {ch for ch in text if not (ch.isalnum() or ch == " " or ch in ALLOWED_PUNCT)}
    if bad:
        ck.fail(f"{where}: disallowed characters {sorted(bad)} in {text!r}")
    if "  " in text or text != text.strip():
        ck.fail(f"{where}: stray whitespace in {text!r}")


def read_tsv(ck: Checker, path: Path, header: list[str]) -> list[list[str]]:
    if not ck.expect(path.is_file(), f"missing file {path}"):
        return []
    raw = path.read_bytes()
    if not ck.expect(is_ascii(raw.decode("latin-1").replace("\t", " ").replace("\n", " ")),
                     f"{path.name}: file is not pure ASCII"):
        pass
    lines = raw.decode("ascii", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        ck.fail(f"{path.name}: empty file")
        return []
    ck.expect(lines[0].split("\t") == header,
              f"{path.name}: header must be {chr(9).join(header)!r}, got {lines[0]!r}")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        cols = line.split("\t")
        if not ck.expect(len(cols) == len(header),
                         f"{path.name}:{n}: expected {len(header)} columns, got {len(cols)}"):
            continue
        rows.append(cols)
    return rows


def check_unique(ck: Checker, name: str, values: list[str], what: str) -> None:
    dup = [v for v, c in Counter(values).items() if c > 1]
    ck.expect(not dup, f"{name}: duplicate {what}: {dup[:5]}")


def words(text: str) -> list[str]:
    return text.split()


def spoken_words(text: str) -> int:
    """Words spoken when dictating text with punctuation commands."""
    n = len(words(text))
    for ch in text:
        n += SPOKEN_PUNCT.get(ch, 0)
    return n


def split_sentences(text: str) -> list[str]:
    # Numbered impression items "1. ..." must not count as separate sentences.
    parts = re.split(r"(?<=[.])\s+(?=[A-Z0-9])", text.strip())
    return [p for p in parts if p and not re.fullmatch(r"\d+\.", p)]


def load_lexicon(ck: Checker, path: Path) -> tuple[list[str], list[str]]:
    """Return (core terms, distractor terms), split at the DISTRACTOR_MARKER line."""
    if not ck.expect(path.is_file(), f"missing file {path}"):
        return [], []
    core: list[str] = []
    distractors: list[str] = []
    section = core
    markers = 0
    for n, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        s = line.strip()
        if s == DISTRACTOR_MARKER:
            markers += 1
            section = distractors
            continue
        if not s or s.startswith("#"):
            continue
        ck.expect(s == line, f"radiology.txt:{n}: stray whitespace in {line!r}")
        ck.expect(s == s.lower(), f"radiology.txt:{n}: term not lowercase: {s!r}")
        ck.expect(is_ascii(s), f"radiology.txt:{n}: non-ASCII term {s!r}")
        section.append(s)
    ck.expect(markers == 1, f"radiology.txt: expected exactly one marker line {DISTRACTOR_MARKER!r}, "
                            f"found {markers}")
    terms = core + distractors
    check_unique(ck, "radiology.txt", terms, "terms")
    norm = [normalize(t) for t in terms]
    check_unique(ck, "radiology.txt", norm, "terms after hyphen/space normalization")
    ck.expect(core == sorted(core), "radiology.txt: core terms are not sorted alphabetically")
    ck.expect(distractors == sorted(distractors),
              "radiology.txt: distractor terms are not sorted alphabetically")
    ck.expect(len(core) >= MIN_TERMS, f"radiology.txt: {len(core)} core terms < {MIN_TERMS}")
    ck.expect(len(terms) >= MIN_LEXICON_TERMS,
              f"radiology.txt: {len(terms)} terms in all < {MIN_LEXICON_TERMS}")
    return core, distractors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo-root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--verbose", action="store_true", help="print per-term sentence counts")
    args = ap.parse_args()
    root: Path = args.repo_root
    corpus = root / "data_manifests" / "radiology_demo" / "corpus"
    ck = Checker(args.verbose)

    # ---- lexicon -----------------------------------------------------------
    core_terms, distractor_terms = load_lexicon(ck, root / "configs" / "lexicons" / "radiology.txt")
    terms = core_terms + distractor_terms
    patterns = {t: term_pattern(t) for t in core_terms}
    distractor_patterns = {t: term_pattern(t) for t in distractor_terms}
    # Every corpus text, normalized, with where it comes from; distractors must match none.
    corpus_texts: list[tuple[str, str]] = []

    # ---- sentences ---------------------------------------------------------
    sent_rows = read_tsv(ck, corpus / "sentences.tsv", ["id", "modality", "text"])
    ids = [r[0] for r in sent_rows]
    texts = [r[2] for r in sent_rows]
    check_unique(ck, "sentences.tsv", ids, "ids")
    check_unique(ck, "sentences.tsv", [normalize(t) for t in texts], "texts")
    ck.expect(len(sent_rows) >= MIN_SENTENCES,
              f"sentences.tsv: {len(sent_rows)} sentences < {MIN_SENTENCES}")
    per_mod = Counter()
    for sid, mod, text in sent_rows:
        where = f"sentences.tsv[{sid}]"
        if ck.expect(mod in MODALITIES, f"{where}: unknown modality {mod!r}"):
            per_mod[mod] += 1
            ck.expect(re.fullmatch(MODALITIES[mod] + r"-\d{4}", sid) is not None,
                      f"{where}: id should look like {MODALITIES[mod]}-0001")
        check_text_chars(ck, where, text)
        n = len(words(text))
        ck.expect(SENT_WORDS[0] <= n <= SENT_WORDS[1],
                  f"{where}: {n} words, expected {SENT_WORDS[0]}-{SENT_WORDS[1]}")
        ck.expect(text[:1].isupper() or text[:1].isdigit(), f"{where}: should start with a capital")
        ck.expect(text.endswith("."), f"{where}: should end with a period")
        ck.expect(re.search(r"\bx\b", re.sub(r"\d x (?=\d)", "", text), re.IGNORECASE) is None,
                  f"{where}: 'x' only allowed between numbers in dimensions")

    norm_texts = [normalize(t) for t in texts]
    corpus_texts += [(f"sentences.tsv[{r[0]}]", normalize(r[2])) for r in sent_rows]
    term_counts: dict[str, int] = {}
    for t, pat in patterns.items():
        term_counts[t] = sum(1 for s in norm_texts if pat.search(s))
    low = sorted((c, t) for t, c in term_counts.items() if c < MIN_TERM_SENTENCES)
    for c, t in low:
        ck.fail(f"lexicon term {t!r} occurs in {c} sentence(s), need >= {MIN_TERM_SENTENCES}")

    # ---- reports -----------------------------------------------------------
    rep_path = corpus / "reports.jsonl"
    reports = []
    if ck.expect(rep_path.is_file(), f"missing file {rep_path}"):
        for n, line in enumerate(rep_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            ck.expect(is_ascii(line), f"reports.jsonl:{n}: non-ASCII characters")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                ck.fail(f"reports.jsonl:{n}: invalid JSON ({exc})")
                continue
            reports.append(obj)
    rep_ids = [str(r.get("id")) for r in reports]
    check_unique(ck, "reports.jsonl", rep_ids, "ids")
    ck.expect(len(reports) >= MIN_REPORTS, f"reports.jsonl: {len(reports)} reports < {MIN_REPORTS}")
    rep_words = []
    sent_set = set(norm_texts)
    for r in reports:
        rid = r.get("id", "?")
        where = f"reports.jsonl[{rid}]"
        corpus_texts += [(f"{where}.{k}", normalize(v)) for k, v in r.items() if isinstance(v, str)]
        keys = {"id", "modality", "title", "findings", "impression"}
        if not ck.expect(keys <= set(r), f"{where}: missing keys {sorted(keys - set(r))}"):
            continue
        ck.expect(re.fullmatch(r"rep-\d{3}", str(rid)) is not None, f"{where}: id should look like rep-001")
        ck.expect(r["modality"] in MODALITIES, f"{where}: unknown modality {r['modality']!r}")
        for field in ("title", "findings", "impression"):
            check_text_chars(ck, f"{where}.{field}", r[field])
        nf = len(split_sentences(r["findings"]))
        ni = len(split_sentences(r["impression"]))
        ck.expect(REPORT_FINDINGS_SENTENCES[0] <= nf <= REPORT_FINDINGS_SENTENCES[1],
                  f"{where}: findings has {nf} sentences, expected {REPORT_FINDINGS_SENTENCES}")
        ck.expect(REPORT_IMPRESSION_SENTENCES[0] <= ni <= REPORT_IMPRESSION_SENTENCES[1],
                  f"{where}: impression has {ni} sentences, expected {REPORT_IMPRESSION_SENTENCES}")
        # Spoken: title, "findings", text, "new paragraph", "impression", text.
        total = (len(words(r["title"])) + 1 + spoken_words(r["findings"]) + 2 + 1
                 + spoken_words(r["impression"]))
        rep_words.append(total)
        ck.expect(REPORT_WORDS[0] <= total <= REPORT_WORDS[1],
                  f"{where}: {total} dictated words, expected {REPORT_WORDS[0]}-{REPORT_WORDS[1]}")
        copied = [s for s in split_sentences(r["findings"]) + split_sentences(r["impression"])
                  if normalize(s) in sent_set]
        ck.expect(not copied, f"{where}: sentences copied verbatim from sentences.tsv: {copied[:3]}")

    # ---- general -----------------------------------------------------------
    gen_rows = read_tsv(ck, corpus / "general.tsv", ["id", "text"])
    check_unique(ck, "general.tsv", [r[0] for r in gen_rows], "ids")
    check_unique(ck, "general.tsv", [normalize(r[1]) for r in gen_rows], "texts")
    ck.expect(len(gen_rows) >= MIN_GENERAL, f"general.tsv: {len(gen_rows)} sentences < {MIN_GENERAL}")
    for gid, text in gen_rows:
        where = f"general.tsv[{gid}]"
        ck.expect(re.fullmatch(r"gen-\d{3}", gid) is not None, f"{where}: id should look like gen-001")
        check_text_chars(ck, where, text)
        ck.expect(not re.search(r"\d", text), f"{where}: contains digits")
        n = len(words(text))
        ck.expect(GENERAL_WORDS[0] <= n <= GENERAL_WORDS[1],
                  f"{where}: {n} words, expected {GENERAL_WORDS[0]}-{GENERAL_WORDS[1]}")
        nt = normalize(text)
        corpus_texts.append((where, nt))
        hits = [t for t, pat in patterns.items() if pat.search(nt)]
        ck.expect(not hits, f"{where}: contains lexicon term(s) {hits}")

    # ---- distractor terms ----------------------------------------------------
    for t, pat in distractor_patterns.items():
        found = [where for where, nt in corpus_texts if pat.search(nt)]
        ck.expect(not found, f"distractor term {t!r} occurs in the corpus: {found[:3]}")

    # ---- summary -----------------------------------------------------------
    print("corpus check summary")
    print(f"  sentences.tsv : {len(sent_rows)} sentences")
    for mod in MODALITIES:
        print(f"    {mod:<18} {per_mod.get(mod, 0)}")
    if rep_words:
        per_rep_mod = Counter(r.get("modality") for r in reports)
        print(f"  reports.jsonl : {len(reports)} reports, dictated words "
              f"min {min(rep_words)} / mean {sum(rep_words) / len(rep_words):.0f} / max {max(rep_words)}")
        for mod in MODALITIES:
            print(f"    {mod:<18} {per_rep_mod.get(mod, 0)}")
    else:
        print(f"  reports.jsonl : {len(reports)} reports")
    if term_counts:
        counts = sorted(term_counts.values())
        print(f"  radiology.txt : {len(terms)} terms: {len(core_terms)} core, sentences per core term "
              f"min {counts[0]} / median {counts[len(counts) // 2]} / max {counts[-1]}")
        print(f"    {len(distractor_terms)} distractor terms, checked against "
              f"{len(corpus_texts)} corpus texts")
        # Expected number of terms whose every sentence lands in a random
        # 20% held-out split (i.e. terms unseen in the 80% training part).
        n_all = len(sent_rows)
        n_test = round(n_all * HELD_OUT_FRACTION)
        if n_all and n_test:
            expected = sum(math.comb(n_all - k, n_test - k) / math.comb(n_all, n_test)
                           for k in counts if k <= n_test)
            print(f"    expected terms unseen in training for a random "
                  f"{int(HELD_OUT_FRACTION * 100)}% test split: {expected:.2f}")
    else:
        print(f"  radiology.txt : {len(terms)} terms ({len(distractor_terms)} distractors)")
    print(f"  general.tsv   : {len(gen_rows)} sentences")
    if args.verbose:
        for t in sorted(term_counts, key=lambda k: (term_counts[k], k)):
            print(f"    {term_counts[t]:4d}  {t}")
    if ck.failures:
        print(f"\nFAILED: {len(ck.failures)} problem(s)")
        for msg in ck.failures[:200]:
            print(f"  - {msg}")
        if len(ck.failures) > 200:
            print(f"  ... and {len(ck.failures) - 200} more")
        return 1
    print("\nOK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
