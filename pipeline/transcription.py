"""Batched short-form Whisper transcription with Hugging Face transformers.

    transcriber = Transcriber(model_dir, batch_size=8, num_beams=1)
    texts = transcriber.transcribe(arrays)                     # one string per 16 kHz float array
    texts = transcriber.transcribe(arrays, prompt="pleural effusion, atelectasis")

Each input must be at most 30 s (Whisper's window; segment longer audio first). Inputs are sorted by
length before batching so that a batch finishes decoding together, and returned in the input order.

An optional vocabulary prompt is passed to `generate(prompt_ids=...)`: transformers puts
`<|startofprev|> prompt` before the start-of-transcript tokens of every row of the batch and returns
only the tokens generated after them; `_strip_prompt_tokens` removes anything up to the last
start-of-transcript token anyway, so a prompt never leaks into a transcript. Whisper allows at most
`max_target_positions // 2 - 1` (223) prompt tokens; longer prompts are refused (see `fit_prompt`).

Nothing here logs transcript text above DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DictuneError

logger = logging.getLogger("dictune")

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
MAX_SECONDS = 30.0  # Whisper's window; longer inputs must be segmented first


@dataclass(frozen=True)
class DecodeOptions:
    num_beams: int = 1  # 1 = greedy
    max_new_tokens: int = 200  # per utterance (fewer when a long prompt leaves less decoder context)
    language: str | None = "en"  # for multilingual models only; English-only (.en) models ignore it
    bf16: bool = False  # bfloat16 autocast around generate (CPU or CUDA)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Transcriber:
    """A Whisper model (optionally with a peft adapter merged in) and its processor, ready to decode."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        adapter_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        dtype: Any = None,
        batch_size: int = 8,
        num_beams: int = 1,
        max_new_tokens: int = 200,
        language: str | None = "en",
        bf16: bool = False,
        processor_dir: str | os.PathLike | None = None,
    ):
        if batch_size < 1 or num_beams < 1 or max_new_tokens < 1:
            raise DictuneError("transcription: batch_size, num_beams and max_new_tokens must be >= 1")
        self.model_dir = Path(model_dir)
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.device = device
        self.batch_size = batch_size
        self.options = DecodeOptions(num_beams, max_new_tokens, language, bf16)
        self.processor = load_processor(Path(processor_dir) if processor_dir else self.model_dir)
        self.model = _load_model(self.model_dir, self.adapter_dir, device, dtype)
        self.max_prompt_tokens = self.model.config.max_target_positions // 2 - 1

    # ------------------------------------------------------------------------------------------ prompt

    def fit_prompt(self, terms: Sequence[str], max_tokens: int | None = None) -> tuple[str, int]:
        """The longest prefix of `terms` that fits as a prompt: (prompt text, terms used)."""
        limit = min(max_tokens or self.max_prompt_tokens, self.max_prompt_tokens)
        return fit_prompt(self.processor, terms, limit)

    def _prompt_ids(self, prompt: str | None) -> Any:
        if not prompt or not prompt.strip():
            return None
        import torch

        ids = self.processor.get_prompt_ids(prompt.strip(), return_tensors="pt")
        if len(ids) > self.max_prompt_tokens:
            raise DictuneError(
                f"transcription: the prompt takes {len(ids)} tokens, more than Whisper's limit of "
                f"{self.max_prompt_tokens}; shorten it (fit_prompt picks the terms that fit)"
            )
        return ids.to(self.device, dtype=torch.long)

    # ------------------------------------------------------------------------------------------ decode

    def transcribe(
        self, audio_arrays: Sequence[np.ndarray], prompt: str | None = None, progress: bool = False
    ) -> list[str]:
        """One transcript per array (mono float, 16 kHz, <= 30 s), in the order given."""
        from tqdm.auto import tqdm

        for i, audio in enumerate(audio_arrays):
            if np.ndim(audio) != 1:
                raise DictuneError(f"transcription: input {i} is not mono 1-D audio (shape {np.shape(audio)})")
            if len(audio) > MAX_SECONDS * SAMPLE_RATE + 1:
                raise DictuneError(f"transcription: input {i} is longer than {MAX_SECONDS:.0f} s; segment it first")
        prompt_ids = self._prompt_ids(prompt)
        order = sorted(range(len(audio_arrays)), key=lambda i: -len(audio_arrays[i]))
        texts: list[str] = [""] * len(audio_arrays)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="transcribing", unit="batch", disable=None if progress else True):
            for index, text in zip(batch, self._decode_batch([audio_arrays[i] for i in batch], prompt_ids)):
                texts[index] = text
        return texts

    def _decode_batch(self, arrays: list[np.ndarray], prompt_ids: Any) -> list[str]:
        import torch

        features = self.processor.feature_extractor(
            [np.asarray(a, dtype=np.float32) for a in arrays], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        features = features.to(self.device, dtype=self.model.dtype)
        with torch.inference_mode(), self._autocast():
            tokens = self.model.generate(features, **self._generate_kwargs(prompt_ids))
        sequences = tokens if isinstance(tokens, torch.Tensor) else tokens["sequences"]
        texts = [self._decode(row) for row in sequences.tolist()]
        for text in texts:
            logger.debug("transcript: %s", text)
        return texts

    def _generate_kwargs(self, prompt_ids: Any) -> dict[str, Any]:
        # Whisper's generate adds the start (and prompt) tokens to `max_length` itself and caps the sum at
        # max_target_positions, so `max_length` here counts new tokens; passing `max_new_tokens` instead
        # raises when prompt + output would overflow and warns on every batch.
        kwargs: dict[str, Any] = {
            "num_beams": self.options.num_beams,
            "max_length": self.options.max_new_tokens,
            "do_sample": False,
        }
        if prompt_ids is not None:
            kwargs["prompt_ids"] = prompt_ids
        if getattr(self.model.generation_config, "is_multilingual", False) and self.options.language:
            kwargs.update(language=self.options.language, task="transcribe")
        return kwargs

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.options.bf16:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16)

    def _decode(self, ids: list[int]) -> str:
        ids = _strip_prompt_tokens(ids, self._start_token_id())
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def _start_token_id(self) -> int | None:
        config = self.model.generation_config
        return getattr(config, "decoder_start_token_id", None) or self.model.config.decoder_start_token_id


def _strip_prompt_tokens(ids: list[int], start_token_id: int | None) -> list[int]:
    """Everything after the last start-of-transcript token (a returned prompt would precede it)."""
    if start_token_id is None or start_token_id not in ids:
        return ids
    last = len(ids) - 1 - ids[::-1].index(start_token_id)
    return ids[last + 1 :]


def load_processor(model_dir: str | os.PathLike) -> Any:
    """The WhisperProcessor (feature extractor + tokenizer) saved in a model directory."""
    from transformers import WhisperProcessor

    try:
        return WhisperProcessor.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError) as e:
        raise DictuneError(
            f"{model_dir}: no Whisper processor (tokenizer + feature extractor) could be loaded; "
            "pass processor_dir= the base model's directory"
        ) from e


def prompt_limit(model_dir: str | os.PathLike) -> int:
    """Whisper's prompt budget for a model: max_target_positions // 2 - 1 tokens (223 for OpenAI's)."""
    from transformers import WhisperConfig

    return WhisperConfig.from_pretrained(model_dir).max_target_positions // 2 - 1


def prompt_token_count(processor: Any, prompt: str) -> int:
    """Tokens a prompt takes in the decoder context, `<|startofprev|>` included."""
    return len(processor.get_prompt_ids(prompt))


def fit_prompt(processor: Any, terms: Sequence[str], max_tokens: int, separator: str = ", ") -> tuple[str, int]:
    """The longest prefix of `terms` whose joined prompt takes at most max_tokens: (text, terms used)."""
    lo, hi = 0, len(terms)  # binary search: the token count grows with the prefix length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if prompt_token_count(processor, separator.join(terms[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return separator.join(terms[:lo]), lo


def _load_model(model_dir: Path, adapter_dir: Path | None, device: str, dtype: Any) -> Any:
    import torch
    from transformers import WhisperForConditionalGeneration

    try:
        model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        raise DictuneError(f"{model_dir}: not a Hugging Face Whisper model directory ({e})") from e
    if adapter_dir is not None:
        model = _merge_adapter(model, adapter_dir)
    return model.to(device).eval()


def _merge_adapter(model: Any, adapter_dir: Path) -> Any:
    """Load a peft adapter and merge it into the weights (decoding is then as fast as the base)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    except (OSError, ValueError) as e:
        raise DictuneError(f"{adapter_dir}: not a peft adapter for this model ({e})") from e

