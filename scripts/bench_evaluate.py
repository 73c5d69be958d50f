"""The evaluate stage's decoding with and without shared encoder states, side by side in one process.

    .venv/bin/python scripts/bench_evaluate.py CONFIG [--limit 40] [--threads 1] [--out bench/evaluate.json]
        [key=value ...]

Both runs transcribe every system of evaluate.systems (base, base+prompt, and the adapted ones once the
train stage has run) on every split of evaluate.splits (the first --limit utterances of each, all by
default), with the evaluate stage's own code (pipeline.systems.transcribe_all) into fresh temp
folders, so nothing comes from a transcript cache:

- "per system": every system encodes the audio itself (the code before the encoder-state store);
- "shared states": systems whose encoder has the base model's weights decode from one stored set of
  encoder outputs (inference.encoder_states.EncoderStateStore), computed once per split.

Prints seconds, clips encoded and the speed-up, and how many transcripts differ between the runs (the
two must give the same words). Needs the normalize stage's splits (and train's adapter for the adapted
systems): run `make demo` or `dictune run CONFIG` first.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--limit", type=int, default=0, help="utterances per split (0 = all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from pipeline.cli import silence_harmless_warnings
    from pipeline.config import load_config
    from pipeline.inference.encoder_states import EncoderStateStore
    from pipeline.models import resolve_model
    from pipeline.systems import load_splits, plan_systems, transcribe_all

    torch.set_num_threads(args.threads)
    silence_harmless_warnings()  # two transformers warnings Whisper's own generate() prints every call
    config = load_config(args.config, args.overrides)
    splits, _ = load_splits(config)
    if args.limit:
        splits = [dataclasses.replace(s, records=s.records[: args.limit]) for s in splits]
    base_dir = Path(resolve_model(config.model.base, cache_dir=config.model.cache_dir))
    systems, _, _ = plan_systems(config, base_dir)
    clips = sum(len(s.records) for s in splits)
    print(f"{len(systems)} systems ({', '.join(s.name for s in systems)}) x {clips} clips, {args.threads} thread(s)")

    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_evaluate.") as tmp:
        for name in ("per system", "shared states"):
            store = EncoderStateStore(Path(tmp) / "states", base_dir) if name == "shared states" else None
            start = time.monotonic()
            hyps, _ = transcribe_all(config, systems, splits, Path(tmp) / name.replace(" ", "_"), store)
            seconds = time.monotonic() - start
            encoded = store.encoded if store else clips * len(systems)
            runs[name] = {"seconds": round(seconds, 1), "clips_encoded": encoded, "hyps": hyps}
    differ = sum(
        a != b
        for system in runs["per system"]["hyps"]
        for split, texts in runs["per system"]["hyps"][system].items()
        for a, b in zip(texts, runs["shared states"]["hyps"][system][split])
    )
    reference = runs["per system"]["seconds"]
    print("| run | seconds | clips encoded | speed-up |")
    print("|---|---:|---:|---:|")
    for name, run in runs.items():
        print(f"| {name} | {run['seconds']:.1f} | {run['clips_encoded']} | {reference / run['seconds']:.2f}x |")
    print(f"transcripts that differ between the runs: {differ} of {clips * len(systems)}")
    if args.out:
        from pipeline.files import atomic_write_json

        atomic_write_json(args.out, {
            "systems": [s.name for s in systems], "clips": clips, "threads": args.threads, "differ": differ,
            "runs": {k: {kk: vv for kk, vv in v.items() if kk != "hyps"} for k, v in runs.items()},
        })  # fmt: skip
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
