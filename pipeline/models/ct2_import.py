"""Import a CTranslate2 Whisper directory as a Hugging Face Whisper directory.

In:  model.bin (WhisperSpec, float16/bfloat16/float32), config.json, tokenizer.json, vocabulary.txt|json.
Out: config.json, model.safetensors (float32), generation_config.json, tokenizer and feature-extractor
     files, and dictune_import.json (where it came from). Loads with WhisperForConditionalGeneration /
     WhisperProcessor.from_pretrained.

CT2 fuses the self-attention q,k,v projections (`self_attention/linear_0`, [3d, d]) and the cross-attention
k,v (`attention/linear_1`, [2d, d]); they are split back. Hugging Face's k_proj has no bias: the fused
bias holds zeros there, and any value would not change the output (a bias on the keys adds the same
q.b to every attention logit of a query, which softmax ignores), so it is dropped.

`import_ct2` writes into the directory it is given; callers wrap it in pipeline.files.atomic_dir.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.files import atomic_write_json
from pipeline.models.ct2_format import Ct2File, Ct2FormatError
from pipeline.models.ct2_meta import (
    SpecialIds,
    build_generation_config,
    build_processor,
    build_tokenizer,
    read_ct2_meta,
    special_ids,
)

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperConfig

logger = logging.getLogger("dictune")

IMPORTER_VERSION = 1  # bump when the written files change: builtin caches are keyed on it
PROVENANCE_NAME = "dictune_import.json"
SPEC_NAME = "WhisperSpec"
GELU = 3  # CTranslate2 Activation.GELU
# Scalar options of a WhisperSpec -> the value this import supports (None: any value, unused here).
SCALARS = {
    "encoder/num_heads": None,
    "decoder/num_heads": None,
    "decoder/activation": GELU,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/start_from_zero_embedding": 0,
    "decoder/alibi_use_positive_positions": None,
    "decoder/scale_alibi": None,
    "decoder/alignment_heads": None,
    "decoder/alignment_layer": None,
}
LAYER_RE = re.compile(r"^(encoder|decoder)/layer_(\d+)/")  # not layer_norm
# CT2 module (under a layer) -> Hugging Face modules; a fused linear is split evenly along its rows.
ENCODER_LAYER = (
    ("self_attention/linear_0", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("self_attention/linear_1", ("self_attn.out_proj",)),
    ("self_attention/layer_norm", ("self_attn_layer_norm",)),
    ("ffn/linear_0", ("fc1",)),
    ("ffn/linear_1", ("fc2",)),
    ("ffn/layer_norm", ("final_layer_norm",)),
)
DECODER_LAYER = ENCODER_LAYER + (
    ("attention/linear_0", ("encoder_attn.q_proj",)),
    ("attention/linear_1", ("encoder_attn.k_proj", "encoder_attn.v_proj")),
    ("attention/linear_2", ("encoder_attn.out_proj",)),
    ("attention/layer_norm", ("encoder_attn_layer_norm",)),
)
TOP_MODULES = (
    ("encoder/conv1", ("model.encoder.conv1",)),
    ("encoder/conv2", ("model.encoder.conv2",)),
    ("encoder/layer_norm", ("model.encoder.layer_norm",)),
    ("decoder/layer_norm", ("model.decoder.layer_norm",)),
)
TOP_TENSORS = (
    ("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
    ("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
    ("decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
)
PROJECTION = "decoder/projection/weight"


@dataclass(frozen=True)
class WhisperShape:
    vocab_size: int
    n_mels: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int  # encoder frames (1500 for 30 s)
    max_target_positions: int  # decoder tokens (448)
    tied_output: bool = True  # output projection shares the token embeddings


@dataclass(frozen=True)
class ImportSummary:
    source: str  # the CT2 directory
    shape: WhisperShape
    ids: SpecialIds
    num_parameters: int
    seconds: float


def _layer_count(names: set[str], side: str, path: Path) -> int:
    indices = {int(m.group(2)) for n in names if (m := LAYER_RE.match(n)) and m.group(1) == side}
    if indices != set(range(len(indices))):
        raise Ct2FormatError(path, f"{side} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def read_shape(f: Ct2File) -> WhisperShape:
    """Model dimensions from tensor shapes; head counts from the num_heads scalars."""
    if f.header.spec != SPEC_NAME:
        raise Ct2FormatError(f.path, f"a {f.header.spec!r} model, not Whisper ({SPEC_NAME})")
    for name, wanted in SCALARS.items():
        if wanted is not None and name in f.names() and f.scalar(name) != wanted:
            raise Ct2FormatError(f.path, f"unsupported {name}={f.scalar(name)} (Whisper uses {wanted})")
    vocab_size, d_model = f.variable("decoder/embeddings/weight").shape
    names = f.names()
    projection = f.header.aliases.get(PROJECTION, PROJECTION)
    tied = projection == "decoder/embeddings/weight" or (
        PROJECTION in names and np.array_equal(f.raw(PROJECTION), f.raw("decoder/embeddings/weight"))
    )
    return WhisperShape(
        vocab_size=vocab_size,
        n_mels=f.variable("encoder/conv1/weight").shape[1],
        d_model=d_model,
        encoder_layers=_layer_count(names, "encoder", f.path),
        decoder_layers=_layer_count(names, "decoder", f.path),
        encoder_heads=f.scalar("encoder/num_heads"),
        decoder_heads=f.scalar("decoder/num_heads"),
        encoder_ffn_dim=f.variable("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=f.variable("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=f.variable("encoder/position_encodings/encodings").shape[0],
        max_target_positions=f.variable("decoder/position_encodings/encodings").shape[0],
        tied_output=tied,
    )


def _convert_module(f: Ct2File, ct2: str, hf: tuple[str, ...], out: dict, used: set[str]) -> None:
    params = ("gamma", "beta") if ct2.endswith("layer_norm") else ("weight", "bias")
    for param in params:
        name = f"{ct2}/{param}"
        value = f.tensor(name)
        used.add(name)
        if value.shape[0] % len(hf):
            raise Ct2FormatError(f.path, f"{name} has {value.shape[0]} rows, not {len(hf)} equal parts")
        hf_param = {"gamma": "weight", "beta": "bias"}.get(param, param)
        for target, part in zip(hf, np.split(value, len(hf), axis=0)):
            if target.endswith("k_proj") and hf_param == "bias":
                continue  # HF has no k bias; it cannot change the attention output (see module doc)
            out[f"{target}.{hf_param}"] = np.ascontiguousarray(part)


def hf_state_dict(f: Ct2File, shape: WhisperShape) -> dict[str, np.ndarray]:
    """Every CT2 tensor as float32 under its Hugging Face name; unknown CT2 names are an error."""
    out: dict[str, np.ndarray] = {}
    used: set[str] = set(SCALARS)
    for side, layers, table in (
        ("encoder", shape.encoder_layers, ENCODER_LAYER),
        ("decoder", shape.decoder_layers, DECODER_LAYER),
    ):
        for i in range(layers):
            for ct2, hf in table:
                targets = tuple(f"model.{side}.layers.{i}.{t}" for t in hf)
                _convert_module(f, f"{side}/layer_{i}/{ct2}", targets, out, used)
    for ct2, hf in TOP_MODULES:
        _convert_module(f, ct2, hf, out, used)
    for ct2, hf_name in TOP_TENSORS:
        out[hf_name] = f.tensor(ct2)
        used.add(ct2)
    used.add(PROJECTION)
    if not shape.tied_output:
        out["proj_out.weight"] = f.tensor(PROJECTION)
    unexpected = sorted(f.names() - used)
    if unexpected:
        shown = ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise Ct2FormatError(f.path, f"{len(unexpected)} unexpected variables for Whisper: {shown}")
    return out


def whisper_config(shape: WhisperShape, generation: GenerationConfig) -> WhisperConfig:
    """The model config for `shape`, with token ids and suppression lists taken from `generation`."""
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=shape.vocab_size,
        num_mel_bins=shape.n_mels,
        d_model=shape.d_model,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.encoder_heads,
        decoder_attention_heads=shape.decoder_heads,
        encoder_ffn_dim=shape.encoder_ffn_dim,
        decoder_ffn_dim=shape.decoder_ffn_dim,
        max_source_positions=shape.max_source_positions,
        max_target_positions=shape.max_target_positions,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=shape.tied_output,
        decoder_start_token_id=generation.decoder_start_token_id,
        bos_token_id=generation.bos_token_id,
        eos_token_id=generation.eos_token_id,
        pad_token_id=generation.pad_token_id,
        suppress_tokens=list(generation.suppress_tokens),
        begin_suppress_tokens=list(generation.begin_suppress_tokens),
    )


def _check_against_model(config: WhisperConfig, tensors: dict[str, np.ndarray], path: Path) -> None:
    """The tensors must be exactly what WhisperForConditionalGeneration expects (names and shapes)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("proj_out.weight", None)
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:3]
        raise Ct2FormatError(path, f"imported tensors do not fit WhisperForConditionalGeneration: {diff}")


def make_readable(directory: Path) -> None:
    """Give a directory made by mkdtemp/safetensors (0700/0600) the usual permissions under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        if path.is_file():
            os.chmod(path, 0o666 & ~umask)


def import_ct2(ct2_dir: str | Path, out_dir: str | Path) -> ImportSummary:
    """Read the CT2 Whisper model in `ct2_dir`; write the Hugging Face files into `out_dir`."""
    from safetensors.numpy import save_file

    start = time.perf_counter()
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    meta = read_ct2_meta(ct2_dir)
    with Ct2File(ct2_dir / "model.bin") as f:
        shape = read_shape(f)
        tensors = hf_state_dict(f, shape)
    tokenizer = build_tokenizer(meta, shape.vocab_size)
    ids = special_ids(tokenizer, shape.vocab_size)
    generation = build_generation_config(meta, ids, shape.decoder_layers, shape.decoder_heads)
    config = whisper_config(shape, generation)
    _check_against_model(config, tensors, ct2_dir / "model.bin")

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    generation.save_pretrained(out_dir)
    build_processor(tokenizer, shape.n_mels).save_pretrained(out_dir)
    summary = ImportSummary(
        source=str(ct2_dir.resolve()),
        shape=shape,
        ids=ids,
        num_parameters=int(sum(t.size for t in tensors.values())),
        seconds=time.perf_counter() - start,
    )
    atomic_write_json(out_dir / PROVENANCE_NAME, {"importer_version": IMPORTER_VERSION, **asdict(summary)})
    make_readable(out_dir)
    logger.info("imported %s (%d parameters) in %.1f s", ct2_dir, summary.num_parameters, summary.seconds)
    return summary
