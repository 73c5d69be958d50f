"""When speech happens in a recording, for the segment stage: speech regions and timed words.

Speech regions come from the one VAD wrapper, pipeline/vad.py (the gaps between regions are the
pauses). Timed words come from the base model: faster-whisper (CTranslate2, int8) for a builtin or a
CTranslate2 directory, else the transformers pipeline with word timestamps on the Hugging Face model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline import alignment, vad
from pipeline.config import SegmentConfig

logger = logging.getLogger("dictune")

SAMPLE_RATE = vad.SAMPLE_RATE  # Hz: the VAD's and the base model's input (and the pieces written)
MIN_SPEECH_MS = 250  # shorter speech regions are dropped (silero-vad's default; segment's as before)

WordTimer = Callable[[np.ndarray], list[alignment.HypWord]]


# ---------------------------------------------------------------------------------------------- VAD


def speech_regions(samples: np.ndarray, options: SegmentConfig) -> list[tuple[float, float]]:
    """(start, end) seconds of each speech region in 16 kHz audio (pipeline/vad.py, segment's settings)."""
    return vad.speech_regions(
        samples,
        threshold=options.vad_threshold,
        min_silence_ms=options.min_pause_ms,
        speech_pad_ms=options.speech_pad_ms,
        min_speech_ms=MIN_SPEECH_MS,
    )


# ---------------------------------------------------------------------------------------------- word timestamps


def load_word_timer(
    spec: str, options: SegmentConfig, threads: int = 0, cache_dir: str | None = None
) -> WordTimer:
    """faster-whisper on the CTranslate2 weights when the spec has them, else the transformers pipeline."""
    ct2_dir = _ct2_dir(spec)
    if ct2_dir is not None:
        try:
            import faster_whisper  # noqa: F401
        except ImportError:
            logger.warning("segment: faster-whisper is not installed; using transformers (slower)")
        else:
            logger.info("segment: word timestamps from faster-whisper on %s", ct2_dir)
            return FasterWhisperTimer(ct2_dir, threads, options.beam_size)
    from pipeline.models import resolve_model

    model_dir = resolve_model(spec, cache_dir=cache_dir)
    logger.info("segment: word timestamps from transformers on %s", model_dir)
    return TransformersTimer(model_dir, threads, options.beam_size)


def _ct2_dir(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    if path.is_dir():
        return path if (path / "model.bin").is_file() else None
    from pipeline.models import BUILTINS, builtin_ct2_dir

    if spec in BUILTINS:
        return Path(builtin_ct2_dir(spec))
    return None


class FasterWhisperTimer:
    """Timed words from faster-whisper (int8 on CPU), no VAD filter, no conditioning on previous text."""

    def __init__(self, ct2_dir: Path, threads: int = 0, beam_size: int = 1):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(ct2_dir), device="cpu", compute_type="int8", cpu_threads=threads)
        self.language = "en" if self.model.model.is_multilingual else None
        self.beam_size = beam_size

    def __call__(self, samples: np.ndarray) -> list[alignment.HypWord]:
        segments, _ = self.model.transcribe(
            np.asarray(samples, dtype=np.float32),
            language=self.language,
            beam_size=self.beam_size,
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return [alignment.HypWord(w.word, w.start, w.end) for s in segments for w in (s.words or ())]


class TransformersTimer:
    """Timed words from the transformers ASR pipeline (30 s chunks, cross-attention word timestamps)."""

    def __init__(self, model_dir: Path, threads: int = 0, beam_size: int = 1):
        import torch
        from transformers import pipeline

        if threads:
            torch.set_num_threads(threads)
        self.pipe = pipeline(
            "automatic-speech-recognition", model=str(model_dir), device="cpu", dtype=torch.float32
        )
        multilingual = bool(getattr(self.pipe.model.generation_config, "is_multilingual", False))
        self.generate_kwargs = {"num_beams": beam_size, **({"language": "en"} if multilingual else {})}

    def __call__(self, samples: np.ndarray) -> list[alignment.HypWord]:
        out = self.pipe(
            {"raw": np.asarray(samples, dtype=np.float32), "sampling_rate": SAMPLE_RATE},
            chunk_length_s=30,
            ignore_warning=True,  # chunked long-form is what we want here: the words, not the best text
            return_timestamps="word",
            generate_kwargs=self.generate_kwargs,
        )
        words = []
        for chunk in out.get("chunks", []):
            start, end = chunk["timestamp"]
            start = float(start) if start is not None else (words[-1].end if words else 0.0)
            words.append(alignment.HypWord(chunk["text"], start, float(end) if end is not None else start))
        return words
