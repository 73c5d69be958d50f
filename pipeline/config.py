"""Typed configuration: YAML in (safe_load), validated frozen dataclasses out.

Every default lives here, once. Unknown keys, wrong types and bad values are all reported together,
each with its dotted key (`train.lora_r: expected int, got 'x'`). Relative paths in a config are
resolved against the current working directory (run dictune from the project root).

Command-line overrides use dotted keys with YAML values: `train.max_steps=50 model.base=base`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.synth_config import (  # noqa: F401  (re-exported: the config sections live here)
    DEFAULT_TRAIN_VOICES,
    ArchiveSynthConfig,
    FinalReportsConfig,
    SynthesizeConfig,
)
from pipeline.train_config import TrainConfig
from pipeline.typed_yaml import apply_overrides, build

# ---------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelConfig:
    base: str = "tiny.en"  # builtin (tiny.en, base), local HF dir, local CT2 dir, or hub id
    cache_dir: str | None = None  # where builtins are imported; default $DICTUNE_CACHE or ~/.cache/dictune


@dataclass(frozen=True)
class SourceConfig:
    name: str  # split name given to the items, e.g. "train"; output is <work_dir>/ingest/<name>.jsonl
    path: str  # NeMo JSONL, CSV/TSV, HF audiofolder (metadata.csv) or a directory of audio + .txt
    format: str = "auto"  # auto | jsonl | csv | tsv | audiofolder | directory | corrections (serve)
    root: str | None = None  # audio must lie inside this folder; default: the source's own folder


@dataclass(frozen=True)
class IngestConfig:
    sources: tuple[SourceConfig, ...] = ()  # one per split
    min_rms_dbfs: float = -60.0  # quieter than this over the whole file counts as silent
    max_seconds: float = 3600.0  # longer files are rejected (segment cuts anything over segment.max_seconds)
    num_proc: int = 1  # datasets.map workers for decoding/validation
    # file suffixes (lowercase, no dot) collected from a `directory` source
    audio_extensions: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "opus", "m4a")


@dataclass(frozen=True)
class SegmentConfig:
    max_seconds: float = 30.0  # items longer than this are cut at pauses
    # reject a piece whose base-model WER against its assigned text is above this (tiny.en on synthetic
    # radiology dictation: right text 0-0.6 with flite/piper voices, a wrong text 0.8-1.1)
    max_segment_wer: float = 0.6
    min_seconds: float = 2.0  # shortest piece a cut may leave (relaxed to 0 when nothing else fits)
    min_matched_fraction: float = 0.3  # reject a whole item when fewer reference words match the hypothesis
    vad_threshold: float = 0.5  # silero-vad speech probability above which a frame is speech
    min_pause_ms: int = 150  # silero-vad min_silence_duration_ms: shorter pauses are never cut in
    speech_pad_ms: int = 30  # silero-vad padding added to each side of a speech region
    edge_pad_seconds: float = 0.2  # silence kept before the first and after the last speech region
    beam_size: int = 1  # base-model beam width for the word timestamps (1 = greedy)
    # sources whose transcripts are final signed reports, not what was said: every item keeps only the
    # sentences its audio supports (pipeline/verify.py), with these thresholds
    verify_sources: tuple[str, ...] = ()
    verify_min_support: float = 0.5  # share of a sentence's words the base model must match
    verify_max_wer: float = 0.8  # a sentence's base-model WER (near-spellings aside), at most
    verify_max_gap_words: int = 2  # this many unreported words between two sentences separate them
    verify_min_share: float = 0.3  # an item whose verified share of report words is lower is rejected
    verify_min_seconds: float = 1.0  # shorter verified pieces are dropped


@dataclass(frozen=True)
class NormalizeConfig:
    sample_rate: int = 16000  # Hz; output is mono 16-bit PCM WAV at this rate
    loudness: str = "lufs"  # lufs (ITU-R BS.1770 via pyloudnorm; RMS for clips < 0.4 s) | rms | none
    target_lufs: float = -23.0  # loudness target: LUFS, or dBFS RMS when loudness is rms
    peak_dbfs: float = -1.0  # the loudness gain is lowered so no sample peaks above this
    trim_top_db: float = 40.0  # edge-silence trim: frames quieter than peak - this (dB) are edge silence
    trim_margin_seconds: float = 0.1  # silence kept at each edge after trimming
    min_seconds: float = 0.2  # shorter after trimming: rejected (nothing left to train on)
    num_proc: int = 1  # datasets.map workers


CONTEXT_MODES = ("none", "static", "retrieved")


@dataclass(frozen=True)
class ContextConfig:
    """Whisper's previous-text slot at inference (pipeline/context.py), for evaluate and transcribe."""

    mode: str = "none"  # transcribe's context: none | static | retrieved (two passes; needs a lexicon)
    # static: a term list, one per line (e.g. one per exam type), and/or a prior report's text put before the
    # terms, for every file; a manifest line's own context_text / context_terms replace them for its file
    terms_file: str | None = None
    text_file: str | None = None
    min_score: float = 75.0  # retrieved: lowest similarity (0-100) of a term to a first-pass word n-gram
    max_terms: int = 30  # retrieved (and evaluate's irrelevant context): most terms in one context
    max_tokens: int = 223  # context tokens at most (capped at Whisper's max_target_positions // 2 - 1)
    # retrieved: after the second pass, rewrite a word n-gram that sounds and looks like one of its context's
    # terms (score >= correct_min_score) as that term, unless all its words are real words: lexicon words or
    # English words with a wordfreq Zipf frequency >= correct_known_zipf (null: lexicon words only);
    # pipeline/correction.py
    correct: bool = True
    correct_min_score: float = 85.0
    correct_known_zipf: float | None = 3.0

    def problems(self) -> list[str]:
        out = []
        if self.mode not in CONTEXT_MODES:
            out.append(f"context.mode: must be one of {', '.join(CONTEXT_MODES)}, got {self.mode!r}")
        if not 0 <= self.min_score <= 100 or not 0 <= self.correct_min_score <= 100:
            out.append("context.min_score / context.correct_min_score: must be in [0, 100]")
        if self.correct_known_zipf is not None and not 0 <= self.correct_known_zipf <= 8:
            out.append("context.correct_known_zipf: must be in [0, 8] (wordfreq's Zipf scale) or null")
        if self.max_terms < 1 or self.max_tokens < 2:
            out.append("context.max_terms must be >= 1 and context.max_tokens >= 2")
        return out


EVALUATE_SYSTEMS = tuple(f"{m}{c}" for m in ("base", "adapted") for c in ("", "+prompt", "+retrieved", "+irrelevant"))


@dataclass(frozen=True)
class EvaluateConfig:
    splits: tuple[str, ...] = ("test", "test_general")  # normalized splits to transcribe and score
    general_split: str = "test_general"  # out-of-domain split: its WER is the headline's "general WER"
    manifests: tuple[str, ...] = ()  # extra manifests to transcribe and score (CLI: --manifest PATH)
    # which to evaluate: base / adapted alone, +prompt (one static prompt: the lexicon's terms by frequency
    # in the train split), +retrieved (context retrieved from the same model's own first pass),
    # +irrelevant (a term list of another exam type than the utterance's: what a wrong context costs)
    systems: tuple[str, ...] = ("base", "base+retrieved", "adapted", "adapted+retrieved")
    batch_size: int = 8  # utterances per generate call
    num_beams: int = 1  # 1 = greedy; beam 5 took 2.2-3x the CPU time of greedy (scripts/bench_hf_decoding.py)
    max_new_tokens: int = 200  # per utterance; a 30 s dictation is ~100 tokens
    bf16: bool = False  # bfloat16 autocast while decoding: ~20% less CPU time but it changed tiny.en's WER
    device: str = "cpu"  # torch device for decoding, e.g. cuda
    language: str = "en"  # decoding language for multilingual models; ignored by .en models
    # keep the base encoder's outputs per split in evaluate/encoder_states/ for the systems (and curve
    # points) that share that encoder: the same transcripts, about half the decoding time, and frames x
    # d_model x 4 bytes of disk per clip (2.3 MB for tiny.en, 7.7 MB for large-v3); false: encode each time
    share_encoder_states: bool = True
    prompt_max_tokens: int = 223  # vocabulary-prompt budget, capped at Whisper's max_target_positions//2-1
    bootstrap_samples: int = 1000  # paired bootstrap resamples for confidence intervals
    report_terms: int = 20  # terms listed in the report's "improved most" table
    report_examples: int = 5  # example utterances per kind (fixed / still wrong) in report.md

    def problems(self) -> list[str]:
        """Value checks of this section, each with its dotted key."""
        out = [f"evaluate.systems: unknown system {s!r} (choose from {', '.join(EVALUATE_SYSTEMS)})"
               for s in self.systems if s not in EVALUATE_SYSTEMS]
        out += [f"evaluate.systems: {s} needs {s.split('+')[0]} too (its first pass)"
                for s in self.systems if s.endswith("+retrieved") and s.split("+")[0] not in self.systems]
        if "base" not in self.systems:
            out.append("evaluate.systems: must include base (every comparison is against it)")
        positive = ("batch_size", "num_beams", "max_new_tokens", "prompt_max_tokens", "bootstrap_samples")
        out += [f"evaluate.{k}: must be >= 1" for k in positive if getattr(self, k) < 1]
        return out


TRANSCRIBE_FORMATS = ("txt", "json", "srt", "vtt")


@dataclass(frozen=True)
class TranscribeConfig:
    inputs: tuple[str, ...] = ()  # audio files or manifests to transcribe after training
    formats: tuple[str, ...] = TRANSCRIBE_FORMATS  # written per input: <out>/<stem>.<format>
    engine: str = "ct2"  # ct2 (faster-whisper; an HF model/adapter is exported to the cache once) | hf
    long_form: str = "vad"  # vad (pauses -> <=30 s chunks, batched) | sequential (timestamped windows)
    batch_size: int = 8  # chunks per decoder call (vad mode; chunks of several files share a batch)
    num_beams: int = 1  # 1 = greedy; beam search costs ~2-3x the time for little WER gain
    max_new_tokens: int = 200  # per chunk; a 30 s dictation chunk is ~100 tokens
    language: str = "en"  # decoding language of multilingual models; .en models ignore it
    device: str = "cpu"  # cpu | cuda
    threads: int = 0  # CPU threads of the engine (0 = torch's default / CTranslate2's 4)
    # ct2 engine: int8 | float32 | float16 (cuda) ... On tiny.en int8 was ~1.3x faster than float32 but changed
    # ~8% of the words against the HF model (float32: 0-0.6%); see scripts/bench_transcribe.py
    compute_type: str = "int8"
    export_quantization: str = "float16"  # weights of CT2 exports (dictune export, ct2 auto-export)
    max_chunk_seconds: float = 25.0  # vad mode: longest chunk (30 s chunks lost words: see inference/longform.py)
    vad_threshold: float = 0.5  # silero-vad speech probability above which a frame is speech
    min_pause_ms: int = 150  # shorter pauses are never a chunk boundary
    speech_pad_ms: int = 200  # audio kept on each side of a speech region, ms
    prompt_max_tokens: int = 223  # --prompt-terms budget (capped at max_target_positions // 2 - 1)
    group_seconds: float = 600.0  # vad mode: audio decoded per group of files (bounds memory)

    def problems(self) -> list[str]:
        """Value checks of this section, each with its dotted key."""
        out = [f"transcribe.formats: unknown format {f!r} (choose from {', '.join(TRANSCRIBE_FORMATS)})"
               for f in self.formats if f not in TRANSCRIBE_FORMATS]
        if not self.formats:
            out.append("transcribe.formats: give at least one format")
        for key, allowed in {"engine": ("ct2", "hf"), "long_form": ("vad", "sequential")}.items():
            if getattr(self, key) not in allowed:
                out.append(f"transcribe.{key}: must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        positive = ("batch_size", "num_beams", "max_new_tokens", "prompt_max_tokens")
        out += [f"transcribe.{k}: must be >= 1" for k in positive if getattr(self, k) < 1]
        if not 1.0 <= self.max_chunk_seconds <= 30.0:
            out.append("transcribe.max_chunk_seconds: must be in [1, 30] (Whisper's window)")
        if not 0.0 < self.vad_threshold < 1.0:
            out.append("transcribe.vad_threshold: must be in (0, 1)")
        if self.threads < 0 or self.min_pause_ms < 0 or self.speech_pad_ms < 0 or self.group_seconds <= 0:
            out.append("transcribe: threads, min_pause_ms and speech_pad_ms must be >= 0, group_seconds > 0")
        return out


CURVE_METRICS = ("b_wer", "term_error", "wer")  # domain metrics the learning curve can plot


@dataclass(frozen=True)
class CurveConfig:
    """`dictune curve CONFIG`: train on nested subsets of the training manifest and score each point."""

    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # shares of the training audio (hours), ascending
    seeds: int = 2  # random subset draws per fraction; draw k also trains with seed config.seed + k
    quality_arm: bool = True  # also train the same budgets with the worst alignment-score items removed
    quality_drop_fraction: float = 0.25  # share of the alignment-scored items removed, worst first
    term_metric: str = "b_wer"  # domain metric on the curve: b_wer | term_error (1 - term recall) | wer
    workers: int = 1  # points trained and scored at once, each in its own process (1 = in this process)
    keep_models: bool = False  # keep each point's merged/ model (its small adapter/ is always kept)
    # data-quality arms over other pools: arm name -> training manifest (e.g. verbatim / raw / verified
    # versions of the same recordings). Each fraction's budget is that share of the SMALLEST pool's audio,
    # the same for every arm; replaces the random/clean arms over the train split
    pools: dict[str, str] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Value checks of this section, each with its dotted key."""
        out = []
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            out.append("curve.fractions: give shares in (0, 1], e.g. [0.1, 0.25, 0.5, 1.0]")
        elif list(self.fractions) != sorted(set(self.fractions)):
            out.append("curve.fractions: must be ascending without repeats")
        if self.seeds < 1 or self.workers < 1:
            out.append("curve.seeds / curve.workers: must be >= 1")
        if not 0.0 < self.quality_drop_fraction < 1.0:
            out.append("curve.quality_drop_fraction: must be in (0, 1)")
        if self.pools and len(self.pools) < 2:
            out.append("curve.pools: name at least two pools to compare (arm name -> manifest)")
        if any(name in ("random", "clean") for name in self.pools):
            out.append("curve.pools: 'random' and 'clean' are the built-in arms' names; call the pools otherwise")
        if self.term_metric not in CURVE_METRICS:
            out.append(f"curve.term_metric: must be one of {', '.join(CURVE_METRICS)}, got {self.term_metric!r}")
        return out


@dataclass(frozen=True)
class ServeConfig:
    """`dictune serve` (pipeline/service/): an OpenAI-compatible transcription API and a review page."""

    host: str = "127.0.0.1"  # any other address needs a token (--token or DICTUNE_TOKEN)
    port: int = 8000
    # profile name (the API's `model` field) -> adapter dir or model dir; "default" is the base model (plus
    # the trained adapter when the config's train stage has one)
    profiles: dict[str, str] = field(default_factory=dict)
    max_loaded_profiles: int = 2  # engines kept loaded (least recently used unloaded first)
    # also unload the least recently used while the loaded engines' weight files add up to more (0 = off)
    max_profiles_mb: float = 0.0
    workers: int = 0  # transcriptions at once (0 = CPU cores)
    queue_size: int = 8  # waiting requests beyond the workers; more get 503 with Retry-After
    max_upload_mb: float = 50.0  # larger uploads get 413 (counted while streaming, never buffered whole)
    max_seconds: float = 900.0  # longer audio gets 413
    store_dir: str | None = None  # corrections store (SQLite + audio); default <work_dir>/service
    # the review page marks words whose probability (the decoder's, lowest over their tokens; greedy
    # decoding in transcribe.long_form vad only) is at most this; 0 = off, 1 = every word
    low_confidence: float = 0.5

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.port < 65536:
            out.append("serve.port: must be in 1..65535")
        if self.max_loaded_profiles < 1 or self.workers < 0 or self.queue_size < 0 or self.max_profiles_mb < 0:
            out.append("serve: max_loaded_profiles >= 1, workers >= 0, queue_size >= 0 and max_profiles_mb >= 0")
        if self.max_upload_mb <= 0 or self.max_seconds <= 0:
            out.append("serve.max_upload_mb and serve.max_seconds: must be > 0")
        if not 0.0 <= self.low_confidence <= 1.0:
            out.append("serve.low_confidence: must be a probability in [0, 1] (0 = off, e.g. 0.5)")
        return out


@dataclass(frozen=True)
class Config:
    name: str  # experiment name, used in reports
    work_dir: str = ""  # every stage writes under <work_dir>/<stage>/; default work/<name>
    seed: int = 1234
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    lexicon: str | None = None  # domain terms, one per line
    model: ModelConfig = field(default_factory=ModelConfig)
    synthesize: SynthesizeConfig | None = None  # demo corpus only; absent for recorded data
    ingest: IngestConfig = field(default_factory=IngestConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)
    context: ContextConfig = field(default_factory=ContextConfig)  # evaluate and transcribe
    curve: CurveConfig = field(default_factory=CurveConfig)  # `dictune curve` only
    serve: ServeConfig = field(default_factory=ServeConfig)  # `dictune serve` only

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir or os.path.join("work", self.name))

    def stage_dir(self, stage: str) -> Path:
        return self.work_path / stage

    def section(self, name: str) -> Any:
        return getattr(self, name)


# ---------------------------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply `key=value` overrides, validate, and return a frozen Config."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], source=str(path)) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 text (byte {e.start + 1}); save the file as UTF-8"], source=str(path)) from None
    except OSError as e:
        raise ConfigError([f"cannot read ({e.strerror or e})"], source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([f"invalid YAML: {e}".replace("\n", " ")], source=str(path)) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["top level must be a mapping of keys"], source=str(path))
    data = apply_overrides(data, overrides)
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    problems: list[str] = []
    config = build(Config, data, "", problems)
    if problems:
        raise ConfigError(problems, source=source)
    problems = validate(config)
    if problems:
        raise ConfigError(problems, source=source)
    return config


def validate(config: Config) -> list[str]:
    """Checks of values (not types) that span fields; every problem is returned."""
    problems = []
    if not config.name:
        problems.append("name: must not be empty")
    if config.segment.max_seconds <= 0 or config.segment.max_seconds > 30:
        problems.append("segment.max_seconds: must be in (0, 30] (Whisper's window)")
    problems += config.train.problems()
    problems += config.evaluate.problems()
    problems += config.transcribe.problems()
    problems += config.context.problems()
    if config.context.mode == "retrieved" and not config.lexicon:
        problems.append("context.mode: retrieved needs a lexicon (the top-level `lexicon:` key)")
    problems += config.curve.problems()
    problems += config.serve.problems()
    if config.synthesize is not None and config.synthesize.archive is not None:
        problems += config.synthesize.archive.problems()
    if config.synthesize is not None and config.synthesize.final_reports is not None:
        problems += config.synthesize.final_reports.problems()
    names = [s.name for s in config.ingest.sources]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"ingest.sources: name {dup!r} is used twice")
    for name in config.segment.verify_sources:
        if name not in names:
            problems.append(f"segment.verify_sources: {name!r} is not an ingest source (sources: {', '.join(names) or 'none'})")
    for i, source in enumerate(config.ingest.sources):
        if source.format not in ("auto", "jsonl", "csv", "tsv", "audiofolder", "directory", "corrections"):
            problems.append(f"ingest.sources[{i}].format: unknown format {source.format!r}")
        corrections = source.format == "corrections" or source.path.endswith((".sqlite", ".db"))
        if corrections and source.name.startswith("test"):
            problems.append(f"ingest.sources[{i}]: corrections never go to a test split (name {source.name!r})")
    if config.normalize.loudness not in ("lufs", "rms", "none"):
        problems.append(f"normalize.loudness: must be lufs, rms or none, got {config.normalize.loudness!r}")
    for key in ("ingest.num_proc", "normalize.num_proc", "normalize.sample_rate"):
        section, name = key.split(".")
        if getattr(config.section(section), name) < 1:
            problems.append(f"{key}: must be at least 1")
    return problems
