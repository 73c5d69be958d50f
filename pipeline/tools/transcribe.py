"""Transcribe new dictations (any length, many files) into formatted reports, JSON and subtitles.

    dictune transcribe AUDIO_OR_MANIFEST... --out DIR [--model SPEC] [--adapter DIR] [--engine ct2|hf]
        [--format txt,json,srt,vtt] [--context none|static|retrieved] [--lexicon FILE]
        [--context-terms FILE] [--context-text FILE] [--long-form vad|sequential] [...]

Inputs are audio files (wav, flac, ogg, mp3, m4a, ...) and/or NeMo JSONL manifests (`audio_filepath`
per line, relative to the manifest). Per file, DIR gets <name>.txt (the report: "period", "comma", "new
paragraph"... rendered as formatting), <name>.json (timed segments, model, engine and options),
<name>.srt and <name>.vtt. A file that cannot be used gets a one-line error and a line in
DIR/rejects.jsonl, the others are still transcribed, and the exit status is then 1.

Engines: ct2 (default; faster-whisper, int8 on CPU) runs a CTranslate2 dir or a builtin as it is, and
exports a Hugging Face model or model + --adapter once into the cache (`dictune export --format ct2`
does the same ahead of time); hf runs transformers, merging --adapter on load.
Context (Whisper's previous-text slot, pipeline/context.py): static puts --context-text (a prior report)
and --context-terms (a term list, e.g. for the exam type) before every window; a manifest line's own
"context_text" (string) and "context_terms" (list of strings) replace them for its file. retrieved
decodes each window twice, the second time with the --lexicon terms closest to what the first pass heard
(after the static part, if any).
--prompt-terms FILE is short for --context static --context-terms FILE.
Long audio is cut at pauses into <= 25 s chunks decoded in batches (--long-form vad, the default), or
decoded window by window with timestamps (--long-form sequential; sentence-sized subtitle cues).
"""

from __future__ import annotations

import argparse
import dataclasses

from pipeline.config import CONTEXT_MODES, TRANSCRIBE_FORMATS, ContextConfig, ModelConfig, TranscribeConfig
from pipeline.errors import ConfigError

DEFAULTS = TranscribeConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="AUDIO_OR_MANIFEST", help="audio files and/or .jsonl manifests"
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--model",
        default=ModelConfig().base,
        help="builtin (tiny.en, base), HF dir, CT2 dir, merged or exported model (default %(default)s)",
    )
    parser.add_argument("--adapter", default=None, help="peft LoRA adapter directory made on --model")
    parser.add_argument(
        "--engine", choices=("ct2", "hf"), default=DEFAULTS.engine, help="default %(default)s"
    )
    parser.add_argument(
        "--format",
        default=",".join(DEFAULTS.formats),
        help=f"comma-separated, of {', '.join(TRANSCRIBE_FORMATS)} (default %(default)s)",
    )
    parser.add_argument(
        "--context", choices=CONTEXT_MODES, default=None,
        help="none (default), static (--context-text/--context-terms) or retrieved (two passes, --lexicon)",
    )  # fmt: skip
    parser.add_argument("--lexicon", metavar="FILE", default=None, help="term list retrieved contexts draw from")
    parser.add_argument("--context-terms", metavar="FILE", default=None, help="static term list, one per line")
    parser.add_argument("--context-text", metavar="FILE", default=None, help="static text, e.g. a prior report")
    parser.add_argument(
        "--prompt-terms", metavar="FILE", default=None,
        help="short for --context static --context-terms FILE (as many terms as fit 223 tokens)",
    )  # fmt: skip
    parser.add_argument(
        "--long-form",
        choices=("vad", "sequential"),
        default=DEFAULTS.long_form,
        help="vad: chunks at pauses, batched (default); sequential: timestamped windows",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="chunks per decoder call")
    parser.add_argument("--beams", type=int, default=DEFAULTS.num_beams, help="beam width (1 = greedy)")
    parser.add_argument(
        "--compute-type", default=DEFAULTS.compute_type, help="ct2 engine: int8, float32, ..."
    )
    parser.add_argument(
        "--threads", type=int, default=DEFAULTS.threads, help="CPU threads (0 = library default)"
    )
    parser.add_argument("--device", default=DEFAULTS.device, help="cpu or cuda")
    parser.add_argument(
        "--max-chunk-seconds",
        type=float,
        default=DEFAULTS.max_chunk_seconds,
        help="vad mode: longest chunk / subtitle cue",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="model import/export cache (default $DICTUNE_CACHE)"
    )


def options_from_args(args: argparse.Namespace) -> TranscribeConfig:
    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
    options = dataclasses.replace(
        DEFAULTS, formats=formats, engine=args.engine, long_form=args.long_form, batch_size=args.batch_size,
        num_beams=args.beams, compute_type=args.compute_type, threads=args.threads, device=args.device,
        max_chunk_seconds=args.max_chunk_seconds,
    )  # fmt: skip
    problems = options.problems()
    if problems:
        raise ConfigError(problems, source="transcribe")
    return options


def context_from_args(args: argparse.Namespace) -> ContextConfig:
    terms = args.context_terms or args.prompt_terms
    mode = args.context or ("static" if terms or args.context_text else "none")
    context = ContextConfig(mode=mode, terms_file=terms, text_file=args.context_text)
    problems = context.problems()
    if mode == "retrieved" and not args.lexicon:
        problems.append("--context retrieved: give --lexicon FILE (the terms to retrieve from)")
    if problems:
        raise ConfigError(problems, source="transcribe")
    return context


def main(args: argparse.Namespace) -> int:
    from pipeline.inference.batch import transcribe_files

    summary = transcribe_files(
        args.inputs, args.out, args.model, adapter_dir=args.adapter, options=options_from_args(args),
        lexicon=args.lexicon, cache_dir=args.cache_dir, context=context_from_args(args),
    )  # fmt: skip
    return 1 if summary.failed else 0
