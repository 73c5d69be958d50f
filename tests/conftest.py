"""Shared fixtures: a tiny random Whisper, the real tiny.en / base imports, synthetic speech clips.

The session runs offline (HF_HUB_OFFLINE=1, set before anything imports huggingface_hub), with one
torch thread, and with a private import cache (DICTUNE_CACHE in a session temp dir) so that tests never
read or write ~/.cache/dictune.

    tiny_whisper_dir   tiny random WhisperForConditionalGeneration (d_model 64, 2+2 layers) with the real
                       tiny.en tokenizer, processor and generation config; loads with from_pretrained
    tiny_en_dir        the real tiny.en, imported from its CT2 package (integration tests)
    base_dir           the real base, assembled from its two part packages and imported (integration)
    speech_clips       10 short English sentences spoken by espeak-ng, 16 kHz mono wav (SpeechClip)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub reads it at import time

import numpy as np
import pytest

TINY_SEED = 1234
TINY_SHAPE = {
    "vocab_size": 51864,  # the real tiny.en vocabulary, timestamps included
    "n_mels": 80,
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_heads": 2,
    "decoder_heads": 2,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "max_source_positions": 1500,
    "max_target_positions": 448,
}
SAMPLE_RATE = 16000  # Hz
ESPEAK_VOICE = "en-us"
ESPEAK_WORDS_PER_MINUTE = 150
SPEECH_SENTENCES = (
    "The weather was cold and windy this morning.",
    "Please send the report to the front desk before noon.",
    "There is no evidence of pneumonia or pleural effusion.",
    "The heart size is within normal limits.",
    "We walked along the river until the sun went down.",
    "Mild degenerative changes are seen in the lumbar spine.",
    "She bought three apples and a loaf of bread.",
    "No acute fracture or dislocation is identified.",
    "The meeting has been moved to Thursday afternoon.",
    "The liver and spleen are unremarkable.",
)


@dataclass(frozen=True)
class SpeechClip:
    path: Path  # 16 kHz mono 16-bit wav
    text: str  # what was spoken
    audio: np.ndarray  # the wav's samples, float32 in [-1, 1]


@pytest.fixture(scope="session", autouse=True)
def _session_environment(tmp_path_factory: pytest.TempPathFactory):
    import torch

    torch.set_num_threads(1)
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("DICTUNE_CACHE", str(tmp_path_factory.mktemp("dictune_cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded tiny random Whisper that speaks real tiny.en token ids; saved with save_pretrained."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from pipeline.models import builtin_ct2_dir
    from pipeline.models.ct2_import import WhisperShape, whisper_config
    from pipeline.models.ct2_meta import (
        build_generation_config,
        build_processor,
        build_tokenizer,
        read_ct2_meta,
        special_ids,
    )

    shape = WhisperShape(**TINY_SHAPE)
    meta = read_ct2_meta(builtin_ct2_dir("tiny.en"))
    # tiny.en's alignment heads name layers this model lacks: use the default (last half of the decoder)
    config = {k: v for k, v in meta.config.items() if k != "alignment_heads"}
    meta = dataclasses.replace(meta, config=config)
    tokenizer = build_tokenizer(meta, shape.vocab_size)
    ids = special_ids(tokenizer, shape.vocab_size)
    generation = build_generation_config(meta, ids, shape.decoder_layers, shape.decoder_heads)
    torch.manual_seed(TINY_SEED)
    model = WhisperForConditionalGeneration(whisper_config(shape, generation)).eval()
    model.generation_config = generation
    out = tmp_path_factory.mktemp("tiny_whisper")
    model.save_pretrained(out)
    build_processor(tokenizer, shape.n_mels).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_en_dir() -> Path:
    """The real tiny.en in Hugging Face format (imported once per session into the temp cache)."""
    from pipeline.models import resolve_model

    return resolve_model("tiny.en")


@pytest.fixture(scope="session")
def base_dir() -> Path:
    """The real multilingual base in Hugging Face format (assembled and imported once per session)."""
    from pipeline.models import resolve_model

    return resolve_model("base")


def _speak(exe: str, text: str, wav: Path) -> None:
    cmd = [exe, "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WORDS_PER_MINUTE), "-w", str(wav), text]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> list[SpeechClip]:
    """Ten short English sentences synthesized with espeak-ng, resampled to 16 kHz."""
    import soundfile
    import soxr

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed: apt-get install -y espeak-ng")
    out = tmp_path_factory.mktemp("speech_clips")
    clips = []
    for index, text in enumerate(SPEECH_SENTENCES):
        raw = out / f"raw_{index:02d}.wav"
        _speak(exe, text, raw)
        audio, rate = soundfile.read(raw, dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE)
        path = out / f"clip_{index:02d}.wav"
        soundfile.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
        raw.unlink()
        clips.append(SpeechClip(path, text, soundfile.read(path, dtype="float32")[0]))
    return clips
