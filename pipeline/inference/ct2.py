"""The `ct2` engine of `dictune transcribe`: faster-whisper (CTranslate2) decoding.

A builtin's original CT2 weights or a CT2 dir are used as they are; a Hugging Face dir, with or without an
adapter, is exported once into <cache>/exports/ (pipeline.export.cached_ct2_export) and reused after.
The interface is pipeline.inference.engines.Engine.

Nothing here logs transcript text above DEBUG.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import TranscribeConfig
from pipeline.errors import DictuneError
from pipeline.inference.confidence import Word
from pipeline.inference.engines import WHISPER_MAX_TOKENS, Decoded, Segment, first_line

logger = logging.getLogger("dictune")


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
            raise DictuneError(f"{self.model_path}: faster-whisper cannot load it ({first_line(e)})") from e
        self.tokenizer = self._tokenizer()

    def _tokenizer(self) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        multilingual = self.model.model.is_multilingual
        language = self.options.language if multilingual else None
        return Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe", language=language)

    def decode_chunks(
        self, chunks: list[np.ndarray], prompt: str | list[str | None] | None, with_words: bool = False
    ) -> list[str] | list[Decoded]:
        """One window per chunk, batched, no timestamps: faster-whisper's batched decoding step. One
        context for all chunks, or one per chunk; CTranslate2 needs the start token at the same position in
        every row, so a batch holds chunks whose contexts take the same number of tokens. With_words: Decoded
        results (the same texts, and their words' probabilities)."""
        prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * len(chunks)
        starts = [self._start_tokens(p) for p in prompts]
        order = sorted(range(len(chunks)), key=lambda i: (len(starts[i]), -len(chunks[i])))
        out: dict[int, Decoded] = {}
        size, i = self.options.batch_size, 0
        while i < len(order):
            batch = [j for j in order[i : i + size] if len(starts[j]) == len(starts[order[i]])]
            decoded = self._decode_batch([chunks[j] for j in batch], [starts[j] for j in batch], with_words)
            out.update(zip(batch, decoded))
            i += len(batch)
        return [out[i] if with_words else out[i].text for i in range(len(chunks))]

    def _start_tokens(self, prompt: str | None) -> list[int]:
        previous = self.prompt_tokens(prompt)[1:] if prompt and prompt.strip() else []
        return self.model.get_prompt(self.tokenizer, previous_tokens=previous, without_timestamps=True)

    def _decode_batch(self, arrays: list[np.ndarray], starts: list[list[int]], with_words: bool) -> list[Decoded]:
        from faster_whisper.transcribe import get_suppressed_tokens

        m = self.model
        features = np.stack([self._features(a) for a in arrays])
        max_length = min(WHISPER_MAX_TOKENS, len(starts[0]) + self.options.max_new_tokens)
        suppressed = get_suppressed_tokens(self.tokenizer, [-1])
        # CTranslate2 4.x returns each step's logits for greedy decoding only (beam search: empty views),
        # so with num_beams > 1 the words come back without probabilities (an empty tuple)
        with_words = with_words and self.options.num_beams == 1
        results = m.model.generate(
            m.encode(features), starts, beam_size=self.options.num_beams, max_length=max_length,
            suppress_blank=True, suppress_tokens=suppressed, return_logits_vocab=with_words,
        )  # fmt: skip
        out = []
        for r in results:
            ids = r.sequences_ids[0]
            text = self.tokenizer.decode(ids).strip()
            logger.debug("transcript: %s", text)
            words = self._words(ids, r.logits[0], suppressed) if with_words else []
            out.append(Decoded(text, tuple(words)))
        return out

    def _words(self, ids: list[int], logits: list[Any], suppressed: tuple[int, ...]) -> list[Word]:
        """The words of one decoded row: each token's probability from the logits CTranslate2 returns for
        its step (one per generated token), over the tokens the decoder may choose (suppressed ones and, at
        the first step, a blank or end are masked as generate masks them): as transformers' scores give."""
        from pipeline.inference.confidence import group_words

        probs = []
        for step, (token, view) in enumerate(zip(ids, logits)):
            row = np.array(view.to_device(_cpu()) if view.device != "cpu" else view, dtype=np.float64).reshape(-1)
            row[list(suppressed)] = -np.inf
            if step == 0:
                row[[*self.tokenizer.encode(" "), self.tokenizer.eot]] = -np.inf
            top = row.max()
            probs.append(float(np.exp(row[token] - top - np.log(np.exp(row - top).sum()))))
        eot = self.tokenizer.eot
        kept = [(t, p) for t, p in zip(ids, probs) if t < eot]
        return group_words([t for t, _ in kept], [p for _, p in kept], self.tokenizer.decode)

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


def _cpu() -> Any:
    import ctranslate2

    return ctranslate2.Device.cpu


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
