"""Run a command-line synthesizer that reads a text file and writes a WAV file; return its samples."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.tts import EngineUnavailable

TIMEOUT_SECONDS = 600  # one rendering; long reports take a few seconds on the fast engines


def require(program: str, install_hint: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise EngineUnavailable(f"{program} is not on PATH; {install_hint}")
    return path


def run_to_wav(args: list[str], text: str) -> tuple[np.ndarray, int]:
    """`args` may contain the placeholders {text} and {wav} (file paths filled in here)."""
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="dictune-tts-") as tmp:
        text_path, wav_path = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_path.write_text(text + "\n", encoding="utf-8")
        filled = [a.replace("{text}", str(text_path)).replace("{wav}", str(wav_path)) for a in args]
        result = subprocess.run(filled, check=False, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        if result.returncode != 0 or not wav_path.exists():
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output file"]
            raise RuntimeError(f"{Path(args[0]).name} exited with {result.returncode}: {detail[0]}")
        audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)
