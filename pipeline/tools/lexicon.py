"""Domain lexicons: build one from a group's report archive.

    dictune lexicon build --archive PATH [--archive PATH ...] --out FILE [--field NAME ...]
                          [--reference LEXICON] [--top-words N] [--top-phrases N] [--min-count N]

PATH is a folder of .txt reports (one report a file), a .jsonl file (one report a line; --field names
the field(s) holding the text, default `text`) or a .csv / .tsv file (--field names the column(s)).
FILE gets the mined single words and phrases, most specific first, with their counts as comments
(pipeline/lexicon_build.py); reports that could not be read go to FILE.rejects.jsonl with the reason.
With --reference, the precision and recall of the mined single words against that lexicon's single-word
terms that occur in the archive are printed (JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline.errors import DictuneError

logger = logging.getLogger("dictune")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.lexicon_build import BuildOptions

    defaults = BuildOptions()
    sub = parser.add_subparsers(dest="lexicon_command", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="mine domain terms from a report archive")
    build.add_argument("--archive", required=True, action="append", type=Path, help="folder, .jsonl, .csv or .tsv")
    build.add_argument("--field", action="append", help="JSONL field / CSV column with the report text (repeatable)")
    build.add_argument("--out", required=True, type=Path, help="lexicon file to write")
    build.add_argument("--reference", type=Path, help="a lexicon to print precision / recall against")
    build.add_argument("--top-words", type=int, default=defaults.top_words, help="single words kept")
    build.add_argument("--top-phrases", type=int, default=defaults.top_phrases, help="phrases kept")
    build.add_argument("--min-count", type=int, default=defaults.min_count, help="fewest occurrences of a term")
    build.add_argument("--max-zipf", type=float, default=defaults.max_zipf,
                       help="words at least this common in English (wordfreq Zipf) are not terms")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from pipeline.archive import read_archive
    from pipeline.files import atomic_write_text
    from pipeline.lexicon_build import BuildOptions, lexicon_text, mine_terms
    from pipeline.manifest import write_rejects

    if args.top_words < 1 or args.top_phrases < 0 or args.min_count < 1:
        raise DictuneError("lexicon build: --top-words and --min-count must be >= 1, --top-phrases >= 0")
    fields = tuple(args.field or ("text",))
    reports, rejects = [], []
    for path in args.archive:
        got, bad = read_archive(path, fields, stage="lexicon")
        reports += got
        rejects += bad
    options = BuildOptions(min_count=args.min_count, max_zipf=args.max_zipf, top_words=args.top_words,
                           top_phrases=args.top_phrases)  # fmt: skip
    mined = mine_terms((r.text for r in reports), options)
    atomic_write_text(args.out, lexicon_text(mined, [str(p) for p in args.archive], len(reports)))
    rejects_path = args.out.with_name(args.out.name + ".rejects.jsonl")
    write_rejects(rejects_path, rejects)
    words = sum(t.kind == "word" for t in mined)
    logger.info("lexicon build: %d reports (%d rejected, %s), %d words and %d phrases -> %s", len(reports),
                len(rejects), rejects_path, words, len(mined) - words, args.out)  # fmt: skip
    if args.reference:
        print(json.dumps(reference_scores(mined, args.reference, [r.text for r in reports], args.top_words)))
    return 0


def reference_scores(mined, reference: Path, texts: list[str], top: int) -> dict:
    """Precision / recall of the first `top` mined single words against the reference lexicon's single-word
    terms that occur in the archive text, and the same for phrases (all mined phrases), in scoring form."""
    import dataclasses

    from pipeline.lexicon import load_lexicon
    from pipeline.lexicon_build import compare
    from pipeline.scoring_form import ScoringNormalizer, normalize_for_scoring

    lexicon = load_lexicon(reference)
    text = " " + " ".join(normalize_for_scoring(t) for t in texts) + " "
    present = [t for t in lexicon.terms if f" {t} " in text]
    norm = ScoringNormalizer(commands=False)  # the lexicon's own form: "extra-axial" -> its key
    keyed = [dataclasses.replace(m, term=norm(m.term)) for m in mined]
    words = compare([m for m in keyed if m.kind == "word"], {t for t in present if " " not in t}, top)
    phrases = [m for m in keyed if m.kind == "phrase"]
    return {"reference": str(reference), "words": words,
            "phrases": compare(phrases, {t for t in present if " " in t}, len(phrases))}  # fmt: skip
