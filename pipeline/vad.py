"""The one voice-activity detector: where speech is in 16 kHz mono audio, as (start, end) seconds.

Backend: faster-whisper's ONNX port of silero-vad (v6 weights shipped in its wheel; the whole file's
512-sample windows go through the model in batches): ~3x faster than the silero-vad package with its ONNX
model (the segment stage's old path; 2.0 s against 6.4 s on 813 s of audio, scripts/compare_vad.py) and
~7x faster than its torch model here. faster-whisper is a core dependency (segment's word timestamps, the
ct2 engine), so there is no fallback: a missing faster-whisper is a broken install, reported as one line.

Used by the segment stage (pipeline/speech_timing.py: the gaps between regions are the pauses a cut may
fall in) and by long-form transcription (pipeline/inference/longform.py: regions packed into chunks).
Against the silero-vad package the segment stage used before (same settings, 12 long demo dictations):
boundaries both find move by <= 0.1 s, regions are ~0.05 s tighter (1-2% less speech), and this backend
finds 1-3 more short pauses (0.1-0.2 s) on 8 files and one fewer on 1 (scripts/compare_vad.py).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pipeline.errors import DictuneError

SAMPLE_RATE = 16000  # Hz: the detector's input rate


def speech_regions(
    samples: np.ndarray,
    threshold: float = 0.5,
    min_silence_ms: int = 100,
    speech_pad_ms: int = 30,
    min_speech_ms: int = 250,
    max_speech_s: float = float("inf"),
) -> list[tuple[float, float]]:
    """(start, end) seconds of each speech region in 16 kHz mono `samples`, in order, not overlapping.

    threshold: speech probability at or above which a frame is speech (it ends below threshold - 0.15).
    min_silence_ms: a region ends only after this much silence; shorter pauses stay inside it.
    speech_pad_ms: added to each side of a region (neighbours closer than twice this split the gap).
    min_speech_ms: regions shorter than this (before padding) are dropped.
    max_speech_s: a longer region is split at its last silence of >= 98 ms, else cut hard.
    The defaults are silero-vad's own; each caller passes its config's values."""
    if len(samples) == 0:
        return []
    get_speech_timestamps, vad_options = _backend()
    options = vad_options(
        threshold=threshold,
        min_silence_duration_ms=min_silence_ms,
        speech_pad_ms=speech_pad_ms,
        min_speech_duration_ms=min_speech_ms,
        max_speech_duration_s=max_speech_s,
    )
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    stamps = get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


@functools.lru_cache(maxsize=1)
def _backend() -> tuple[Any, Any]:
    """faster-whisper's get_speech_timestamps and VadOptions (its ONNX session is cached on first use)."""
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError as e:
        raise DictuneError(
            f"voice activity detection needs faster-whisper ({e}); reinstall dictune: pip install -e ."
        ) from e
    return get_speech_timestamps, VadOptions
