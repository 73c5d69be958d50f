"""Segment-stage speech regions: the silero-vad package (the old backend) against pipeline/vad.py.

    .venv/bin/python scripts/compare_vad.py [MANIFEST]   (default: data_manifests/radiology_demo/long.jsonl)

Runs both on every file of the manifest with the segment stage's settings (SegmentConfig defaults:
threshold, min_pause_ms, speech_pad_ms, and the 250 ms minimum region) and prints per file: region
counts; shift_s, the largest move of a boundary both backends have (a start or end within MATCH_SECONDS
of one of the same kind in the other); the pauses (gaps between regions, where the stage cuts) that only
one backend has, as start-end seconds; total speech seconds. Then each backend's time. Needs the silero-vad
package (the dev extra); the old path is reproduced here: its ONNX model, as the segment stage loaded it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import audio, vad
from pipeline.config import SegmentConfig
from pipeline.speech_timing import MIN_SPEECH_MS, speech_regions

DEFAULT_MANIFEST = ROOT / "data_manifests" / "radiology_demo" / "long.jsonl"
MATCH_SECONDS = 0.25  # two boundaries this close are the same boundary, moved


def old_regions(samples: np.ndarray, options: SegmentConfig, model) -> list[tuple[float, float]]:
    """The segment stage before pipeline/vad.py: the silero-vad package's get_speech_timestamps."""
    import torch
    from silero_vad import get_speech_timestamps

    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
        model,
        threshold=options.vad_threshold,
        sampling_rate=vad.SAMPLE_RATE,
        min_speech_duration_ms=MIN_SPEECH_MS,
        min_silence_duration_ms=options.min_pause_ms,
        speech_pad_ms=options.speech_pad_ms,
    )
    return [(s["start"] / vad.SAMPLE_RATE, s["end"] / vad.SAMPLE_RATE) for s in stamps]


def pauses(regions: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The gaps between consecutive regions: where the segment stage may cut."""
    return [(end, start) for (_, end), (start, _) in itertools.pairwise(regions)]


def unmatched(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The pauses of `a` that overlap no pause of `b`."""
    return [(s, e) for s, e in a if not any(s < e2 and s2 < e for s2, e2 in b)]


def max_shift(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Largest move of a boundary present in both: each start (end) of `a` against the nearest start (end)
    of `b` within MATCH_SECONDS (farther ones belong to a region one backend split and the other did not)."""
    worst = 0.0
    for kind in (0, 1):
        xs, ys = np.array([r[kind] for r in a]), np.array([r[kind] for r in b])
        if len(xs) and len(ys):
            nearest = np.abs(xs[:, None] - ys[None, :]).min(axis=1)
            worst = max(worst, float(nearest[nearest <= MATCH_SECONDS].max(initial=0.0)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", type=Path, default=DEFAULT_MANIFEST)
    args = parser.parse_args()
    from silero_vad import load_silero_vad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_silero_vad(onnx=True)
    options = SegmentConfig()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    speech_regions(np.zeros(vad.SAMPLE_RATE, dtype=np.float32), options)  # load both models before timing
    old_regions(np.zeros(vad.SAMPLE_RATE, dtype=np.float32), options, model)
    print(f"settings: threshold={options.vad_threshold} min_pause_ms={options.min_pause_ms} "
          f"speech_pad_ms={options.speech_pad_ms} min_speech_ms={MIN_SPEECH_MS}")  # fmt: skip
    print(f"{'file':<30} {'audio_s':>7} {'n_old':>5} {'n_new':>5} {'shift_s':>7} {'pauses_only_old':>15} "
          f"{'pauses_only_new':>15} {'speech_old_s':>12} {'speech_new_s':>12}")  # fmt: skip
    t_old = t_new = total_audio = 0.0
    differ = count_differ = 0
    worst_shift = 0.0
    for row in rows:
        path = (args.manifest.parent / row["audio_filepath"]).resolve()
        samples = audio.load_mono(path)
        total_audio += len(samples) / vad.SAMPLE_RATE
        t0 = time.perf_counter()
        old = old_regions(samples, options, model)
        t1 = time.perf_counter()
        new = speech_regions(samples, options)
        t2 = time.perf_counter()
        t_old, t_new = t_old + t1 - t0, t_new + t2 - t1
        only_old, only_new = unmatched(pauses(old), pauses(new)), unmatched(pauses(new), pauses(old))
        shift = max(max_shift(old, new), max_shift(new, old))
        worst_shift = max(worst_shift, shift)
        differ += old != new
        count_differ += len(old) != len(new)
        speech_old, speech_new = (sum(e - s for s, e in regions) for regions in (old, new))
        print(f"{row['id']:<30} {len(samples) / vad.SAMPLE_RATE:>7.1f} {len(old):>5} {len(new):>5} "
              f"{shift:>7.3f} {_spans(only_old):>15} {_spans(only_new):>15} "
              f"{speech_old:>12.2f} {speech_new:>12.2f}")  # fmt: skip
    print(f"{len(rows)} files, {total_audio:.0f} s of audio: regions differ on {differ}, "
          f"region count differs on {count_differ}; largest shift of a shared boundary {worst_shift:.3f} s")  # fmt: skip
    print(f"time: silero-vad package (ONNX) {t_old:.2f} s, pipeline/vad.py (faster-whisper) {t_new:.2f} s "
          f"({t_old / t_new:.1f}x)")  # fmt: skip


def _spans(spans: list[tuple[float, float]]) -> str:
    return " ".join(f"{s:.1f}-{e:.1f}" for s, e in spans) or "-"


if __name__ == "__main__":
    main()
