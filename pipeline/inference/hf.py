"""Batched short-form Whisper transcription with Hugging Face transformers, and the `hf` engine on it.

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

Encoder states: Whisper always encodes a 30 s window, and at tiny.en size on one CPU thread the encoder is
about 70% of greedy decoding. Systems that share an encoder (the base model with and without a prompt, and
a decoder-only adapter on it) can share its outputs: `encode` computes them in the batches `transcribe`
uses, and `transcribe(..., encoder_states=...)` decodes from them, giving the same tokens as decoding from
the audio. `pipeline.inference.encoder_states.EncoderStateStore` keeps them on disk per set of clips,
keyed by a hash of the encoder's weights, the feature settings, the precision, the batch size and the audio.

`HfEngine` is the `hf` engine of `dictune transcribe` (pipeline.inference.engines): a Transcriber for
batched chunks, transformers' long-form generate for sequential decoding.

Nothing here logs transcript text above DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import DictuneError
from pipeline.inference.confidence import Word
from pipeline.inference.engines import WINDOW_SAMPLES, Decoded, Segment, first_line

if TYPE_CHECKING:
    from pipeline.config import TranscribeConfig

logger = logging.getLogger("dictune")

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
ENCODER_STATES_VERSION = 1  # bump when the way encoder states are computed or stored changes
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
        self.model, self.encoder_adapted = _load_model(self.model_dir, self.adapter_dir, device, dtype)
        self.max_prompt_tokens = self.model.config.max_target_positions // 2 - 1
        self._encoder_key: str | None = None

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
        self,
        audio_arrays: Sequence[np.ndarray],
        prompt: str | Sequence[str | None] | None = None,
        progress: bool = False,
        encoder_states: Any = None,
        with_words: bool = False,
    ) -> list[str] | list[Decoded]:
        """One transcript per array (mono float, 16 kHz, <= 30 s), in the order given. `prompt` is one context
        for all arrays or one per array (None: none); arrays with the same context share batches. With
        encoder_states (from `encode` on the same arrays, row i for array i) the encoder is not run again.
        With_words: Decoded results (the same texts, and their words' probabilities)."""
        self._check(audio_arrays)
        if encoder_states is not None and len(encoder_states) != len(audio_arrays):
            raise DictuneError(
                f"transcription: {len(encoder_states)} encoder states for {len(audio_arrays)} inputs"
            )
        prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * len(audio_arrays)
        if len(prompts) != len(audio_arrays):
            raise DictuneError(f"transcription: {len(prompts)} prompts for {len(audio_arrays)} inputs")
        groups: dict[str | None, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p.strip() if p and p.strip() else None, []).append(i)
        texts: list[Decoded] = [Decoded("", ())] * len(audio_arrays)
        for text, indices in groups.items():
            prompt_ids = self._prompt_ids(text)
            for batch in self._batches([audio_arrays[i] for i in indices], progress and len(groups) == 1):
                rows = [indices[b] for b in batch]
                if encoder_states is None:
                    inputs = {"input_features": self._features([audio_arrays[i] for i in rows])}
                else:
                    inputs = {"encoder_outputs": self._encoder_outputs([encoder_states[i] for i in rows])}
                for index, out in zip(rows, self._decode_batch(inputs, prompt_ids, with_words)):
                    texts[index] = out
        return texts if with_words else [d.text for d in texts]

    def encode(self, audio_arrays: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
        """The encoder's outputs, float32 (inputs, frames, d_model), computed in the batches `transcribe` uses."""
        import torch

        self._check(audio_arrays)
        encoder = self.model.get_encoder()
        states: np.ndarray | None = None
        for batch in self._batches(audio_arrays, progress, desc="encoding"):
            with torch.inference_mode(), self._autocast():
                out = encoder(self._features([audio_arrays[i] for i in batch])).last_hidden_state
            out = out.float().cpu().numpy()
            if states is None:
                states = np.empty((len(audio_arrays), *out.shape[1:]), dtype=np.float32)
            states[batch] = out
        return states if states is not None else np.empty((0, 0, 0), dtype=np.float32)

    def encoder_key(self) -> str:
        """A hash of what an encoder output depends on besides the audio: the encoder's weights, the
        feature-extractor settings, the precision and the batch size (batches are encoded together)."""
        if self._encoder_key is None:
            from pipeline.files import sha256_json
            from pipeline.training.encoder_cache import model_key

            precision = "bf16" if self.options.bf16 else str(self.model.dtype)
            weights = model_key(self.model.get_encoder(), self.processor.feature_extractor, precision, "float32")
            self._encoder_key = sha256_json(
                {"version": ENCODER_STATES_VERSION, "weights": weights, "batch_size": self.batch_size}
            )
        return self._encoder_key

    def _check(self, audio_arrays: Sequence[np.ndarray]) -> None:
        for i, audio in enumerate(audio_arrays):
            if np.ndim(audio) != 1:
                raise DictuneError(f"transcription: input {i} is not mono 1-D audio (shape {np.shape(audio)})")
            if len(audio) > MAX_SECONDS * SAMPLE_RATE + 1:
                raise DictuneError(f"transcription: input {i} is longer than {MAX_SECONDS:.0f} s; segment it first")

    def _batches(
        self, audio_arrays: Sequence[np.ndarray], progress: bool = False, desc: str = "transcribing"
    ) -> list[list[int]]:
        """Input indices, longest first, in batches (a batch then finishes decoding together)."""
        from tqdm.auto import tqdm

        order = sorted(range(len(audio_arrays)), key=lambda i: -len(audio_arrays[i]))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return tqdm(batches, desc=desc, unit="batch", disable=None if progress else True)

    def _features(self, arrays: list[np.ndarray]) -> Any:
        features = self.processor.feature_extractor(
            [np.asarray(a, dtype=np.float32) for a in arrays], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        return features.to(self.device, dtype=self.model.dtype)

    def _encoder_outputs(self, states: list[np.ndarray]) -> Any:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        hidden = torch.from_numpy(np.stack([np.asarray(s, dtype=np.float32) for s in states]))
        return BaseModelOutput(last_hidden_state=hidden.to(self.device, dtype=self.model.dtype))

    def _decode_batch(self, inputs: dict[str, Any], prompt_ids: Any, with_words: bool) -> list[Decoded]:
        import torch

        # word probabilities for greedy decoding only, as on the ct2 engine (Whisper's generate returns beam
        # indices that compute_transition_scores cannot follow): with num_beams > 1 the words are left empty
        with_words = with_words and self.options.num_beams == 1
        extra = {"output_scores": True, "return_dict_in_generate": True} if with_words else {}
        with torch.inference_mode(), self._autocast():
            tokens = self.model.generate(**inputs, **self._generate_kwargs(prompt_ids), **extra)
        sequences = tokens if isinstance(tokens, torch.Tensor) else tokens["sequences"]
        texts = [self._decode(row) for row in sequences.tolist()]
        for text in texts:
            logger.debug("transcript: %s", text)
        if not with_words:
            return [Decoded(text, ()) for text in texts]
        return [Decoded(text, tuple(words)) for text, words in zip(texts, self._words(tokens))]

    def _words(self, generated: Any) -> list[list[Word]]:
        """Each row's words, from the probability of each generated token over the tokens the decoder could
        choose (transformers' compute_transition_scores: log-softmax of the greedy decode's processed scores)."""
        from pipeline.inference.confidence import group_words

        steps = self.model.compute_transition_scores(
            generated["sequences"], generated["scores"], normalize_logits=True
        )
        steps = steps.float().exp().cpu().numpy()
        ids = generated["sequences"][:, -steps.shape[1] :].tolist()
        end = self.processor.tokenizer.eos_token_id  # <|endoftext|>; every special token's id is above it
        tokenizer = self.processor.tokenizer
        out = []
        for row_ids, row_probs in zip(ids, steps):
            row = list(zip(row_ids, row_probs.tolist()))
            row = row[: next((k for k, (t, _) in enumerate(row) if t == end), len(row))]
            kept = [(t, p) for t, p in row if t < end]
            out.append(group_words([t for t, _ in kept], [p for _, p in kept], tokenizer.decode))
        return out

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


def fit_prompt(processor: Any, terms: Sequence[str], max_tokens: int) -> tuple[str, int]:
    """The longest prefix of `terms` whose term-list prompt takes at most max_tokens: (text, terms used)."""
    from pipeline.context import fit_terms

    return fit_terms(lambda text: prompt_token_count(processor, text), terms, max_tokens)


def _load_model(model_dir: Path, adapter_dir: Path | None, device: str, dtype: Any) -> tuple[Any, bool]:
    """(model in eval mode, whether an adapter changed its encoder)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    try:
        model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        raise DictuneError(f"{model_dir}: not a Hugging Face Whisper model directory ({e})") from e
    encoder_adapted = False
    if adapter_dir is not None:
        model, encoder_adapted = _merge_adapter(model, adapter_dir)
    return model.to(device).eval(), encoder_adapted


def _merge_adapter(model: Any, adapter_dir: Path) -> tuple[Any, bool]:
    """Merge a peft adapter into the weights (decoding is then as fast as the base); also says whether it
    adapts any encoder module."""
    from pipeline.models.merge import merge_adapter

    try:
        merged = merge_adapter(model, adapter_dir)
    except pickle.UnpicklingError as e:  # torch's multi-line advice to unpickle anyway is not repeated
        raise DictuneError(f"{adapter_dir}: refused: a pickle holding more than plain tensors") from e
    except (OSError, ValueError) as e:
        raise DictuneError(f"{adapter_dir}: not a peft adapter for this model ({e})") from e
    return merged.model, merged.encoder_adapted


# ------------------------------------------------------------------------------------- hf engine


class HfEngine:
    name = "hf"

    def __init__(self, spec: str, adapter: Path | None, options: TranscribeConfig, cache_dir: str | None):
        from pipeline.export import check_adapter
        from pipeline.models import resolve_model

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
            raise DictuneError(f"{adapter or self.model_path}: cannot be loaded ({first_line(e)})") from e

    def decode_chunks(
        self, chunks: list[np.ndarray], prompt: str | list[str | None] | None, with_words: bool = False
    ) -> list[str] | list[Decoded]:
        """One context for all chunks, or one per chunk; with_words: Decoded results."""
        return self.transcriber.transcribe(chunks, prompt=prompt, with_words=with_words) if chunks else []

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
