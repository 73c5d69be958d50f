"""Score transcripts against references: WER, CER, B-WER / U-WER, term precision / recall / F1 and
clinical errors (JSON).

    dictune score --ref REF --hyp HYP [--lexicon FILE] [--baseline HYP0] [--report-ids IDS] [--out FILE]

REF and HYP hold one utterance a line, in the same order (an empty line is an empty utterance). Both
are put in the domain-safe scoring form first (pipeline.scoring_form.normalize_for_scoring). The
`clinical` block counts negation, laterality and number / unit / level errors (pipeline.clinical); IDS
gives each line's report id (one a line), so that reports are counted whole, else each line is its own
report.
With --lexicon the term metrics and the per-term table are added; with --baseline, the baseline's scores
and paired bootstrap 95% intervals of HYP minus baseline (the clinical ones resample whole reports).
The JSON goes to stdout, or to --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.errors import DictuneError

logger = logging.getLogger("dictune")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.config import Config, EvaluateConfig

    parser.add_argument("--ref", required=True, type=Path, help="reference transcripts, one utterance a line")
    parser.add_argument("--hyp", required=True, type=Path, help="hypothesis transcripts, same lines as --ref")
    parser.add_argument("--lexicon", type=Path, help="domain terms, one per line ('#' comments)")
    parser.add_argument("--baseline", type=Path, help="a second hypothesis file to compare against")
    parser.add_argument("--report-ids", type=Path, help="report id of each line, one a line")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    parser.add_argument("--no-normalize", action="store_true", help="texts are already in scoring form")
    parser.add_argument("--per-utterance", action="store_true", help="add per-utterance counts to the JSON")
    parser.add_argument(
        "--bootstrap-samples",
        type=int,
        default=EvaluateConfig().bootstrap_samples,
        help="resamples (--baseline)",
    )
    parser.add_argument(
        "--seed", type=int, default=Config.__dataclass_fields__["seed"].default, help="bootstrap seed"
    )


def read_lines(path: Path) -> list[str]:
    """One utterance a line; a final newline does not add an utterance."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DictuneError(f"{path}: file not found") from None
    except OSError as e:
        raise DictuneError(f"{path}: cannot read ({e.strerror})") from e
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise DictuneError(f"{path}:{number}: not UTF-8 text ({e.reason}); save the file as UTF-8") from e
    return out


def _check_lengths(ref_path: Path, refs: list[str], hyp_path: Path, hyps: list[str]) -> None:
    if len(refs) != len(hyps):
        raise DictuneError(
            f"{ref_path} has {len(refs)} lines but {hyp_path} has {len(hyps)}; "
            "give one utterance a line in the same order in both"
        )
    if not refs:
        raise DictuneError(f"{ref_path} is empty; give one reference utterance a line")


def main(args: argparse.Namespace) -> int:
    from pipeline.bootstrap import CLINICAL_METRICS, paired_bootstrap
    from pipeline.files import atomic_write_text
    from pipeline.lexicon import load_lexicon
    from pipeline.metrics import score
    from pipeline.scoring_form import normalize_for_scoring

    if args.bootstrap_samples < 1:
        raise DictuneError(f"--bootstrap-samples must be at least 1, got {args.bootstrap_samples}")
    refs, hyps = read_lines(args.ref), read_lines(args.hyp)
    _check_lengths(args.ref, refs, args.hyp, hyps)
    lexicon = load_lexicon(args.lexicon) if args.lexicon else None
    normalizer = None if args.no_normalize else normalize_for_scoring
    groups = None
    if args.report_ids:
        groups = read_lines(args.report_ids)
        _check_lengths(args.ref, refs, args.report_ids, groups)
    scores = score(refs, hyps, lexicon, normalizer, groups)
    result = {"ref": str(args.ref), "hyp": str(args.hyp), "lexicon": str(args.lexicon) if args.lexicon else None,
              "terms_in_lexicon": len(lexicon) if lexicon else None, **scores.to_dict(args.per_utterance)}  # fmt: skip
    if args.baseline:
        base_hyps = read_lines(args.baseline)
        _check_lengths(args.ref, refs, args.baseline, base_hyps)
        base = score(refs, base_hyps, lexicon, normalizer, groups)
        diffs = paired_bootstrap(base, scores, args.bootstrap_samples, args.seed)
        diffs |= paired_bootstrap(
            base, scores, args.bootstrap_samples, args.seed, metrics=list(CLINICAL_METRICS), by_report=True
        )
        result["baseline"] = {"hyp": str(args.baseline), **base.to_dict()}
        result["difference"] = {name: d.to_dict() for name, d in diffs.items()}
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
        logger.info("scores of %d utterances written to %s", scores.utterances, args.out)
    else:
        sys.stdout.write(text)
    return 0
