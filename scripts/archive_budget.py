"""How long rendering a report archive takes: synthesis throughput per engine, measured by the synthesize
stage (its summary.json: audio seconds per CPU second per voice), and the arithmetic for an archive.

    python scripts/archive_budget.py work/radiology_demo/synthesize/summary.json \
        [--reports 10000] [--report-seconds 68] [--cores 2 16] [--config configs/radiology_demo.yaml]

Prints, per engine, minutes of audio per CPU-minute; then, for the config's train-voice mix (each voice's
share of the renderings), the CPU time per audio minute and the wall time to read every report once and
to read only a coverage selection (synthesize.archive.minutes), on each core count. Rendering runs one
process per core (synthesize.workers) and scales with cores: the voices share nothing.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path, help="a synthesize stage summary.json")
    parser.add_argument("--config", default="configs/radiology_demo.yaml", help="for the train-voice mix")
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--report-seconds", type=float, default=68.0,
                        help="audio per dictated report (the demo's long reports: 0.226 h for 12)")  # fmt: skip
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 16])
    args = parser.parse_args()

    from pipeline.config import load_config

    summary = json.loads(args.summary.read_text(encoding="utf-8"))
    per_voice = summary["x_real_time_cpu"]
    engines: dict[str, list[float]] = defaultdict(list)
    for voice, speed in per_voice.items():
        engines[voice.split(":")[0]].append(speed)
    print("| engine | audio minutes per CPU-minute (voices: range) |\n|---|---|")
    for engine, speeds in sorted(engines.items()):
        print(f"| {engine} | {min(speeds):.1f}" + (f"-{max(speeds):.1f}" if len(speeds) > 1 else "") + " |")

    config = load_config(args.config)
    weights = {v: w for v, w in config.synthesize.train_voices.items() if v in per_voice}
    total = sum(weights.values())
    cpu_per_audio = sum(w / total / per_voice[v] for v, w in weights.items())  # CPU s per audio s
    print(f"\ntrain-voice mix of {args.config}: {cpu_per_audio * 60:.2f} CPU-seconds per audio minute "
          f"({1 / cpu_per_audio:.1f} audio minutes per CPU-minute)")  # fmt: skip
    archive = config.synthesize.archive
    plans = [("every report read once", args.reports * args.report_seconds)]
    if archive is not None:
        plans.append((f"coverage selection ({archive.minutes:g} min budget)", archive.minutes * 60))
    print("\n| plan | audio hours | " + " | ".join(f"wall time on {c} cores" for c in args.cores) + " |")
    print("|---|---:|" + "---:|" * len(args.cores))
    for name, audio in plans:
        cells = [_duration(audio * cpu_per_audio / cores) for cores in args.cores]
        print(f"| {name} | {audio / 3600:.1f} | " + " | ".join(cells) + " |")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
