"""The two decoding engines of `dictune transcribe`, behind one small interface.

    engine = load_engine("tiny.en", adapter_dir=None, options=TranscribeConfig(engine="ct2"))
    texts = engine.decode_chunks([chunk1, chunk2], prompt="pleural effusion, atelectasis")   # <= 30 s each
    segments = engine.decode_sequential(audio, prompt=None)          # any length, timestamped windows

`hf`   transformers (pipeline.inference.hf: HfEngine around Transcriber, batched generate); an adapter is
       checked against the base (pipeline.export.check_adapter) and merged on load; a CT2 model is
       imported first.
`ct2`  faster-whisper on a CTranslate2 dir (pipeline.inference.ct2: compute type int8 by default on CPU):
       a builtin's original CT2 weights or a CT2 dir are used as they are; a Hugging Face dir, with or
       without an adapter, is exported once into <cache>/exports/ (pipeline.export.cached_ct2_export) and
       reused after.
`decode_chunks` runs the same greedy/beam decoding on both engines: one window per chunk, no timestamps,
the prompt (if any) before every chunk, a batch of chunks per encoder/decoder call. With `with_words=True`
it returns Decoded results instead of strings: the same text, and its words with the probability the
decoder gave them (pipeline.inference.confidence; the review page of `dictune serve` marks the low ones).

Nothing here logs transcript text above DEBUG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.config import TranscribeConfig
from pipeline.errors import DictuneError
from pipeline.inference.confidence import Word

SAMPLE_RATE = 16000  # Hz
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # one Whisper window; longer audio takes the long-form path of generate
WHISPER_MAX_TOKENS = 448  # decoder context of every Whisper model (prompt + start tokens + output)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the file
    end: float  # seconds
    text: str  # as decoded (spoken form; dictation commands are rendered later)
    words: tuple[Word, ...] = ()  # the text's words with their probabilities, when asked for (else none)


@dataclass(frozen=True)
class Decoded:
    """One chunk's transcript with its words' probabilities (decode_chunks(..., with_words=True))."""

    text: str  # exactly the text decode_chunks returns without with_words
    words: tuple[Word, ...]  # its words, in order, each with the lowest probability of its tokens


class Engine(Protocol):
    name: str  # hf | ct2
    model_path: Path  # the directory actually decoded with

    def decode_chunks(
        self, chunks: list[np.ndarray], prompt: str | list[str | None] | None, with_words: bool = False
    ) -> list[str] | list[Decoded]: ...

    def decode_sequential(self, audio: np.ndarray, prompt: str | None) -> list[Segment]: ...

    def prompt_tokens(self, text: str) -> list[int]: ...

    def max_prompt_tokens(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...


def load_engine(
    spec: str, adapter_dir: str | os.PathLike | None, options: TranscribeConfig, cache_dir: str | None = None
) -> Engine:
    """The engine options.engine names, for model `spec` (builtin, HF dir, CT2 dir) plus an optional adapter."""
    adapter = Path(adapter_dir) if adapter_dir else None
    if options.engine == "hf":
        from pipeline.inference.hf import HfEngine

        return HfEngine(spec, adapter, options, cache_dir)
    if options.engine == "ct2":
        from pipeline.inference.ct2 import Ct2Engine

        return Ct2Engine(spec, adapter, options, cache_dir)
    raise DictuneError(f"engine {options.engine!r}: choose hf or ct2")


def fit_prompt_terms(engine: Engine, terms: list[str], max_tokens: int) -> tuple[str, int]:
    """The longest prefix of `terms` whose prompt fits in max_tokens: (prompt text, terms used)."""
    from pipeline.context import fit_terms

    return fit_terms(lambda text: len(engine.prompt_tokens(text)), terms, max_tokens)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
