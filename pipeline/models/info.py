"""Facts about a Hugging Face Whisper directory, read from its JSON files and weight headers (no loading)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import DictuneError


@dataclass(frozen=True)
class ModelInfo:
    directory: str
    parameters: int | None  # None when the weights are not in safetensors files
    encoder_layers: int
    decoder_layers: int
    d_model: int
    attention_heads: int  # encoder heads
    vocab_size: int
    n_mels: int
    multilingual: bool
    decoder_start_token_id: int | None
    eos_token_id: int | None
    no_timestamps_token_id: int | None
    transcribe_token_id: int | None  # multilingual only
    languages: int  # entries in lang_to_id
    suppress_tokens: int  # entries in suppress_tokens


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DictuneError(f"{path}: invalid JSON ({e})") from e


def count_parameters(directory: Path) -> int | None:
    """Parameters stored in the safetensors files (tied weights are stored, and counted, once)."""
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="np") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                shape = handle.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    return total


def model_info(directory: str | Path) -> ModelInfo:
    directory = Path(directory)
    config = _read_json(directory / "config.json")
    if config.get("model_type") != "whisper":
        raise DictuneError(f"{directory / 'config.json'}: not a Whisper config")
    gen = _read_json(directory / "generation_config.json")
    return ModelInfo(
        directory=str(directory),
        parameters=count_parameters(directory),
        encoder_layers=config["encoder_layers"],
        decoder_layers=config["decoder_layers"],
        d_model=config["d_model"],
        attention_heads=config["encoder_attention_heads"],
        vocab_size=config["vocab_size"],
        n_mels=config["num_mel_bins"],
        multilingual=bool(gen.get("is_multilingual", config["vocab_size"] >= 51865)),
        decoder_start_token_id=gen.get("decoder_start_token_id", config.get("decoder_start_token_id")),
        eos_token_id=gen.get("eos_token_id", config.get("eos_token_id")),
        no_timestamps_token_id=gen.get("no_timestamps_token_id"),
        transcribe_token_id=(gen.get("task_to_id") or {}).get("transcribe"),
        languages=len(gen.get("lang_to_id") or {}),
        suppress_tokens=len(gen.get("suppress_tokens") or config.get("suppress_tokens") or []),
    )
