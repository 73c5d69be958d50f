"""Seconds per step, samples/s, trainable parameters and peak RSS of dictune's training modes.

    .venv/bin/python scripts/bench_train_modes.py --model tiny.en --steps 5 --batch-size 8 --threads 1
    .venv/bin/python scripts/bench_train_modes.py --model DIR --manifest train.jsonl --modes lora_both fast

Each mode runs in its own process (clean peak RSS, fresh accelerate state). Without --manifest a
synthetic corpus of tone clips with radiology sentences is generated (timing does not depend on the
audio: Whisper always encodes a 30 s window). The first step is reported apart (warm-up); s/step is the
median of the others, as wall time and as this process's CPU time (the fair figure on a shared machine:
with --threads 1 it is what an idle machine would show). The encoder-cache build of the fast mode is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = {  # name -> train.* overrides
    "lora_both": {"mode": "lora", "adapt": "both"},
    "lora_both_fp32": {"mode": "lora", "adapt": "both", "precision": "fp32"},
    "lora_decoder": {"mode": "lora", "adapt": "decoder", "cache_encoder_outputs": False},
    "fast": {"mode": "lora", "adapt": "decoder", "cache_encoder_outputs": True},
    "full_both": {"mode": "full", "adapt": "both", "learning_rate": 1e-5},
    "full_decoder_fast": {
        "mode": "full",
        "adapt": "decoder",
        "learning_rate": 1e-5,
        "cache_encoder_outputs": True,
    },
}
SENTENCES = (
    "Bibasilar atelectasis without pleural effusion or pneumothorax.",
    "No pneumothorax is seen following removal of the right chest tube.",
    "Mild hydronephrosis of the left kidney without obstructing calculus.",
    "The endotracheal tube terminates 4 cm above the carina.",
    "Degenerative endplate changes at L4-L5 with mild disc bulge.",
)


def synthetic_corpus(root: Path, n: int, seed: int = 0) -> Path:
    import soundfile

    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        seconds = float(rng.uniform(3.0, 8.0))
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.2 * np.sin(2 * np.pi * (150 + 20 * (i % 7)) * t) + 0.02 * rng.standard_normal(t.size)
        path = root / "audio" / f"{i:04d}.wav"
        soundfile.write(path, wave.astype(np.float32), 16000)
        rows.append(
            {
                "id": str(i),
                "audio_filepath": str(path),
                "duration": seconds,
                "text": SENTENCES[i % len(SENTENCES)],
            }
        )
    manifest = root / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def run_one(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from pipeline.config import config_from_dict
    from pipeline.training import resolve_base
    from pipeline.training.trainer import Trainer

    train = {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "train_manifest": args.manifest,
        "dev_manifest": "",
        "eval_steps": 0,
        "save_steps": 0,
        "log_steps": 1,
        "warmup_steps": 0,
        "merge": False,
        **MODES[args.one],
    }
    config = config_from_dict(
        {"name": "bench", "work_dir": args.work_dir, "model": {"base": args.model}, "train": train}
    )
    times: list[float] = []
    cpu: list[float] = []
    last = [time.monotonic(), time.process_time()]

    def tick(step: int) -> None:
        now, now_cpu = time.monotonic(), time.process_time()
        times.append(now - last[0])
        cpu.append(now_cpu - last[1])
        last[:] = [now, now_cpu]

    trainer = Trainer(config, resolve_base(config), progress=False, on_step_end=tick)
    last[:] = [time.monotonic(), time.process_time()]
    summary = trainer.train()
    wall = statistics.median(times[1:] or times)
    return {
        "mode": args.one,
        "first_step_s": round(times[0], 3),
        "s_per_step": round(wall, 3),
        "cpu_s_per_step": round(statistics.median(cpu[1:] or cpu), 3),
        "samples_per_s": round(args.batch_size / wall, 3),
        "cache_build_s": (summary["encoder_cache"] or {}).get("seconds"),
        "trainable_params": summary["trainable_params"],
        "peak_rss_mb": summary["peak_rss_mb"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", help="builtin name or local HF Whisper dir")
    parser.add_argument("--manifest", help="training manifest (default: synthetic clips)")
    parser.add_argument(
        "--modes", nargs="*", default=["lora_both", "fast", "full_both"], choices=sorted(MODES)
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        print("RESULT " + json.dumps(run_one(args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if not args.manifest:
            args.manifest = str(
                synthetic_corpus(Path(tmp) / "data", max(16, args.batch_size * (args.steps + 1)))
            )
        results = []
        for mode in args.modes:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                mode,
                "--model",
                args.model,
                "--manifest",
                args.manifest,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
                "--work-dir",
                args.work_dir or str(Path(tmp) / f"work_{mode}"),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode or not lines:
                print(f"{mode}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
                continue
            results.append(json.loads(lines[-1][len("RESULT ") :]))
            print(json.dumps(results[-1]), flush=True)
    print(
        f"\n{'mode':<20}{'s/step':>9}{'cpu s/step':>11}{'samples/s':>11}{'1st step':>10}{'cache s':>9}{'trainable':>13}{'peak RSS MB':>13}"
    )
    for r in results:
        print(
            f"{r['mode']:<20}{r['s_per_step']:>9}{r['cpu_s_per_step']:>11}{r['samples_per_s']:>11}{r['first_step_s']:>10}"
            f"{r['cache_build_s']!s:>9}{r['trainable_params']:>13,}{r['peak_rss_mb']:>13}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
