"""Seconds per clip of batched HF Whisper generate (pipeline.inference.hf) on short espeak-ng clips.

    .venv/bin/python scripts/bench_hf_decoding.py [--model tiny.en] [--threads 1 2] [--batch 1 8 16]
        [--beams 1 5] [--clips 16] [--out bench/hf_decoding.json]

Synthesizes plain English sentences with espeak-ng (Debian package `espeak-ng`), about 4-5 s each, and
times `Transcriber.transcribe` (wall and process CPU seconds) for every combination of threads x batch
size x beams (after one warm-up batch), then greedy decoding at batch 8 in fp32, with bfloat16
autocast, and with a full-length (~220 token) vocabulary prompt. Prints a markdown table and writes the
numbers as JSON. The machine's load average is recorded beside them: on a shared machine the figures
are rough (CPU seconds with one thread are the steadier figure).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = (
    "The weather today is sunny with a light breeze from the west.",
    "Please send the quarterly report to the finance department by Friday.",
    "My brother bought a new bicycle and rides it to work every morning.",
    "The museum opens at nine and closes at five on weekdays.",
    "We walked along the river and watched the boats go by.",
    "She ordered a cup of coffee and a slice of apple pie.",
    "The children played football in the park until it got dark.",
    "He forgot his umbrella at the train station yesterday.",
)
VOICES = ("en-us", "en-gb", "en-us+m3", "en-gb+f2")  # espeak-ng voice variants, cycled
ESPEAK_WORDS_PER_MINUTE = 130  # ~4-5 s per sentence


def synthesize(out_dir: Path, count: int) -> list[tuple[Path, str]]:
    clips = []
    for i in range(count):
        text, voice = SENTENCES[i % len(SENTENCES)], VOICES[(i // len(SENTENCES)) % len(VOICES)]
        path = out_dir / f"clip{i:03d}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(ESPEAK_WORDS_PER_MINUTE), "-w", str(path), text],
                       check=True, capture_output=True)
        clips.append((path, text))
    return clips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", help="model spec for pipeline.models.resolve_model")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--out", default="bench/hf_decoding.json")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 1

    import jiwer
    import torch

    from pipeline.audio import load_mono
    from pipeline.inference.hf import Transcriber
    from pipeline.models import resolve_model
    from pipeline.scoring_form import normalize_for_scoring

    model_dir = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        clips = synthesize(Path(tmp), args.clips)
        arrays = [load_mono(path) for path, _ in clips]
    refs = [normalize_for_scoring(text) for _, text in clips]
    seconds_audio = sum(len(a) for a in arrays) / 16000
    results = []
    for threads, beams in itertools.product(args.threads, args.beams):
        torch.set_num_threads(threads)
        for batch in args.batch:
            transcriber = Transcriber(model_dir, batch_size=batch, num_beams=beams)
            transcriber.transcribe(arrays[:batch])  # warm-up
            start, cpu_start = time.perf_counter(), time.process_time()
            hyps = transcriber.transcribe(arrays)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            wer = jiwer.wer(refs, [normalize_for_scoring(h) for h in hyps])
            row = {"threads": threads, "batch": batch, "beams": beams, "clips": len(arrays),
                   "s_per_clip": round(elapsed / len(arrays), 3),
                   "cpu_s_per_clip": round(cpu / len(arrays), 3), "rtf": round(elapsed / seconds_audio, 3),
                   "wer": round(wer, 4), "load_avg_1m": round(os.getloadavg()[0], 2)}
            results.append(row)
            print(json.dumps(row), flush=True)
    torch.set_num_threads(min(args.threads))
    extras = {}  # greedy, batch 8: fp32 vs bf16 autocast, and the cost of a full-length vocabulary prompt
    prompt = ", ".join(["pleural effusion", "bibasilar atelectasis", "pneumothorax", "cardiomegaly"] * 20)
    for name, flag, with_prompt in (("fp32", False, False), ("bf16", True, False), ("fp32+prompt", False, True)):
        transcriber = Transcriber(model_dir, batch_size=8, bf16=flag)
        text = transcriber.fit_prompt(prompt.split(", "))[0] if with_prompt else None
        transcriber.transcribe(arrays[:8], prompt=text)  # warm-up
        start, cpu_start = time.perf_counter(), time.process_time()
        hyps = transcriber.transcribe(arrays, prompt=text)
        extras[name] = {"s_per_clip": round((time.perf_counter() - start) / len(arrays), 3),
                        "cpu_s_per_clip": round((time.process_time() - cpu_start) / len(arrays), 3),
                        "wer": round(jiwer.wer(refs, [normalize_for_scoring(h) for h in hyps]), 4)}
        print(name, json.dumps(extras[name]), flush=True)
    print("| threads | batch | beams | s/clip | CPU s/clip | RTF | WER | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['threads']} | {r['batch']} | {r['beams']} | {r['s_per_clip']} | {r['cpu_s_per_clip']} | {r['rtf']} | "
              f"{100 * r['wer']:.1f} | {r['load_avg_1m']} |")
    print(f"greedy, batch 8, {min(args.threads)} thread(s): {json.dumps(extras)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "audio_seconds": round(seconds_audio, 2),
                               "results": results, "extras": extras}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
