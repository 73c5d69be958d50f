"""Learning curve: domain-term error against hours of training data (pipeline/curve/: plan, run, report).

    dictune curve CONFIG [fractions=0.1,0.25,0.5,1.0] [seeds=2] [quality_arm=false] [workers=2] [key=value ...]

Short keys: `fractions=0.1,0.25` means `curve.fractions=[0.1,0.25]`; likewise seeds, quality_arm, workers
and every other curve.* field. See pipeline/curve/run.py for what runs and what is written.
"""

from __future__ import annotations

import argparse
import dataclasses

from pipeline.config import CurveConfig

# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config (the one `dictune run` uses)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides, e.g. fractions=0.1,0.5,1.0 seeds=2 train.max_steps=100",
    )


def curve_overrides(overrides: list[str]) -> list[str]:
    """Short curve keys become dotted ones (seeds=2 -> curve.seeds=2); fractions may be comma-separated."""
    fields = {f.name for f in dataclasses.fields(CurveConfig)}
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key in fields:
            key = f"curve.{key}"
        if sep and key == "curve.fractions" and "," in value and not value.lstrip().startswith("["):
            value = f"[{value}]"
        out.append(f"{key}={value}" if sep else item)
    return out


def main(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.curve.run import run_curve

    config = load_config(args.config, curve_overrides(args.overrides))
    curve = run_curve(config)
    for sentence in curve["sentences"]:
        print(sentence)  # numbers only
    return 0
