"""Merging a peft (LoRA) adapter into its base model: the one place dictune does it.

    merged = merge_adapter(base_model, "work/train/adapter")
    merged.model             # a plain transformers model: decodes as fast as the base, saves without peft
    merged.encoder_adapted   # whether the adapter changed any encoder module

Used by training's export (train/merged/), `dictune export` (the merged and CT2 formats) and inference
(pipeline.inference.hf: a Transcriber given an adapter). peft's errors propagate; each caller words them
for its own command.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple


class MergedModel(NamedTuple):
    model: Any  # the base model with the adapter's weights merged in, peft wrappers removed
    encoder_adapted: bool  # whether the adapter has LoRA layers in the encoder


def merge_adapter(model: Any, adapter_dir: str | os.PathLike) -> MergedModel:
    """Load the peft adapter in adapter_dir onto `model` and merge it into the weights."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    encoder = peft_model.get_base_model().get_encoder()
    encoder_adapted = any(hasattr(module, "lora_A") for module in encoder.modules())
    return MergedModel(peft_model.merge_and_unload(), encoder_adapted)
