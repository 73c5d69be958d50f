"""Synthetic audio for the data-path tests: speech-like tone bursts with silent edges, written by soundfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

EDGE_SECONDS = 0.5  # digital silence before and after the voiced part


def speech_like(seconds: float, rate: int = 16000, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """Harmonic bursts (~4 syllables/s, 120-220 Hz pitch) with EDGE_SECONDS of silence at both ends."""
    rng = np.random.default_rng(seed)
    voiced = max(0.0, seconds - 2 * EDGE_SECONDS)
    t = np.arange(int(voiced * rate)) / rate
    pitch = 170 + 50 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    body = level * tone * envelope / 2 + 0.002 * rng.standard_normal(len(t))
    edge = np.zeros(int(EDGE_SECONDS * rate))
    out = np.concatenate([edge, body, edge]).astype(np.float32)
    return out[: int(seconds * rate)] if voiced else np.zeros(int(seconds * rate), np.float32)


def write(path: Path, samples: np.ndarray, rate: int = 16000, **kwargs) -> Path:
    """Write samples with soundfile (format from the suffix); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, **kwargs)
    return path
