"""Festival (Debian `festival` + `festvox-us-slt-hts`): the HTS voice slt_hts, ~10x real time.

Voice names map to Festival voice functions (slt_hts -> voice_cmu_us_slt_arctic_hts). HTS voices ignore
`Duration_Stretch`, so the rate is passed to the HTS engine as its speed rate (`-r`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.tts import EngineUnavailable, Voice
from pipeline.tts._process import require, run_to_wav

VOICE_FUNCTIONS = {"slt_hts": "voice_cmu_us_slt_arctic_hts"}
INSTALL_HINT = "apt-get install -y festival festvox-us-slt-hts"


class FestivalSynth:
    def __init__(self, voice: Voice):
        if voice.name not in VOICE_FUNCTIONS:
            raise EngineUnavailable(
                f"festival voice {voice.name!r}: known voices are {', '.join(VOICE_FUNCTIONS)}"
            )
        self.program = require("text2wave", INSTALL_HINT)
        self.voice = voice

    def synthesize(self, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
        setup = (
            f"(begin ({VOICE_FUNCTIONS[self.voice.name]}) (set! hts_engine_params "
            f'(append hts_engine_params (list (list "-r" {self.voice.rate:.4f})))))'
        )
        return run_to_wav([self.program, "-eval", setup, "{text}", "-o", "{wav}"], text)


def load(voice: Voice, voices_dir: Path) -> FestivalSynth:
    return FestivalSynth(voice)
