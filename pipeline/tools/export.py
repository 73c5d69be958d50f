"""Export an adapted model for deployment: merged Hugging Face weights, or a CTranslate2 dir.

    dictune export --model SPEC --adapter DIR --format merged --out DIR
    dictune export --model SPEC [--adapter DIR] --format ct2 --out DIR [--quantization float16]

merged: the LoRA adapter merged into the base weights; loads with
        WhisperForConditionalGeneration.from_pretrained(DIR) (no peft), processor and generation config saved.
ct2:    the merged model (or the plain --model) converted with CTranslate2; loads with
        faster_whisper.WhisperModel(DIR) and runs with `dictune transcribe --engine ct2 --model DIR`.
        --quantization sets the stored weights (float16 by default); the compute type (int8 on CPU by
        default) is chosen again at load time.
The adapter is checked against the base first: one that was made for another model is refused with a
one-line message. DIR appears atomically (an existing DIR is replaced only when the export succeeded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import ModelConfig, TranscribeConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.export import QUANTIZATIONS

    parser.add_argument(
        "--model",
        default=ModelConfig().base,
        help="base model: builtin (tiny.en, base), HF dir or CT2 dir (default %(default)s)",
    )
    parser.add_argument("--adapter", default=None, help="peft LoRA adapter directory (required for merged)")
    parser.add_argument("--format", choices=("merged", "ct2"), required=True, help="what to write")
    parser.add_argument("--out", required=True, help="output directory (replaced atomically)")
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default=TranscribeConfig().export_quantization,
        help="ct2: weight type stored (default %(default)s)",
    )
    parser.add_argument("--cache-dir", default=None, help="model import cache (default $DICTUNE_CACHE)")


def main(args: argparse.Namespace) -> int:
    from pipeline.export import export_model
    from pipeline.models import resolve_model

    base_dir = resolve_model(args.model, cache_dir=args.cache_dir)
    export_model(base_dir, args.adapter, args.format, Path(args.out), args.quantization)
    print(args.out)
    return 0
