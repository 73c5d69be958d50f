"""The two decoding engines of `dictune transcribe`, behind one small interface.

    engine = load_engine("tiny.en", adapter_dir=None, options=TranscribeConfig(engine="ct2"))
    texts = engine.decode_chunks([chunk1, chunk2], prompt="pleural effusion, atelectasis")   # <= 30 s each
    segments = engine.decode_sequential(audio, prompt=None)          # any length, timestamped windows

`hf`   transformers (pipeline.transcription.Transcriber, batched generate); an adapter is checked against
       the base (pipeline.export.check_adapter) and merged on load; a CT2 model is imported first.
`ct2`  faster-whisper on a CTranslate2 dir (compute type int8 by default on CPU): a builtin's original
       CT2 weights or a CT2 dir are used as they are; a Hugging Face dir, with or without an adapter, is
       exported once into <cache>/exports/ (pipeline.export.cached_ct2_export) and reused after.
`decode_chunks` runs the same greedy/beam decoding on both engines: one window per chunk, no timestamps,
the prompt (if any) before every chunk, a batch of chunks per encoder/decoder call.

Nothing here logs transcript text above DEBUG.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.config import TranscribeConfig
from pipeline.errors import DictuneError

logger = logging.getLogger("dictune")

SAMPLE_RATE = 16000  # Hz
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # one Whisper window; longer audio takes the long-form path of generate
WHISPER_MAX_TOKENS = 448  # decoder context of every Whisper model (prompt + start tokens + output)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the file
    end: float  # seconds
    text: str  # as decoded (spoken form; dictation commands are rendered later)


class Engine(Protocol):
    name: str  # hf | ct2
    model_path: Path  # the directory actually decoded with

    def decode_chunks(self, chunks: list[np.ndarray], prompt: str | list[str | None] | None) -> list[str]: ...

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
        return HfEngine(spec, adapter, options, cache_dir)
    if options.engine == "ct2":
        return Ct2Engine(spec, adapter, options, cache_dir)
    raise DictuneError(f"engine {options.engine!r}: choose hf or ct2")


def fit_prompt_terms(engine: Engine, terms: list[str], max_tokens: int) -> tuple[str, int]:
    """The longest prefix of `terms` whose prompt fits in max_tokens: (prompt text, terms used)."""
    from pipeline.context import fit_terms

    return fit_terms(lambda text: len(engine.prompt_tokens(text)), terms, max_tokens)


# ---------------------------------------------------------------------------------------------- hf


class HfEngine:
    name = "hf"

    def __init__(self, spec: str, adapter: Path | None, options: TranscribeConfig, cache_dir: str | None):
        from pipeline.export import check_adapter
        from pipeline.models import resolve_model
        from pipeline.transcription import Transcriber

        self.spec, self.adapter, self.options = spec, adapter, options
        self.model_path = Path(resolve_model(spec, cache_dir=cache_dir))
        if adapter is not None:
            check_adapter(self.model_path, adapter)
        _set_torch_threads(options.threads)
        try:
            self.transcriber = Transcriber(
                self.model_path, adapter_dir=adapter, device=options.device, batch_size=options.batch_size,
                num_beams=options.num_beams, max_new_tokens=options.max_new_tokens, language=options.language,
            )  # fmt: skip
        except RuntimeError as e:  # peft/torch load failures the check above did not foresee
            raise DictuneError(f"{adapter or self.model_path}: cannot be loaded ({_first_line(e)})") from e

    def decode_chunks(self, chunks: list[np.ndarray], prompt: str | list[str | None] | None) -> list[str]:
        """One context for all chunks, or one per chunk."""
        return self.transcriber.transcribe(chunks, prompt=prompt) if chunks else []

    def decode_sequential(self, audio: np.ndarray, prompt: str | None) -> list[Segment]:
        """transformers' long-form generate: 30 s windows, each continued from its last timestamp."""
        import torch

        t = self.transcriber
        audio = np.asarray(audio, dtype=np.float32)
        longer = {"truncation": False, "padding": "longest"} if len(audio) > WINDOW_SAMPLES else {}
        inputs = t.processor.feature_extractor(
            audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True, **longer
        )
        kwargs: dict[str, Any] = {"num_beams": t.options.num_beams, "do_sample": False}
        if prompt and prompt.strip():
            kwargs["prompt_ids"] = t.processor.get_prompt_ids(prompt.strip(), return_tensors="pt").to(
                t.device
            )
        if getattr(t.model.generation_config, "is_multilingual", False) and t.options.language:
            kwargs.update(language=t.options.language, task="transcribe")
        with torch.inference_mode():
            out = t.model.generate(
                inputs.input_features.to(t.device, dtype=t.model.dtype),
                attention_mask=inputs.attention_mask.to(t.device), return_timestamps=True, return_segments=True,
                condition_on_prev_tokens=False, **kwargs,
            )  # fmt: skip
        segments = []
        for seg in out["segments"][0]:
            text = t.processor.tokenizer.decode(seg["tokens"], skip_special_tokens=True).strip()
            logger.debug("segment: %s", text)
            if text:
                segments.append(Segment(float(seg["start"]), float(seg["end"]), text))
        return segments

    def prompt_tokens(self, text: str) -> list[int]:
        return list(self.transcriber.processor.get_prompt_ids(text))

    def max_prompt_tokens(self) -> int:
        return self.transcriber.max_prompt_tokens

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"engine": self.name, "model": self.spec, "model_path": str(self.model_path),
                "adapter": str(self.adapter) if self.adapter else None, "device": o.device,
                "num_beams": o.num_beams, "batch_size": o.batch_size, "max_new_tokens": o.max_new_tokens}  # fmt: skip


def _set_torch_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ---------------------------------------------------------------------------------------------- ct2


class Ct2Engine:
    name = "ct2"

    def __init__(self, spec: str, adapter: Path | None, options: TranscribeConfig, cache_dir: str | None):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise DictuneError("the ct2 engine needs faster-whisper: pip install 'dictune[export]'") from e
        self.spec, self.adapter, self.options = spec, adapter, options
        self.model_path = _ct2_dir(spec, adapter, options, cache_dir)
        if not (self.model_path / "tokenizer.json").is_file():
            raise DictuneError(
                f"{self.model_path}: no tokenizer.json; re-export with dictune export --format ct2"
            )
        try:
            self.model = WhisperModel(
                str(self.model_path), device=options.device, compute_type=options.compute_type,
                cpu_threads=options.threads, local_files_only=True,
            )  # fmt: skip
        except (RuntimeError, ValueError) as e:
            raise DictuneError(f"{self.model_path}: faster-whisper cannot load it ({_first_line(e)})") from e
        self.tokenizer = self._tokenizer()

    def _tokenizer(self) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        multilingual = self.model.model.is_multilingual
        language = self.options.language if multilingual else None
        return Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe", language=language)

    def decode_chunks(self, chunks: list[np.ndarray], prompt: str | list[str | None] | None) -> list[str]:
        """One window per chunk, batched, no timestamps: faster-whisper's batched decoding step. One
        context for all chunks, or one per chunk; CTranslate2 needs the start token at the same position in
        every row, so a batch holds chunks whose contexts take the same number of tokens."""
        prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * len(chunks)
        starts = [self._start_tokens(p) for p in prompts]
        order = sorted(range(len(chunks)), key=lambda i: (len(starts[i]), -len(chunks[i])))
        out: dict[int, str] = {}
        size, i = self.options.batch_size, 0
        while i < len(order):
            batch = [j for j in order[i : i + size] if len(starts[j]) == len(starts[order[i]])]
            out.update(zip(batch, self._decode_batch([chunks[j] for j in batch], [starts[j] for j in batch])))
            i += len(batch)
        return [out[i] for i in range(len(chunks))]

    def _start_tokens(self, prompt: str | None) -> list[int]:
        previous = self.prompt_tokens(prompt)[1:] if prompt and prompt.strip() else []
        return self.model.get_prompt(self.tokenizer, previous_tokens=previous, without_timestamps=True)

    def _decode_batch(self, arrays: list[np.ndarray], starts: list[list[int]]) -> list[str]:
        from faster_whisper.transcribe import get_suppressed_tokens

        m = self.model
        features = np.stack([self._features(a) for a in arrays])
        max_length = min(WHISPER_MAX_TOKENS, len(starts[0]) + self.options.max_new_tokens)
        results = m.model.generate(
            m.encode(features), starts, beam_size=self.options.num_beams, max_length=max_length,
            suppress_blank=True, suppress_tokens=get_suppressed_tokens(self.tokenizer, [-1]),
        )  # fmt: skip
        texts = [self.tokenizer.decode(r.sequences_ids[0]).strip() for r in results]
        for text in texts:
            logger.debug("transcript: %s", text)
        return texts

    def _features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel of the audio zero-padded to 30 s, as transformers and openai-whisper compute it (faster-
        whisper pads the normalized log-mel instead, which gives the model another "silence": transcripts
        of the two engines then differed by ~8% WER on espeak speech; padding the audio makes the
        features agree within 4e-5)."""
        m = self.model
        samples = m.feature_extractor.n_samples
        audio = np.asarray(audio[:samples], dtype=np.float32)
        return m.feature_extractor(np.pad(audio, (0, samples - len(audio))))[
            ..., : m.feature_extractor.nb_max_frames
        ]

    def decode_sequential(self, audio: np.ndarray, prompt: str | None) -> list[Segment]:
        """faster-whisper's own long-form loop: timestamped windows, temperature fallback, no conditioning
        on the previous window's text (tiny models loop less)."""
        o = self.options
        segments, _ = self.model.transcribe(
            np.asarray(audio, dtype=np.float32), beam_size=o.num_beams, initial_prompt=prompt or None,
            condition_on_previous_text=False, vad_filter=False, language=self.tokenizer.language_code,
        )  # fmt: skip
        out = []
        for seg in segments:
            logger.debug("segment: %s", seg.text)
            if seg.text.strip():
                out.append(Segment(float(seg.start), float(seg.end), seg.text.strip()))
        return out

    def prompt_tokens(self, text: str) -> list[int]:
        """<|startofprev|> + the prompt's tokens, as the decoder sees them (same count as transformers)."""
        return [self.tokenizer.sot_prev] + self.tokenizer.encode(" " + text.strip())

    def max_prompt_tokens(self) -> int:
        return WHISPER_MAX_TOKENS // 2 - 1

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"engine": self.name, "model": self.spec, "model_path": str(self.model_path),
                "adapter": str(self.adapter) if self.adapter else None, "device": o.device,
                "compute_type": o.compute_type, "num_beams": o.num_beams, "batch_size": o.batch_size,
                "max_new_tokens": o.max_new_tokens}  # fmt: skip


def _ct2_dir(spec: str, adapter: Path | None, options: TranscribeConfig, cache_dir: str | None) -> Path:
    """A CT2 dir for spec (+ adapter): used as is when it already is one, else exported once to the cache."""
    local = Path(spec).expanduser()
    if adapter is None and (local / "model.bin").is_file():
        return local  # a CT2 dir: used as it is (and transformers/torch are never imported)
    from pipeline.export import cached_ct2_export, check_adapter
    from pipeline.models import locate, resolve_model

    source = locate(spec, cache_dir)
    if source.format == "ct2" and adapter is None:
        return source.path
    model_dir = Path(resolve_model(spec, cache_dir=cache_dir))
    if adapter is not None:
        check_adapter(model_dir, adapter)
    return cached_ct2_export(model_dir, adapter, options.export_quantization, cache_dir)
