"""Turn checked items into training rows: 16 kHz mono audio at one loudness, and the text in two forms.

    dictune normalize CONFIG   -> <work_dir>/normalize/<source name>.jsonl, audio/<name>/<id>.wav, rejects.jsonl

Reads the previous stage's manifests (segment's when that stage is built and has run, else ingest's;
see `previous_stage`). Audio: decoded, down-mixed, resampled with soxr, edge silence trimmed
(librosa.effects.trim, normalize.trim_margin_seconds kept), gain set to normalize.target_lufs under the
normalize.peak_dbfs ceiling, stored as 16-bit PCM WAV (see pipeline/audio.py). Text: `text` is the
training target (pipeline.text.format_dictation: spoken commands become punctuation and line breaks),
`text_norm` the scoring form (pipeline.scoring_form.normalize_for_scoring of that target); the spoken
form is kept as `text_spoken`. Items are processed with datasets.map (normalize.num_proc workers). Items
longer than segment.max_seconds, silent after trimming, or with no text left are rejected with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from pathlib import Path
from typing import Any

from pipeline import audio
from pipeline.batch import ERROR_KEY, map_items
from pipeline.config import Config, NormalizeConfig
from pipeline.errors import DictuneError
from pipeline.files import atomic_dir, id_file_name
from pipeline.manifest import (
    Record,
    Reject,
    iter_jsonl,
    manifest_audio_paths,
    manifest_hours,
    write_manifest,
    write_rejects,
)
from pipeline.runner import STAMP_NAME

logger = logging.getLogger("dictune")

STAGE = "normalize"
SECTIONS = ("normalize", "segment")  # segment.max_seconds: longer items are rejected here
REJECTS_NAME = "rejects.jsonl"
AUDIO_DIR = "audio"
TEXT_FUNCTIONS = (("text", "format_dictation"), ("scoring_form", "normalize_for_scoring"))  # (module, name)
DURATION_SLACK_SECONDS = 0.05  # a clip this much over segment.max_seconds is still accepted
WAV_HEADER_BYTES = 44  # of a plain PCM WAV file
DROPPED_KEYS = ("needs_segment",)  # done by the segment stage; not true of the output any more
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def previous_stage(config: Config) -> str:
    """'segment' when that stage has finished in this work dir (its stamp exists), else 'ingest'."""
    return "segment" if (config.stage_dir("segment") / STAMP_NAME).is_file() else "ingest"


def inputs(config: Config) -> list[Path]:
    """The previous stage's manifests, and the code that defines the output (text forms, audio steps)."""
    previous = config.stage_dir(previous_stage(config))
    manifests = [previous / f"{s.name}.jsonl" for s in config.ingest.sources]
    return [*manifests, *(_PACKAGE_DIR / f"{m}.py" for m in ("text", "scoring_form", "audio"))]


def stat_inputs(config: Config) -> list[Path]:
    """The audio its manifests name, compared by size and mtime (a replaced recording reruns the stage)."""
    return manifest_audio_paths(inputs(config))


def run(config: Config) -> dict[str, Any]:
    _check_text_functions()
    previous = previous_stage(config)
    logger.info("normalize: reading the %s manifests", previous)
    if previous == "segment" and _finished_after(config, "ingest", "segment"):
        logger.warning("normalize: ingest ran after segment; run `dictune segment CONFIG` to refresh it")
    out_dir = config.stage_dir(STAGE)
    manifests = [config.stage_dir(previous) / f"{source.name}.jsonl" for source in config.ingest.sources]
    for manifest in manifests:
        if not manifest.is_file():
            raise DictuneError(f"{manifest}: not found; run `dictune {previous} CONFIG` first")
    summary, all_rejects, outputs = {}, [], []
    # Every split's audio folder, manifest and the rejects go to temps first; they replace the old outputs
    # together (renames only) when all are written, so a failure (a full disk) leaves every old one as it was.
    with contextlib.ExitStack() as pending:
        for source, manifest in zip(config.ingest.sources, manifests):
            records, rejects = normalize_manifest(manifest, source.name, out_dir, config, pending)
            outputs.append((source.name, records, rejects))
            all_rejects.extend(rejects)
        for name, records, rejects in outputs:
            write_manifest(out_dir / f"{name}.jsonl", records, pending)
            summary[name] = _summarize(name, records, rejects)
        write_rejects(out_dir / REJECTS_NAME, all_rejects, pending)
    _write_train_shards(config, out_dir, outputs, summary)
    return summary


def _write_train_shards(config: Config, out_dir: Path, outputs: list, summary: dict[str, Any]) -> None:
    """A big train split is also written as Parquet shards, which training streams (train.streaming),
    together with train.extra_train_manifests (e.g. this stage's long.jsonl) as training reads them."""
    from pipeline.training.shards import write_shards
    from pipeline.training.stream import streaming_wanted

    cfg = config.train
    train = next((records for name, records, _ in outputs if name == "train" and records), None)
    extra = [Path(m) for m in cfg.extra_train_manifests]
    if train is None or not all(m.is_file() for m in extra):  # an extra manifest another stage writes later
        return
    hours = sum(r.duration for r in train) / 3600 + sum(manifest_hours(m) for m in extra)
    if streaming_wanted(cfg.streaming, hours, cfg.streaming_min_hours):
        manifests = [out_dir / "train.jsonl", *extra]
        index = write_shards(manifests, cfg.shard_dir or out_dir / "shards" / "train", cfg.rows_per_shard)
        summary["train"]["shards"] = {"directory": str(index.directory), "shards": len(index.shards),
                                      "rows": index.total_rows}  # fmt: skip


def space_needed(config: Config) -> int:
    """Bytes of the normalized audio (16-bit mono, every input item): the old audio stays until the new is
    complete, so a rerun needs this much free beside it."""
    total = 0
    for manifest in inputs(config)[: len(config.ingest.sources)]:
        with contextlib.suppress(DictuneError, OSError, ValueError, TypeError):
            for _, obj in iter_jsonl(manifest):
                total += int(float(obj["duration"]) * config.normalize.sample_rate) * 2 + WAV_HEADER_BYTES
    return total


def normalize_manifest(
    manifest: Path, name: str, out_dir: Path, config: Config, pending: contextlib.ExitStack | None = None
) -> tuple[list[Record], list[Reject]]:
    """Normalize one manifest: audio into out_dir/audio/<name>/ (one rename), returns its records (to be
    written as out_dir/<name>.jsonl) and rejects. With `pending`, the rename waits until it closes."""
    items, rejects, seen = [], [], set()
    for line, obj in iter_jsonl(manifest):
        record = Record.from_dict(obj)
        if record.id in seen:
            rejects.append(Reject(str(manifest), line, f"duplicate id {record.id!r}", STAGE, id=record.id))
            continue
        seen.add(record.id)
        items.append({"line": line, "record": record.to_dict(), "file": id_file_name(record.id)})
    audio_dir = (out_dir / AUDIO_DIR / name).resolve()
    audio.preload()  # before datasets forks its workers
    with contextlib.ExitStack() as own:
        tmp = (pending or own).enter_context(atomic_dir(audio_dir))
        results = map_items(
            normalize_item,
            items,
            num_proc=config.normalize.num_proc,
            desc=f"normalize {name}",
            fn_kwargs={
                "tmp_dir": str(tmp),
                "final_dir": str(audio_dir),
                "options": config.normalize,
                "max_seconds": config.segment.max_seconds,
            },
        )
    records = []
    for item, result in zip(items, results):
        if ERROR_KEY in result:
            record = item["record"]
            reason = result[ERROR_KEY]
            rejects.append(
                Reject(str(manifest), item["line"], reason, STAGE, record["id"], record["audio_filepath"])
            )
        else:
            records.append(Record.from_dict(result))
    rejects.sort(key=lambda r: r.line or 0)
    return records, rejects


def normalize_item(
    item: dict[str, Any], tmp_dir: str, final_dir: str, options: NormalizeConfig, max_seconds: float
) -> dict[str, Any]:
    """One record: audio to <tmp_dir>/<file>, returns the new record's dict or {ERROR_KEY: reason}."""
    from pipeline.scoring_form import normalize_for_scoring
    from pipeline.text import format_dictation

    record = Record.from_dict(item["record"])
    if record.duration > max_seconds + DURATION_SLACK_SECONDS:
        return {
            ERROR_KEY: f"{record.duration:.1f} s is over segment.max_seconds; run the segment stage first"
        }
    formatted = format_dictation(record.text).strip()
    if not formatted:
        return {ERROR_KEY: "no text left after formatting"}
    text_norm = normalize_for_scoring(formatted).strip()
    if not text_norm:
        return {ERROR_KEY: "no text left after scoring normalization"}
    offset = float(record.extra.get("offset", 0.0))
    try:
        samples = audio.load_mono(
            record.audio_filepath, options.sample_rate, offset, record.duration if offset else None
        )
    except audio.AudioError as e:  # the reject names the file already
        return {ERROR_KEY: str(e).removeprefix(f"{record.audio_filepath}: ")}
    samples = _process_audio(samples, options)
    seconds = len(samples) / options.sample_rate
    if seconds < options.min_seconds:
        return {ERROR_KEY: f"only {seconds:.2f} s left after trimming edge silence (< normalize.min_seconds)"}
    audio.write_wav(Path(tmp_dir) / item["file"], samples, options.sample_rate)
    extra = {k: v for k, v in record.extra.items() if k not in DROPPED_KEYS and k != "offset"}
    extra.update(source_audio=record.audio_filepath, text_spoken=record.text)
    extra.update(sample_rate=options.sample_rate, channels=1)
    if offset:
        extra["source_offset"] = offset
    new = record.replace(
        audio_filepath=str(Path(final_dir) / item["file"]),
        duration=round(seconds, 4),
        text=formatted,
        text_norm=text_norm,
        extra=extra,
    )
    return new.to_dict()


def _process_audio(samples, options: NormalizeConfig):
    """Trim edge silence, then bring the rest to the loudness target (trimmed silence would skew RMS)."""
    samples = audio.trim_edges(samples, options.sample_rate, options.trim_top_db, options.trim_margin_seconds)
    gain = audio.loudness_gain_db(
        samples, options.sample_rate, options.loudness, options.target_lufs, options.peak_dbfs
    )
    return audio.apply_gain(samples, gain)


def _finished_after(config: Config, first: str, second: str) -> bool:
    """True when stage `first` last finished after stage `second` did (by their stamps)."""
    stamps = [config.stage_dir(stage) / STAMP_NAME for stage in (first, second)]
    return all(p.is_file() for p in stamps) and stamps[0].stat().st_mtime > stamps[1].stat().st_mtime


def _check_text_functions() -> None:
    for module_name, name in TEXT_FUNCTIONS:
        try:
            module = importlib.import_module(f"pipeline.{module_name}")
        except ImportError as e:
            raise DictuneError(f"normalize needs pipeline/{module_name}.py ({e})") from e
        if not callable(getattr(module, name, None)):
            raise DictuneError(f"pipeline/{module_name}.py lacks {name}: normalize cannot format text")


def _summarize(name: str, records: list[Record], rejects: list[Reject]) -> dict[str, Any]:
    hours = sum(r.duration for r in records) / 3600
    logger.info("normalize %s: %d kept (%.2f h), %d rejected", name, len(records), hours, len(rejects))
    for reject in rejects:
        logger.debug("normalize %s: rejected %s", name, reject)
    return {"kept": len(records), "rejected": len(rejects), "hours": round(hours, 4)}
