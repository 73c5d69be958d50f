"""Throughput of the normalize stage: hours of audio normalized per minute of wall time, by num_proc.

Generates a fixed set of speech-like clips (a third each: 16 kHz mono WAV, 44.1 kHz stereo FLAC,
8 kHz WAV, so down-mixing and resampling are exercised), ingests it once, then runs the normalize
stage on the same manifest with each worker count and prints the figures side by side.

    .venv/bin/python scripts/bench_normalize.py [--minutes 15] [--workers 1,2] [--repeats 1]

The machine is shared: run it when it is quiet, and treat a single run as rough.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import audio
from pipeline.config import config_from_dict
from pipeline.files import atomic_write_json
from pipeline.manifest import read_manifest
from pipeline.stages import ingest, normalize

CLIP_SECONDS = 10.0  # length of each generated clip
EDGE_SECONDS = 0.5  # silence at both ends of a clip (so the trim has work to do)
VARIANTS = ((16000, 1, "wav"), (44100, 2, "flac"), (8000, 1, "wav"))  # (rate Hz, channels, format)


def speech_like(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Harmonic bursts at a syllable rhythm, a little noise, silent edges."""
    t = np.arange(int((seconds - 2 * EDGE_SECONDS) * rate)) / rate
    phase = 2 * np.pi * np.cumsum(170 + 50 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6))) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    body = rng.uniform(0.02, 0.3) * tone * envelope / 2 + 0.002 * rng.standard_normal(len(t))
    edge = np.zeros(int(EDGE_SECONDS * rate))
    return np.concatenate([edge, body, edge]).astype(np.float32)


def make_dataset(folder: Path, minutes: float) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(round(minutes * 60 / CLIP_SECONDS)):
        rate, channels, fmt = VARIANTS[i % len(VARIANTS)]
        mono = speech_like(CLIP_SECONDS, rate, rng)
        samples = mono if channels == 1 else np.stack([mono, 0.8 * mono], axis=1)
        name = f"clip{i:04d}.{fmt}"
        sf.write(str(folder / name), samples, rate)
        lines.append(
            json.dumps({"id": f"clip{i:04d}", "audio_filepath": name, "text": "no acute findings period"})
        )
    manifest = folder / "bench.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def time_run(config, num_proc: int, hours: float, repeats: int) -> dict:
    """Normalize `repeats` times with num_proc workers; the fastest wall time, and its CPU time
    (this process and its workers), which a busy shared machine disturbs much less."""
    best = None
    for _ in range(repeats):
        run_config = replace(config, normalize=replace(config.normalize, num_proc=num_proc))
        cpu_before = _cpu_seconds()
        start = time.perf_counter()
        summary = normalize.run(run_config)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_before
        if best is None or wall < best["seconds"]:
            best = {"num_proc": num_proc, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
            best["kept"] = summary["bench"]["kept"]
    best["hours_per_minute"] = round(hours / (best["seconds"] / 60), 3)
    best["hours_per_cpu_minute"] = round(hours / (best["cpu_seconds"] / 60), 3)
    return best


def _cpu_seconds() -> float:
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="minutes of audio to generate")
    parser.add_argument("--workers", default="1,2", help="comma-separated num_proc values")
    parser.add_argument("--repeats", type=int, default=1, help="runs per num_proc; the fastest is kept")
    parser.add_argument("--out", default="bench/normalize.json", help="where the figures are saved")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_normalize_") as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        manifest = make_dataset(tmp / "data", args.minutes)
        sources = [{"name": "bench", "path": str(manifest)}]
        config = config_from_dict(
            {"name": "bench", "work_dir": str(tmp / "work"), "ingest": {"sources": sources}}
        )
        ingest.run(config)
        hours = sum(r.duration for r in read_manifest(config.stage_dir("ingest") / "bench.jsonl")) / 3600
        start = time.perf_counter()
        audio.preload()  # one-time imports and warm-up (seconds): not throughput, so not timed
        warm_up = time.perf_counter() - start
        rows = [time_run(config, int(n), hours, args.repeats) for n in args.workers.split(",")]
    load = os.getloadavg()[0]
    print(f"normalize: {hours * 60:.1f} min of audio, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"(one-time warm-up of librosa/soxr/pyloudnorm: {warm_up:.1f} s, not counted)")
    print(f"{'num_proc':>8} {'wall s':>7} {'audio h/min':>12} {'vs first':>9} {'CPU s':>7} {'h/CPU-min':>10}")
    for row in rows:
        row["ratio"] = round(row["hours_per_minute"] / rows[0]["hours_per_minute"], 2)
        print(
            f"{row['num_proc']:>8} {row['seconds']:>7.2f} {row['hours_per_minute']:>12.3f} {row['ratio']:>8.2f}x"
            f" {row['cpu_seconds']:>7.2f} {row['hours_per_cpu_minute']:>10.3f}"
        )
    report = {"audio_hours": round(hours, 4), "cpus": os.cpu_count(), "load": round(load, 2)}
    report.update(warm_up_seconds=round(warm_up, 2), runs=rows)
    atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
