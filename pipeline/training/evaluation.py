"""Dev evaluation during training: teacher-forced loss, greedy transcripts, domain-term error and WER.

Scores come from the project's scoring normalizer and lexicon (pipeline.scoring_form) and metrics
(pipeline.metrics), exactly as the evaluate stage computes them.

Term error = 1 - term recall: the share of lexicon-term occurrences in the references that the
hypothesis does not reproduce at the aligned position. Transcripts are never logged above DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.training.data import SpeechDataset, TrainItem, load_waveform, log_mel

logger = logging.getLogger("dictune")


@dataclass(frozen=True)
class DevScores:
    loss: float | None  # teacher-forced cross-entropy: token mean per batch, averaged over items
    wer: float | None  # word error rate on the scoring form
    term_error: float | None  # 1 - recall of lexicon terms (None without lexicon or term occurrences)
    items: int  # utterances scored

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class EvalContext:
    loss_module: Any  # the unwrapped WhisperSeq2SeqLoss (its .whisper generates)
    processor: Any  # WhisperProcessor
    collator: Any  # data.Collator
    autocast: Callable[[], contextlib.AbstractContextManager]  # the training precision
    device: Any
    batch_size: int
    max_new_tokens: int
    language: str | None  # multilingual models only
    terms: Any  # pipeline.lexicon.Lexicon, or None without a lexicon
    encoder_cache: Any = None  # EncoderCache in the fast mode


def evaluate_split(ctx: EvalContext, items: Sequence[TrainItem]) -> DevScores:
    """Teacher-forced loss, then greedy transcripts scored against the items' scoring-form text."""
    import torch

    dataset = SpeechDataset(items, seed=0, encoder_cache=ctx.encoder_cache)
    total = 0.0
    for start in range(0, len(items), ctx.batch_size):
        batch = ctx.collator([dataset[i] for i in range(start, min(start + ctx.batch_size, len(items)))])
        inputs = {k: v.to(ctx.device) for k, v in batch.items() if k != "index"}
        with torch.inference_mode(), ctx.autocast():
            total += float(ctx.loss_module(**inputs)) * len(batch["labels"])
    hyps = transcribe(
        ctx.loss_module.whisper,
        ctx.processor,
        items,
        ctx.batch_size,
        ctx.autocast,
        ctx.max_new_tokens,
        ctx.language,
        ctx.encoder_cache,
    )
    wer, term_error = score([item.text_norm for item in items], hyps, ctx.terms)
    return DevScores(total / len(items), wer, term_error, len(items))


# ---------------------------------------------------------------------------------------------- text


def load_terms(path: str | Path | None) -> Any:
    """The lexicon of config.lexicon as a pipeline.lexicon.Lexicon (None without one)."""
    from pipeline.lexicon import load_lexicon

    return load_lexicon(path) if path else None


def score(refs_norm: Sequence[str], hyps: Sequence[str], lexicon: Any) -> tuple[float | None, float | None]:
    """(WER, term error) of scoring-form references against raw hypotheses, with the same metrics as
    the evaluate stage (pipeline.metrics: term error = 1 - recall of lexicon-term occurrences)."""
    from pipeline.metrics import score as score_all
    from pipeline.scoring_form import normalize_for_scoring

    scores = score_all(list(refs_norm), [normalize_for_scoring(h) for h in hyps], lexicon, normalizer=None)
    return scores.wer.rate, (scores.terms.error_rate if scores.terms is not None else None)


# ---------------------------------------------------------------------------------------------- decoding


def transcribe(
    whisper: Any,
    processor: Any,
    items: Sequence[TrainItem],
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager],
    max_new_tokens: int,
    language: str | None,
    encoder_cache: Any = None,
) -> list[str]:
    """Greedy transcripts of the items (cached encoder outputs are used when a cache is given)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    device = next(whisper.parameters()).device
    kwargs: dict[str, Any] = {"num_beams": 1, "do_sample": False, "max_length": max_new_tokens}
    if language:
        kwargs.update(language=language, task="transcribe")
    texts: list[str] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        if encoder_cache is not None:
            states = torch.stack([encoder_cache.load(item) for item in batch]).to(device)
            inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=states)}
        else:
            features = log_mel(processor.feature_extractor, [load_waveform(i.audio_path) for i in batch])
            inputs = {"input_features": features.to(device)}
        with torch.inference_mode(), autocast():
            out = whisper.generate(**inputs, **kwargs)
        sequences = out if isinstance(out, torch.Tensor) else out["sequences"]
        decoded = processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        texts.extend(t.strip() for t in decoded)
    for text in texts:
        logger.debug("dev transcript: %s", text)
    return texts
