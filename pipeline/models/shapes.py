"""Whisper sizes by name, random-weight models built from them, and the memory arithmetic of each.

Only tiny.en and base have weights on this machine (pipeline.models.resolve). The bigger sizes exist here
as shapes: `random_model` builds a seeded random-weight Hugging Face dir of any size, with the real
tokenizer of tiny.en (English-only sizes) or base (multilingual ones), so that training, memory and
export code paths of small, medium and large-v3-turbo run on CPU without their weights. large-v3 adds one
language token (vocabulary 51,866 against base's 51,865): its random model keeps the extra row unused.

    dictune model random large-v3-turbo --out DIR      (pipeline/tools/model.py)
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from pipeline.errors import DictuneError
from pipeline.models.ct2_import import WhisperShape

ENCODER_FRAMES = 1500  # Whisper encodes a 30 s window into 1,500 frames, whatever the clip's length
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


def _shape(vocab: int, mels: int, d_model: int, enc: int, dec: int, heads: int) -> WhisperShape:
    return WhisperShape(vocab, mels, d_model, enc, dec, heads, heads, 4 * d_model, 4 * d_model, ENCODER_FRAMES, 448)


# the published architectures (openai/whisper, model card of each size)
SHAPES: dict[str, WhisperShape] = {
    "tiny.en": _shape(51864, 80, 384, 4, 4, 6),
    "tiny": _shape(51865, 80, 384, 4, 4, 6),
    "base": _shape(51865, 80, 512, 6, 6, 8),
    "small": _shape(51865, 80, 768, 12, 12, 12),
    "medium": _shape(51865, 80, 1024, 24, 24, 16),
    "large-v3": _shape(51866, 128, 1280, 32, 32, 20),
    "large-v3-turbo": _shape(51866, 128, 1280, 32, 4, 20),
}


def shape_of(name: str) -> WhisperShape:
    key = name.removeprefix("openai/whisper-")
    if key not in SHAPES:
        raise DictuneError(f"unknown Whisper size {name!r}; sizes: {', '.join(SHAPES)}")
    return SHAPES[key]


def encoder_output_bytes(shape: WhisperShape, dtype: str = "float16") -> int:
    """Bytes of one clip's encoder output (frames x d_model), as the encoder cache stores it."""
    return shape.max_source_positions * shape.d_model * DTYPE_BYTES[dtype]


def parameter_counts(shape: WhisperShape) -> dict[str, int]:
    """Parameters of the encoder, the decoder (token embedding included) and the whole model."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=shape.vocab_size, num_mel_bins=shape.n_mels, d_model=shape.d_model,
                           encoder_layers=shape.encoder_layers, decoder_layers=shape.decoder_layers,
                           encoder_attention_heads=shape.encoder_heads, decoder_attention_heads=shape.decoder_heads,
                           encoder_ffn_dim=shape.encoder_ffn_dim, decoder_ffn_dim=shape.decoder_ffn_dim)  # fmt: skip
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    encoder = sum(p.numel() for p in model.model.encoder.parameters())
    decoder = sum(p.numel() for p in model.model.decoder.parameters())
    return {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}


def random_model(name: str, out: str | Path, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """A random-weight Hugging Face Whisper dir of size `name`, with a real tokenizer and processor."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from pipeline.files import atomic_dir
    from pipeline.models.ct2_import import whisper_config
    from pipeline.models.ct2_meta import (
        build_generation_config,
        build_processor,
        build_tokenizer,
        read_ct2_meta,
        special_ids,
    )
    from pipeline.models.resolve import builtin_ct2_dir

    shape = shape_of(name)
    donor = "tiny.en" if name.endswith(".en") else "base"  # whose tokenizer the model speaks
    meta = read_ct2_meta(builtin_ct2_dir(donor, cache_dir))
    # the donor's alignment heads name layers this size may lack: the default (last half of the decoder)
    meta = dataclasses.replace(meta, config={k: v for k, v in meta.config.items() if k != "alignment_heads"})
    tokens = SHAPES[donor].vocab_size
    tokenizer = build_tokenizer(meta, tokens)
    generation = build_generation_config(meta, special_ids(tokenizer, tokens), shape.decoder_layers,
                                         shape.decoder_heads)  # fmt: skip
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(whisper_config(shape, generation))
    model.generation_config = generation
    out = Path(out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        build_processor(tokenizer, shape.n_mels).save_pretrained(tmp)
    return out


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def refill_weights(model_dir: str | Path, seed: int = 0) -> bool:
    """Rebuild the weights of a random model dir that travelled without them; False if it has weights.

    The config, tokenizer and processor are kilobytes, a random large-v3-turbo's weights 3 GB: a machine
    that cannot build `random_model` (no builtin tokenizer there) gets the small files and refills the
    weights. The same seed gives the same tensors as `random_model` (the model is built the same way).
    """
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    model_dir = Path(model_dir)
    if any((model_dir / name).exists() for name in WEIGHT_FILES):
        return False
    if not (model_dir / "config.json").is_file():
        raise DictuneError(f"{model_dir}: no config.json, not a model dir (build it with dictune model random)")
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(WhisperConfig.from_pretrained(model_dir))
    model.generation_config = GenerationConfig.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory(prefix=".weights.", dir=model_dir) as tmp:
        model.save_pretrained(tmp)  # then only the weight files move in, each in one rename
        for path in sorted(Path(tmp).iterdir()):
            if path.name in WEIGHT_FILES or path.name.startswith("model-"):
                path.replace(model_dir / path.name)
    return True
