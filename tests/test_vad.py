"""pipeline/vad.py, the one voice-activity detector, and the two callers' settings (segment, transcribe)."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from pipeline import vad
from pipeline.config import SegmentConfig, TranscribeConfig
from pipeline.errors import DictuneError
from pipeline.inference import longform
from pipeline.speech_timing import MIN_SPEECH_MS
from pipeline.speech_timing import speech_regions as segment_regions

SR = vad.SAMPLE_RATE
PAUSE_SECONDS = 1.0


@pytest.fixture(scope="module")
def dictation(speech_clips):
    """Three clips with a second of silence before, between and after: (audio, each clip's (start, end) s)."""
    pause = np.zeros(int(PAUSE_SECONDS * SR), np.float32)
    parts, spans, t = [pause], [], PAUSE_SECONDS
    for clip in speech_clips[:3]:
        parts += [clip.audio, pause]
        spans.append((t, t + len(clip.audio) / SR))
        t += len(clip.audio) / SR + PAUSE_SECONDS
    return np.concatenate(parts), spans


def test_no_audio_and_silence_have_no_regions():
    assert vad.speech_regions(np.zeros(0, np.float32)) == []
    assert vad.speech_regions(np.zeros(SR * 3, np.float32)) == []


def test_regions_are_seconds_inside_the_clips(dictation):
    audio, spans = dictation
    regions = vad.speech_regions(audio, speech_pad_ms=30)
    assert regions and all(0 <= s < e <= len(audio) / SR for s, e in regions)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(regions))
    # every region lies within one clip (plus the padding); each clip has at least one
    pad = 0.03 + 1e-9
    owners = [[i for i, (cs, ce) in enumerate(spans) if cs - pad <= s and e <= ce + pad] for s, e in regions]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == set(range(len(spans)))


def test_max_speech_splits_long_regions(dictation):
    audio, _ = dictation
    regions = vad.speech_regions(audio, max_speech_s=1.0, min_speech_ms=0)
    assert all(e - s <= 1.0 + 1e-9 for s, e in regions)
    assert len(regions) > len(vad.speech_regions(audio))


def test_segment_and_transcribe_pass_their_config(dictation):
    audio, _ = dictation
    seg = SegmentConfig(vad_threshold=0.6, min_pause_ms=300, speech_pad_ms=50)
    assert segment_regions(audio, seg) == vad.speech_regions(
        audio, threshold=0.6, min_silence_ms=300, speech_pad_ms=50, min_speech_ms=MIN_SPEECH_MS
    )
    tr = TranscribeConfig(vad_threshold=0.6, min_pause_ms=300, speech_pad_ms=50, max_chunk_seconds=2.0)
    seconds = vad.speech_regions(
        audio, threshold=0.6, min_silence_ms=300, speech_pad_ms=50, min_speech_ms=0, max_speech_s=2.0
    )
    samples = longform.speech_regions(audio, tr)
    assert samples == [(round(s * SR), round(e * SR)) for s, e in seconds]
    assert all(isinstance(x, int) for pair in samples for x in pair)


def test_missing_faster_whisper_is_one_clear_error(monkeypatch):
    vad._backend.cache_clear()
    monkeypatch.setitem(sys.modules, "faster_whisper.vad", None)  # import of it now fails
    try:
        with pytest.raises(DictuneError, match="needs faster-whisper"):
            vad.speech_regions(np.zeros(SR, np.float32))
    finally:
        vad._backend.cache_clear()
