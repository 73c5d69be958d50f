"""eSpeak NG (Debian `espeak-ng`): formant synthesis, ~270x real time, robotic (general WER 8-17 %).

Voice names are espeak-ng voices with an optional variant: "en-us", "en-us+m3", "en-gb-x-rp+f2".
The rate maps to words per minute (175 * rate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.tts import Voice
from pipeline.tts._process import require, run_to_wav

BASE_WORDS_PER_MINUTE = 175  # espeak-ng's default speed
INSTALL_HINT = "apt-get install -y espeak-ng"


class EspeakSynth:
    def __init__(self, voice: Voice):
        self.program = require("espeak-ng", INSTALL_HINT)
        self.voice = voice

    def synthesize(self, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
        speed = str(round(BASE_WORDS_PER_MINUTE * self.voice.rate))
        return run_to_wav(
            [self.program, "-v", self.voice.name, "-s", speed, "-f", "{text}", "-w", "{wav}"], text
        )


def load(voice: Voice, voices_dir: Path) -> EspeakSynth:
    return EspeakSynth(voice)
