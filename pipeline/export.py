"""Deployable models: merge a LoRA adapter into its base, and convert a Hugging Face Whisper dir to CTranslate2.

    check_adapter(base_dir, adapter_dir) -> AdapterInfo        refuse an adapter made for another model
    export_model(base_dir, adapter_dir, "merged", out_dir)      HF dir, loads with from_pretrained (no peft)
    export_model(base_dir, adapter_dir or None, "ct2", out_dir, quantization="float16")
                                                                CT2 dir, loads with faster_whisper.WhisperModel
    cached_ct2_export(model_dir, adapter_dir, quantization)     the ct2 export, once, into <cache>/exports/

CT2 weights are stored as `quantization` (float16 by default: half the size of float32 and lossless
enough); the compute type is chosen again when the model is loaded (int8 on CPU by default).

The CT2 conversion is CTranslate2's own `TransformersConverter`, run offline on a local directory (a round
trip of the imported tiny.en reproduced all 148 original variables bit-exactly). faster-whisper reads
`tokenizer.json` (else it would download one) and `preprocessor_config.json` (mel bins, hop, chunk
length); transformers 5 saves the latter as part of `processor_config.json`, so it is written here.
Every output directory appears atomically (pipeline.files.atomic_dir).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import DictuneError
from pipeline.files import atomic_dir, atomic_write_json, sha256_json

logger = logging.getLogger("dictune")

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PEFT_PREFIX = "base_model.model."  # peft's prefix of adapter weight names
LORA_KEY_RE = re.compile(r"^(?P<module>.+)\.lora_(?P<side>[AB])(?:\.[^.]+)?\.weight$")
CT2_COPY_FILES = ("tokenizer.json",)  # besides what the converter writes (model.bin, config.json, vocabulary)
PREPROCESSOR_FILE = "preprocessor_config.json"
PROVENANCE_FILE = "dictune_export.json"
EXPORT_VERSION = 1  # bump when the export changes in a way the cache key does not see
QUANTIZATIONS = ("float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                 "int16")  # fmt: skip
KEY_CHARS = 12  # hex digits of a cache key


# torch.load(weights_only=True) refuses a pickled .bin that holds more than tensors; never unpickle it
REFUSED_PICKLE = ("refused: a pickle holding more than plain tensors (unsafe to load); "
                  "save the adapter as adapter_model.safetensors (peft's default)")  # fmt: skip

class AdapterMismatch(DictuneError):
    """The adapter was made for a different base model (or is not a peft adapter at all)."""


@dataclass(frozen=True)
class AdapterInfo:
    path: Path
    base_model: str | None  # adapter_config.json base_model_name_or_path (where it was trained)
    rank: int | None  # LoRA r
    modules: int  # adapted linear layers checked against the base


# ---------------------------------------------------------------------------------------------- adapter check


def check_adapter(base_dir: str | os.PathLike, adapter_dir: str | os.PathLike) -> AdapterInfo:
    """Raise AdapterMismatch (one line: what differs, where the adapter came from) unless every LoRA
    weight fits a linear layer of the base; read from file headers, nothing is loaded."""
    adapter_dir, base_dir = Path(adapter_dir), Path(base_dir)
    config = _adapter_config(adapter_dir)
    origin = config.get("base_model_name_or_path") or "an unrecorded base model"
    shapes = _adapter_shapes(adapter_dir)
    base = _base_shapes(base_dir)
    modules: dict[str, dict[str, list[int]]] = {}
    for key, shape in shapes.items():
        match = LORA_KEY_RE.match(key.removeprefix(PEFT_PREFIX))
        if match:
            modules.setdefault(match["module"], {})[match["side"]] = shape
    if not modules:
        raise AdapterMismatch(
            f"{adapter_dir}: holds no LoRA weights (lora_A/lora_B); give a LoRA adapter directory"
        )
    if base is not None:
        for module, sides in sorted(modules.items()):
            problem = _module_problem(module, sides, base)
            if problem:
                raise AdapterMismatch(
                    f"{adapter_dir}: adapter does not match the base model {base_dir} ({problem}); it was "
                    f"trained on {origin}: pass that model with --model"
                )
    return AdapterInfo(adapter_dir, config.get("base_model_name_or_path"), config.get("r"), len(modules))


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / ADAPTER_CONFIG
    if not adapter_dir.is_dir():
        raise AdapterMismatch(f"{adapter_dir}: adapter directory not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterMismatch(f"{adapter_dir}: no {ADAPTER_CONFIG}; not a peft adapter directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterMismatch(f"{path}: unreadable ({e}); re-export the adapter") from e
    if not isinstance(config, dict) or str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterMismatch(f"{path}: not a LoRA adapter (peft_type {config.get('peft_type')!r})")
    return config


def _adapter_shapes(adapter_dir: Path) -> dict[str, list[int]]:
    path = adapter_dir / ADAPTER_WEIGHTS[0]
    if not path.is_file():
        if (adapter_dir / ADAPTER_WEIGHTS[1]).is_file():
            import torch

            try:
                state = torch.load(adapter_dir / ADAPTER_WEIGHTS[1], map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
                raise AdapterMismatch(f"{adapter_dir / ADAPTER_WEIGHTS[1]}: {REFUSED_PICKLE}") from e
            return {k: list(v.shape) for k, v in state.items()}
        raise AdapterMismatch(f"{adapter_dir}: no {' or '.join(ADAPTER_WEIGHTS)}; the adapter is incomplete")
    return _safetensors_shapes(path)


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 (not iterable)
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise AdapterMismatch(f"{path}: unreadable safetensors file ({e}); re-export it") from e


def _base_shapes(base_dir: Path) -> dict[str, list[int]] | None:
    """Weight shapes of the base model from its safetensors headers (None: not safetensors, not checked)."""
    single, index = base_dir / "model.safetensors", base_dir / "model.safetensors.index.json"
    if single.is_file():
        return _safetensors_shapes(single)
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        shapes: dict[str, list[int]] = {}
        for name in files:
            shapes.update(_safetensors_shapes(base_dir / name))
        return shapes
    return None


def _module_problem(module: str, sides: dict[str, list[int]], base: dict[str, list[int]]) -> str | None:
    weight = base.get(f"{module}.weight")
    if weight is None:
        return f"the base has no layer {module}"
    out_features, in_features = weight[0], weight[-1]
    lora_a, lora_b = sides.get("A"), sides.get("B")
    if lora_a is None or lora_b is None:
        return f"{module} lacks lora_A or lora_B"
    if lora_a[-1] != in_features or lora_b[0] != out_features:
        return (f"{module}: adapter expects {lora_b[0]}x{lora_a[-1]} (out x in), "
                f"base has {out_features}x{in_features}")  # fmt: skip
    return None


# ---------------------------------------------------------------------------------------------- export


def export_model(
    base_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None, fmt: str, out_dir: str | os.PathLike,
    quantization: str = "float16",
) -> Path:  # fmt: skip
    """`dictune export`: merged -> a Hugging Face dir; ct2 -> (merge in a temp dir, then) a CTranslate2 dir.

    `out_dir` appears atomically, with dictune_export.json saying what it was made from."""
    import tempfile

    base_dir, out_dir = Path(base_dir), Path(out_dir)
    adapter_dir = Path(adapter_dir) if adapter_dir else None
    if fmt not in ("merged", "ct2"):
        raise DictuneError(f"export format {fmt!r}: choose merged or ct2")
    if fmt == "merged" and adapter_dir is None:
        raise DictuneError("export --format merged: give --adapter DIR (there is nothing to merge otherwise)")
    if fmt == "ct2":
        _check_ct2_available(quantization)
    if adapter_dir is not None:
        check_adapter(base_dir, adapter_dir)
    with atomic_dir(out_dir) as tmp:
        if fmt == "merged":
            _merge_into(base_dir, adapter_dir, tmp)
        elif adapter_dir is None:
            _convert_into(base_dir, tmp, quantization)
        else:
            with tempfile.TemporaryDirectory(prefix=".merged.", dir=tmp.parent) as merged:
                _merge_into(base_dir, adapter_dir, Path(merged))
                _convert_into(Path(merged), tmp, quantization)
        record = {"version": EXPORT_VERSION, "format": fmt, "base": str(base_dir),
                  "adapter": str(adapter_dir) if adapter_dir else None,
                  "quantization": quantization if fmt == "ct2" else None}  # fmt: skip
        atomic_write_json(tmp / PROVENANCE_FILE, record)
    logger.info("export: %s model written to %s", fmt, out_dir)
    return out_dir


def _merge_into(base_dir: Path, adapter_dir: Path, dest: Path) -> None:
    """base + LoRA merged -> weights, config, generation config and processor files in `dest`."""
    from pipeline.inference.hf import load_processor
    from pipeline.models.merge import merge_adapter
    from pipeline.training.model_setup import load_base

    processor = load_processor(base_dir)
    try:
        model = merge_adapter(load_base(base_dir), adapter_dir).model
    except pickle.UnpicklingError as e:
        raise AdapterMismatch(f"{adapter_dir}: {REFUSED_PICKLE}") from e
    except (RuntimeError, ValueError, KeyError, OSError) as e:  # peft's load/merge failures
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AdapterMismatch(f"{adapter_dir}: cannot be merged into {base_dir} ({first})") from e
    model.save_pretrained(str(dest))
    processor.save_pretrained(str(dest))
    model.generation_config.save_pretrained(str(dest))


def _check_ct2_available(quantization: str) -> None:
    if quantization not in QUANTIZATIONS:
        raise DictuneError(f"quantization {quantization!r}: choose from {', '.join(QUANTIZATIONS)}")
    try:
        import ctranslate2  # noqa: F401
    except ImportError as e:
        raise DictuneError("CTranslate2 export needs ctranslate2: pip install 'dictune[export]'") from e


def _convert_into(hf_dir: Path, dest: Path, quantization: str) -> None:
    """CTranslate2's TransformersConverter (offline, local dir) + the files faster-whisper reads."""
    from ctranslate2.converters import TransformersConverter

    missing = [name for name in CT2_COPY_FILES if not (hf_dir / name).is_file()]
    if missing:
        raise DictuneError(f"{hf_dir}: no {', '.join(missing)}; faster-whisper needs it next to the model")
    converter = TransformersConverter(str(hf_dir), copy_files=list(CT2_COPY_FILES))
    converter.convert(str(dest), quantization=quantization, force=True)
    atomic_write_json(dest / PREPROCESSOR_FILE, _preprocessor_config(hf_dir))


def _preprocessor_config(hf_dir: Path) -> dict[str, Any]:
    """The feature-extractor settings faster-whisper reads (n_mels, hop, chunk length, n_fft, rate)."""
    from pipeline.inference.hf import load_processor

    config = load_processor(hf_dir).feature_extractor.to_dict()
    keep = ("feature_extractor_type", "feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft",
            "n_samples", "nb_max_frames", "padding_value", "return_attention_mask")  # fmt: skip
    return {k: config[k] for k in keep if k in config}


def _files_key(dirs: list[Path], *extra: Any) -> str:
    """Cheap content key: names, sizes and mtimes of every file in the directories."""
    stats = []
    for directory in dirs:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            st = path.stat()
            stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return sha256_json({"version": EXPORT_VERSION, "files": stats, "extra": list(extra)})[:KEY_CHARS]


def cached_ct2_export(
    model_dir: Path, adapter_dir: Path | None, quantization: str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """A CT2 export of model (+ adapter), made once into <cache>/exports/<name>-<key> under a file lock."""
    from filelock import FileLock

    from pipeline.models.resolve import cache_root

    root = cache_root(cache_dir) / "exports"
    name = re.sub(r"[^\w.-]+", "_", (adapter_dir or model_dir).name or "model")
    key = _files_key([model_dir] + ([adapter_dir] if adapter_dir else []), quantization)
    target = root / f"{name}-ct2-{key}"
    if (target / PROVENANCE_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{target.name}.lock")):
        if not (target / PROVENANCE_FILE).is_file():
            logger.info("ct2 engine: exporting %s once into %s (dictune export --format ct2 does this ahead)",
                        adapter_dir or model_dir, target)  # fmt: skip
            export_model(model_dir, adapter_dir, "ct2", target, quantization)
    return target
