"""Print the before/after table of the last evaluation (numbers only) and where the full report is.

    dictune show CONFIG [key=value ...]
"""

from __future__ import annotations

import argparse
import json

from pipeline.errors import DictuneError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")


def main(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.report import comparison_table, headline_table

    config = load_config(args.config, args.overrides)
    folder = config.stage_dir("evaluate")
    path = folder / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DictuneError(f"{path}: no report yet; run `dictune evaluate {args.config}` first") from None
    except json.JSONDecodeError as e:
        raise DictuneError(f"{path}: not a report ({e.msg}); rerun `dictune evaluate {args.config}`") from e
    print(headline_table(report))
    comparison = comparison_table(report)
    if comparison:
        print("\nchange against base, with paired bootstrap 95% CI (points):")
        print("\n".join(comparison))
    print(f"\nfull report: {folder / 'report.md'} (plots: {folder}/*.png)")
    transcripts = config.stage_dir("transcribe")
    if transcripts.is_dir():
        print(f"transcribed reports: {transcripts}")
    return 0
