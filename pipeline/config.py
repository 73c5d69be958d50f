"""Typed configuration: YAML in (safe_load), validated frozen dataclasses out.

Every default lives here, once. Unknown keys, wrong types and bad values are all reported together,
each with its dotted key (`train.lora_r: expected int, got 'x'`). Relative paths in a config are
resolved against the current working directory (run dictune from the project root).

Command-line overrides use dotted keys with YAML values: `train.max_steps=50 model.base=base`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

# ---------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelConfig:
    base: str = "tiny.en"  # builtin (tiny.en, base), local HF dir, local CT2 dir, or hub id
    cache_dir: str | None = None  # where builtins are imported; default $DICTUNE_CACHE or ~/.cache/dictune


@dataclass(frozen=True)
class SourceConfig:
    name: str  # split name given to the items, e.g. "train"; output is <work_dir>/ingest/<name>.jsonl
    path: str  # NeMo JSONL, CSV/TSV, HF audiofolder (metadata.csv) or a directory of audio + .txt
    format: str = "auto"  # auto | jsonl | csv | tsv | audiofolder | directory


@dataclass(frozen=True)
class SynthesizeConfig:
    corpus_dir: str = "data_manifests/radiology_demo/corpus"  # sentences.tsv, reports.jsonl, general.tsv
    manifest_dir: str = "data_manifests/radiology_demo"  # committed text manifests are written here
    audio_dir: str = "data/radiology_demo/audio"  # generated audio (git-ignored)
    test_fraction: float = 0.2  # share of sentences held out for test (never in train)
    dev_fraction: float = 0.1  # share of the remaining sentences used for dev


@dataclass(frozen=True)
class IngestConfig:
    sources: tuple[SourceConfig, ...] = ()  # one per split
    min_rms_dbfs: float = -60.0  # quieter than this over the whole file counts as silent
    max_seconds: float = 3600.0  # longer files are rejected (segment cuts anything over segment.max_seconds)
    num_proc: int = 1  # datasets.map workers for decoding/validation


@dataclass(frozen=True)
class SegmentConfig:
    max_seconds: float = 30.0  # items longer than this are cut at pauses
    max_segment_wer: float = 0.35  # reject a segment whose base-model hypothesis disagrees more than this


@dataclass(frozen=True)
class NormalizeConfig:
    sample_rate: int = 16000  # Hz
    target_lufs: float = -23.0  # integrated-loudness target (approximated by RMS dBFS)
    trim_top_db: float = 40.0  # edge-silence trim threshold below peak
    num_proc: int = 1  # datasets.map workers


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "lora"  # lora | full
    max_steps: int = 300  # optimizer steps
    batch_size: int = 8  # per device
    learning_rate: float = 1e-3
    resume: bool = False  # continue from the last checkpoint in <work_dir>/train


@dataclass(frozen=True)
class EvaluateConfig:
    splits: tuple[str, ...] = ("test", "test_general")  # normalized splits to transcribe and score
    batch_size: int = 8
    bootstrap_samples: int = 1000  # paired bootstrap resamples for confidence intervals


@dataclass(frozen=True)
class TranscribeConfig:
    inputs: tuple[str, ...] = ()  # audio files or manifests to transcribe after training
    format: str = "txt"  # txt | json | srt | vtt
    engine: str = "hf"  # hf | ct2


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
    config = _build(Config, data, "", problems)
    if problems:
        raise ConfigError(problems, source=source)
    problems = validate(config)
    if problems:
        raise ConfigError(problems, source=source)
    return config


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `data` with each `dotted.key=yaml_value` set."""
    problems = []
    data = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value")
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(f"override {item!r}: {part} is not a section")
                break
            node = child
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, source="overrides")
    return data


def config_to_dict(config: Any) -> Any:
    """Plain-data form of a config (or section), for hashing and for saving next to artifacts."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: config_to_dict(v) for k, v in config.items()}
    return config


def validate(config: Config) -> list[str]:
    """Checks of values (not types) that span fields; every problem is returned."""
    problems = []
    if not config.name:
        problems.append("name: must not be empty")
    if config.segment.max_seconds <= 0 or config.segment.max_seconds > 30:
        problems.append("segment.max_seconds: must be in (0, 30] (Whisper's window)")
    if config.train.mode not in ("lora", "full"):
        problems.append(f"train.mode: must be 'lora' or 'full', got {config.train.mode!r}")
    if config.transcribe.format not in ("txt", "json", "srt", "vtt"):
        problems.append(f"transcribe.format: must be txt, json, srt or vtt, got {config.transcribe.format!r}")
    names = [s.name for s in config.ingest.sources]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"ingest.sources: name {dup!r} is used twice")
    for i, source in enumerate(config.ingest.sources):
        if source.format not in ("auto", "jsonl", "csv", "tsv", "audiofolder", "directory"):
            problems.append(f"ingest.sources[{i}].format: unknown format {source.format!r}")
    return problems


# ---------------------------------------------------------------------------------------------- internals


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    """Convert plain YAML data to `tp`, appending a message per problem; returns a best-effort value."""
    where = key or "config"
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
            return None
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        for unknown in sorted(set(value) - set(fields)):
            near = [n for n in fields if n.startswith(str(unknown)[:3])]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{key + '.' if key else ''}{unknown}: unknown key{hint}")
        kwargs = {}
        for name, f in fields.items():
            sub = f"{key}.{name}" if key else name
            if name in value:
                kwargs[name] = _build(hints[name], value[name], sub, problems)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{sub}: required key is missing")
        try:
            return tp(**kwargs)
        except TypeError:
            return None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            built = _build(arg, value, key, trial)
            if not trial:
                return built
        problems.append(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
        return None
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{where}: expected a list, got {value!r}")
            return ()
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_build(item_tp, v, f"{where}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            return {}
        _, val_tp = typing.get_args(tp)
        return {str(k): _build(val_tp, v, f"{where}.{k}", problems) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        problems.append(f"{where}: expected true or false, got {value!r}")
        return None
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        problems.append(f"{where}: expected int, got {value!r}")
        return None
    if tp in (str, float) and not isinstance(value, tp):
        problems.append(f"{where}: expected {tp.__name__}, got {value!r}")
        return None
    return value
