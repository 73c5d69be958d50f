"""Final artifacts: the peft adapter and a merged plain-transformers model directory.

    adapter/   adapter_config.json + adapter_model.safetensors (+ processor files), for
               PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained(base), "adapter")
    merged/    config.json, model.safetensors, generation_config.json and the processor files, for
               WhisperForConditionalGeneration.from_pretrained("merged") with no peft installed

The merged model is built from a fresh float32 copy of the base with the saved adapter merged in, so it
carries the base model's own config (no training-only settings such as SpecAugment) and generation
config. Both directories appear atomically. `adapted_model` finds what a training run left, for the stages
and tools that decode with it (evaluate, transcribe, curve).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.files import atomic_dir
from pipeline.training.model_setup import load_base

logger = logging.getLogger("dictune")


def adapted_model(
    config: Config, base_dir: Path, train_dir: Path | None = None
) -> tuple[Path, Path | None] | None:
    """(model dir, adapter dir or None) of the adapted system in train_dir (default: the train stage's
    folder), or None when train has not run."""
    train_dir = train_dir or config.stage_dir("train")
    merged, adapter = train_dir / "merged", train_dir / "adapter"
    if (merged / "config.json").is_file():
        return merged, None
    if (adapter / "adapter_config.json").is_file():
        return base_dir, adapter
    return None


def export_adapter(peft_model: Any, processor: Any, out_dir: Path) -> Path:
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
    logger.info("adapter written to %s", out_dir)
    return out_dir


def export_merged_from_adapter(base_dir: Path, adapter_dir: Path, processor: Any, out_dir: Path) -> Path:
    from pipeline.models.merge import merge_adapter

    base = load_base(base_dir)
    merged = merge_adapter(base, adapter_dir).model
    return _save_model(merged, processor, out_dir)


def export_full(whisper: Any, base_dir: Path, processor: Any, out_dir: Path) -> Path:
    """A fully fine-tuned model, saved with the base model's config and generation config."""
    import torch

    fresh = load_base(base_dir)
    with torch.no_grad():
        fresh.load_state_dict(whisper.state_dict())
    return _save_model(fresh, processor, out_dir)


def _save_model(model: Any, processor: Any, out_dir: Path) -> Path:
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(str(tmp))
    logger.info("merged model written to %s", out_dir)
    return out_dir
