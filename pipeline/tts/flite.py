"""CMU Flite (Debian `flite`): fast diphone/cluster-unit voices slt, rms, awb, kal16 (16 kHz), ~60x real time.

The rate maps to flite's `duration_stretch` (1 / rate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.tts import EngineUnavailable, Voice
from pipeline.tts._process import require, run_to_wav

VOICES = ("slt", "rms", "awb", "kal16", "kal")
INSTALL_HINT = "apt-get install -y flite"


class FliteSynth:
    def __init__(self, voice: Voice):
        if voice.name not in VOICES:
            raise EngineUnavailable(f"flite voice {voice.name!r}: known voices are {', '.join(VOICES)}")
        self.program = require("flite", INSTALL_HINT)
        self.voice = voice

    def synthesize(self, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
        stretch = f"duration_stretch={1.0 / self.voice.rate:.4f}"
        return run_to_wav(
            [self.program, "-voice", self.voice.name, "--setf", stretch, "-f", "{text}", "-o", "{wav}"], text
        )


def load(voice: Voice, voices_dir: Path) -> FliteSynth:
    return FliteSynth(voice)
