"""Load the base Whisper model and make the chosen part of it trainable: LoRA (peft) or full weights,
on the encoder, the decoder or both; SpecAugment settings; gradient checkpointing with input-grad hooks.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import DictuneError
from pipeline.train_config import TrainConfig

logger = logging.getLogger("dictune")

MULTILINGUAL_VOCAB_SIZE = 51865  # multilingual Whisper vocabularies have this many tokens or more


@dataclass
class ModelBundle:
    model: Any  # WhisperForConditionalGeneration, wrapped in a peft PeftModel in lora mode
    processor: Any  # WhisperProcessor (tokenizer with the right prefix tokens + feature extractor)
    is_multilingual: bool
    encoder_trainable: bool  # any trainable parameter inside the encoder
    trainable_params: int
    total_params: int

    @property
    def whisper(self) -> Any:
        """The WhisperForConditionalGeneration inside (LoRA layers are injected in place)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model


def load_processor(model_dir: Path, is_multilingual: bool, language: str, task: str) -> Any:
    from transformers import WhisperProcessor

    try:
        processor = WhisperProcessor.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError) as e:
        raise DictuneError(f"{model_dir}: no Whisper processor could be loaded ({e})") from e
    if is_multilingual:
        processor.tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    else:
        processor.tokenizer.set_prefix_tokens(predict_timestamps=False)
    return processor


def load_base(model_dir: Path, attention: str = "sdpa", quantize: str = "none") -> Any:
    """The base model in float32 (autocast does the low-precision math; weights stay exact), or with its
    linear weights in 4-bit NF4 for QLoRA (quantize=4bit, CUDA only)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    kwargs: dict[str, Any] = {"dtype": torch.float32, "attn_implementation": attention}
    if quantize == "4bit":
        kwargs.update(quantization_config=four_bit_config(), dtype=torch.bfloat16,
                      device_map={"": int(os.environ.get("LOCAL_RANK", "0"))})  # fmt: skip
    try:
        return WhisperForConditionalGeneration.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError) as e:
        raise DictuneError(f"{model_dir}: not a Hugging Face Whisper model directory ({e})") from e


def four_bit_config() -> Any:
    """QLoRA's quantization (Dettmers et al. 2023): NF4 weights, double quantization, bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise DictuneError("train.quantize=4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit layers do not train "
                           "on CPU; use train.quantize=none here")  # fmt: skip
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise DictuneError("train.quantize=4bit needs bitsandbytes: pip install bitsandbytes") from e
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)  # fmt: skip


def is_multilingual_model(model: Any) -> bool:
    flag = getattr(model.generation_config, "is_multilingual", None)
    return bool(flag) if flag is not None else model.config.vocab_size >= MULTILINGUAL_VOCAB_SIZE


def lora_target_regex(adapt: str, modules: Sequence[str]) -> str:
    """A peft target_modules regex (full match) limited to the encoder and/or decoder blocks."""
    parts = {"encoder": "encoder", "decoder": "decoder", "both": "encoder|decoder"}[adapt]
    names = "|".join(re.escape(m) for m in modules)
    return rf"(?:.*\.)?model\.(?:{parts})\.layers\.\d+\.(?:[A-Za-z_]+\.)?(?:{names})"


def setup_model(model_dir: Path, cfg: TrainConfig) -> ModelBundle:
    """Base model + processor, with LoRA or full fine-tuning on the part named by cfg.adapt."""
    model = load_base(model_dir, cfg.attention, cfg.quantize)
    multilingual = is_multilingual_model(model)
    processor = load_processor(model_dir, multilingual, cfg.language, cfg.task)
    configure_spec_augment(model, cfg)
    model.config.use_cache = False
    if cfg.quantize == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.mode == "lora":
        model = _apply_lora(model, cfg)
    else:
        _freeze_for_full(model, cfg.adapt)
    whisper = model.get_base_model() if hasattr(model, "get_base_model") else model
    encoder_trainable = any(p.requires_grad for p in whisper.model.encoder.parameters())
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(whisper, encoder_trainable)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if trainable == 0:
        raise DictuneError(
            f"train.lora_target_modules: {list(cfg.lora_target_modules)} matched no layer of the "
            f"{cfg.adapt} (use names such as q_proj, k_proj, v_proj, out_proj, fc1, fc2)"
        )
    logger.info(
        "trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )
    return ModelBundle(model, processor, multilingual, encoder_trainable, trainable, total)


def configure_spec_augment(model: Any, cfg: TrainConfig) -> None:
    """SpecAugment lives in the model: WhisperModel masks log-mel frames/bins while training."""
    model.config.apply_spec_augment = bool(cfg.spec_augment)
    model.config.mask_time_prob = float(cfg.mask_time_prob)
    model.config.mask_feature_prob = float(cfg.mask_feature_prob)


def spec_augment_active(cfg: TrainConfig) -> bool:
    return bool(cfg.spec_augment) and (cfg.mask_time_prob > 0 or cfg.mask_feature_prob > 0)


def _apply_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_regex(cfg.adapt, cfg.lora_target_modules),
        bias="none",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise DictuneError(
            f"train.lora_target_modules: {list(cfg.lora_target_modules)} matched no layer of the {cfg.adapt} ({e})"
        ) from e


def _freeze_for_full(model: Any, adapt: str) -> None:
    """Full fine-tuning: every weight of the adapted part trains, the rest is frozen.

    The token embedding is shared with the output projection (decoder side); it trains with the decoder.
    """
    for name, param in model.named_parameters():
        in_encoder = name.startswith("model.encoder.")
        param.requires_grad = (adapt == "both") or (in_encoder == (adapt == "encoder"))


def enable_gradient_checkpointing(whisper: Any, encoder_trainable: bool) -> None:
    """Recompute activations in the backward pass; hooks make the block inputs require grad so that the
    frozen conv front end / token embedding do not cut the gradient path to the adapted layers."""
    kwargs = {"use_reentrant": False}
    if hasattr(whisper, "activation_checkpointing_enable"):
        whisper.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5
        whisper.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def _require_grad(_module: Any, _inputs: Any, output: Any) -> None:
        output.requires_grad_(True)

    if encoder_trainable:
        whisper.model.encoder.conv1.register_forward_hook(_require_grad)
    whisper.model.decoder.embed_tokens.register_forward_hook(_require_grad)
