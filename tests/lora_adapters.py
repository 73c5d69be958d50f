"""Test helpers: random LoRA adapters on a Whisper dir, and a second tiny model of another shape."""

from __future__ import annotations

from pathlib import Path

LORA_RANK = 4
LORA_B_SCALE = 0.5  # lora_B starts at zero (a no-op adapter): perturb it so merging changes the outputs


def make_lora_adapter(base_dir: Path, out_dir: Path, seed: int = 7, targets: list[str] | str | None = None) -> Path:
    """A non-trivial LoRA adapter saved with save_pretrained: on the q/v projections of encoder and
    decoder, or on `targets` (a peft target_modules list or regex)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(seed)
    base = WhisperForConditionalGeneration.from_pretrained(base_dir)
    config = LoraConfig(
        r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules=targets or ["q_proj", "v_proj"]
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * LORA_B_SCALE)
    model.save_pretrained(out_dir)
    return out_dir


def make_other_whisper(base_dir: Path, out_dir: Path, d_model: int = 32) -> Path:
    """A random Whisper like base_dir but with another width: adapters of one do not fit the other."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    config = WhisperConfig.from_pretrained(base_dir)
    config.d_model = d_model
    torch.manual_seed(3)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = WhisperForConditionalGeneration.from_pretrained(base_dir).generation_config
    model.save_pretrained(out_dir)
    WhisperProcessor.from_pretrained(base_dir).save_pretrained(out_dir)
    return out_dir
