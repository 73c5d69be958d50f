"""Fine-tuning Whisper: data, model setup (LoRA / full), the training loop, the encoder cache, export.

The `train` stage (pipeline/stages/train.py) and `dictune curve` call `fine_tune`, a thin wrapper around
`Trainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_base(config) -> Path:
    """The base model as a local Hugging Face directory (builtins are imported on first use)."""
    from pipeline.models import resolve_model

    return Path(resolve_model(config.model.base, cache_dir=config.model.cache_dir))


def fine_tune(config, out_dir: Path | None = None) -> dict[str, Any]:
    """Train; writes under out_dir (default <work_dir>/train; `dictune curve` gives each point its own)."""
    import torch

    from pipeline.training.trainer import Trainer

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    return Trainer(config, resolve_base(config), out_dir=out_dir).train()
