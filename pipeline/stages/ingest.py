"""Read recorded data (JSONL, CSV/TSV, audiofolder or audio + .txt), check every item, write a canonical manifest.

    dictune ingest CONFIG                       -> <work_dir>/ingest/<source name>.jsonl + rejects.jsonl
    dictune ingest --source PATH --out DIR      -> DIR/manifest.jsonl + DIR/rejects.jsonl

Every item is checked: its audio lies inside the dataset root (no ../ escapes, absolute paths or
symlinks leading elsewhere), exists, decodes, is longer than 0 s, is not silent (ingest.min_rms_dbfs),
has only finite samples, holds as much audio as its WAV header promises (not truncated) and is at
most ingest.max_seconds long; its transcript is non-empty UTF-8; its
id is unique in the source (the first valid item with an id wins). Items that normalize can repair are
kept and marked: several channels (down-mixed), another sample rate (resampled), longer than
segment.max_seconds (cut by the segment stage). Every other item goes to rejects.jsonl with its file,
line and reason. Relative audio paths are relative to the source's folder (the manifest's folder, or
the dataset folder itself); the dataset root is that folder unless the source sets `root`. Audio is not
copied: records point at the original files by absolute path.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

from pipeline.audio import SAMPLE_RATE, TRUNCATION_SLACK_SECONDS, AudioError, declared_seconds, probe
from pipeline.batch import ERROR_KEY, map_items
from pipeline.config import Config, IngestConfig, SegmentConfig, SourceConfig
from pipeline.errors import DictuneError
from pipeline.manifest import Record, Reject, write_manifest, write_rejects
from pipeline.sources import RawItem, read_source

logger = logging.getLogger("dictune")

STAGE = "ingest"
SECTIONS = ("ingest", "segment")  # segment.max_seconds decides which items are marked needs_segment
REJECTS_NAME = "rejects.jsonl"
DROPPED_KEYS = ("id", "speaker", "duration", "text_norm")  # replaced by checked or measured values
PROBE_CHUNK = 50_000  # items probed together (one worker pool); bounds the memory of probing


def inputs(config: Config) -> list[Path]:
    """The source files (directories are hashed whole)."""
    return [Path(s.path) for s in config.ingest.sources]


def stat_inputs(config: Config) -> list[Path]:
    """The audio files the source manifests name: replacing one (new size or mtime) reruns ingest. A
    source that cannot be read adds nothing here; run() then reports it."""
    paths: list[Path] = []
    for source in config.ingest.sources:
        path = Path(source.path)
        if path.is_dir():
            continue  # hashed whole by inputs()
        base = path.parent.resolve()
        try:
            entries = list(read_source(path, source.format, config.ingest.audio_extensions))
        except (DictuneError, OSError):
            continue
        paths.extend(base / e.audio for e in entries if isinstance(e, RawItem))
    return paths


def run(config: Config) -> dict[str, Any]:
    if not config.ingest.sources:
        raise DictuneError("ingest.sources is empty: add one {name, path} per split to the config")
    out_dir = config.stage_dir(STAGE)
    summary, all_rejects, outputs = {}, [], []
    for source in config.ingest.sources:  # every source checked before any manifest is replaced
        records, rejects = ingest_source(source, config.ingest, config.segment)
        outputs.append((source.name, records))
        all_rejects.extend(rejects)
        summary[source.name] = _summarize(source.name, records, rejects)
    for name, records in outputs:
        write_manifest(out_dir / f"{name}.jsonl", records)
    write_rejects(out_dir / REJECTS_NAME, all_rejects)
    return summary


def ingest_source(
    source: SourceConfig, options: IngestConfig, segment: SegmentConfig
) -> tuple[list[Record], list[Reject]]:
    """Check every item of one source; returns the kept records and the rejects, both in file order.

    Items are probed PROBE_CHUNK at a time, so the memory held for probing does not grow with the source
    (the kept records, about 0.5 KB each, are what remains)."""
    path = Path(source.path)
    base = (path if path.is_dir() else path.parent).resolve()  # relative audio paths start here
    root = Path(source.root).resolve() if source.root else base
    records: list[Record] = []
    rejects: list[Reject] = []
    seen: dict[str, str] = {}
    chunk: list[dict[str, Any]] = []

    def probe_chunk() -> None:
        results = map_items(
            probe_item,
            chunk,
            num_proc=options.num_proc,
            desc=f"ingest {source.name}",
            fn_kwargs={"min_rms_dbfs": options.min_rms_dbfs, "max_seconds": options.max_seconds},
        )
        for item, result in zip(chunk, results):
            where = _where(item)
            if ERROR_KEY in result:
                rejects.append(_reject(item, result[ERROR_KEY]))
            elif item["id"] in seen:
                rejects.append(_reject(item, f"duplicate id {item['id']!r} (kept the one at {seen[item['id']]})"))
            else:
                seen[item["id"]] = where
                records.append(_record(source.name, item, result, segment.max_seconds))
        chunk.clear()

    for entry in read_source(path, source.format, options.audio_extensions):
        checked = entry if isinstance(entry, Reject) else _check_item(entry, base, root)
        if isinstance(checked, Reject):
            rejects.append(checked)
            continue
        chunk.append(checked)
        if len(chunk) >= PROBE_CHUNK:
            probe_chunk()
    if chunk:
        probe_chunk()
    rejects.sort(key=lambda r: (r.source, r.line or 0))
    return records, rejects


def probe_item(item: dict[str, Any], min_rms_dbfs: float, max_seconds: float) -> dict[str, Any]:
    """Decode one item's audio and check it; returns its measurements or {ERROR_KEY: reason}."""
    try:
        info = probe(item["audio"], item.get("offset", 0.0), item.get("slice_seconds"))
    except AudioError as e:
        return {ERROR_KEY: str(e).removeprefix(f"{item['audio']}: ")}  # the reject names the file
    if info.frames == 0:
        return {ERROR_KEY: "no audio samples (0 s)"}
    if not info.finite:
        return {ERROR_KEY: "audio has NaN or infinite samples"}
    if info.rms_dbfs < min_rms_dbfs:
        level = "digital silence" if math.isinf(info.rms_dbfs) else f"RMS {info.rms_dbfs:.1f} dBFS"
        return {ERROR_KEY: f"silent audio ({level} < ingest.min_rms_dbfs {min_rms_dbfs:g})"}
    declared = None if item.get("offset") else declared_seconds(item["audio"])
    if declared is not None and info.duration < declared - TRUNCATION_SLACK_SECONDS:
        held = f"the file holds {info.duration:.2f} s"
        return {ERROR_KEY: f"truncated: the header promises {declared:.2f} s, {held}"}
    if info.duration > max_seconds:
        return {ERROR_KEY: f"{info.duration:.1f} s is longer than ingest.max_seconds ({max_seconds:g})"}
    return {"sample_rate": info.sample_rate, "channels": info.channels, "duration": info.duration}


# ---------------------------------------------------------------------------------------------- item checks


def _check_item(raw: RawItem, base: Path, root: Path) -> dict[str, Any] | Reject:
    """Path, text and id checks that need no decoding; returns a JSON-able candidate or a Reject."""
    audio = (base / raw.audio).resolve()  # also follows symlinks, so one pointing elsewhere is caught

    def reject(reason: str) -> Reject:
        return Reject(raw.source, raw.line, reason, STAGE, audio_filepath=raw.audio)

    if not audio.is_relative_to(root):
        return reject(f"audio path leaves the dataset root {root}")
    if not audio.is_file():
        return reject("audio file not found" if not audio.exists() else "audio path is not a file")
    if not raw.text:
        return reject("empty transcript")
    try:
        raw.text.encode("utf-8")
    except UnicodeEncodeError:
        return reject("transcript is not valid UTF-8 (lone surrogate)")
    fields = dict(raw.fields)
    try:
        offset = float(fields.pop("offset", 0.0) or 0.0)
        declared = fields.get("duration")
        slice_seconds = float(declared) if offset and declared not in (None, "") else None
    except (TypeError, ValueError):
        return reject("offset and duration must be numbers")
    item_id = fields.get("id")
    if item_id in (None, ""):
        item_id = _default_id(audio, root, offset)
    return {
        "source": raw.source,
        "line": raw.line,
        "id": str(item_id),
        "audio": str(audio),
        "text": raw.text,
        "speaker": None if fields.get("speaker") in (None, "") else str(fields["speaker"]),
        "offset": offset,
        "slice_seconds": slice_seconds,
        "extra": {k: v for k, v in fields.items() if k not in DROPPED_KEYS},
    }


def _default_id(audio: Path, root: Path, offset: float) -> str:
    stem = audio.relative_to(root).with_suffix("").as_posix()
    return f"{stem}@{offset:g}" if offset else stem


def _record(name: str, item: dict[str, Any], measured: dict[str, Any], long_seconds: float) -> Record:
    repairs = []
    if measured["channels"] > 1:
        repairs.append(f"downmix {measured['channels']} channels")
    if measured["sample_rate"] != SAMPLE_RATE:
        repairs.append(f"resample {measured['sample_rate']} Hz")
    extra = dict(item["extra"])
    if item["offset"]:
        extra["offset"] = item["offset"]
    if measured["duration"] > long_seconds:
        repairs.append(f"segment {measured['duration']:.1f} s")
        extra["needs_segment"] = True
    if repairs:
        extra["repairs"] = repairs
    extra.update(
        source=name,
        source_line=item["line"],
        sample_rate=measured["sample_rate"],
        channels=measured["channels"],
    )
    duration = round(measured["duration"], 4)
    return Record(item["id"], item["audio"], duration, item["text"], speaker=item["speaker"], extra=extra)


def _reject(item: dict[str, Any], reason: str) -> Reject:
    return Reject(item["source"], item["line"], reason, STAGE, id=item["id"], audio_filepath=item["audio"])


def _where(item: dict[str, Any]) -> str:
    return f"line {item['line']}" if item["line"] is not None else Path(item["audio"]).name


def _summarize(name: str, records: list[Record], rejects: list[Reject]) -> dict[str, Any]:
    hours = sum(r.duration for r in records) / 3600
    repaired = sum(1 for r in records if "repairs" in r.extra)
    logger.info(
        "ingest %s: %d kept (%.2f h, %d to repair), %d rejected",
        name,
        len(records),
        hours,
        repaired,
        len(rejects),
    )
    for reject in rejects:
        logger.debug("ingest %s: rejected %s", name, reject)
    return {"kept": len(records), "rejected": len(rejects), "hours": round(hours, 4), "repaired": repaired}


# ---------------------------------------------------------------------------------------------- config-less CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="dataset to read, without a config (JSONL, CSV/TSV or folder)")
    parser.add_argument("--out", help="with --source: folder for manifest.jsonl and rejects.jsonl")
    parser.add_argument("--format", default="auto", help="with --source: auto (default), jsonl, csv, ...")
    parser.add_argument("--root", help="with --source: audio must lie inside this folder")
    parser.add_argument("--num-proc", type=int, default=IngestConfig.num_proc, help="decoding workers")


def main(args: argparse.Namespace) -> int:
    """`dictune ingest --source PATH --out DIR`: default checks, no config file."""
    if not args.source or not args.out:
        raise DictuneError("ingest: give a CONFIG file, or --source PATH and --out DIR")
    source = SourceConfig(name="manifest", path=args.source, format=args.format, root=args.root)
    options = IngestConfig(sources=(source,), num_proc=max(1, args.num_proc))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DictuneError(f"ingest --out {out}: is a file; give a folder for manifest.jsonl and rejects.jsonl")
    records, rejects = ingest_source(source, options, SegmentConfig())
    write_manifest(out / "manifest.jsonl", records)
    write_rejects(out / REJECTS_NAME, rejects)
    _summarize(source.name, records, rejects)
    return 0
