"""Training data as Parquet shards, for corpora too large to read whole (streaming training).

    write_shards(manifests, out_dir, rows_per_shard) -> out_dir/shard-00000.parquet ..., index.json,
                                                        rejects.jsonl
    read_index(shard_dir) -> ShardIndex                 shards, rows and hours per shard

A shard holds the rows of normalized manifests in order: id, manifest and line, absolute audio path, duration, text,
text_norm, parent_id, segment_index, modality and previous_text (the text of the previous piece of the
same cut dictation, when it is the row before; what context-aware training shows as "previous").
Audio stays in its files: rows point at it, so 1,000 hours of shards take tens of megabytes and the
audio can live on any mounted storage. The manifest is read line by line and at most one shard's rows
are held in memory, so writing needs a bounded amount of RAM whatever the corpus size.

Why Parquet through pyarrow and not a streaming library's reader: pyarrow is already installed (by
datasets), Parquet files are what `datasets` itself streams, and the training reader
(pipeline.training.stream) needs exact control that the generic readers do not give: shards assigned to
ranks, batches of a total duration, and resumption at any batch number without a shuffle buffer lost.
Each shard, index and rejects file is written atomically (temp + rename); the index is written last, so
a shard directory without index.json is unfinished and is never read.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import DictuneError
from pipeline.files import atomic_open, atomic_write_json
from pipeline.manifest import Record, Reject, iter_jsonl, resolve_audio_path, write_rejects
from pipeline.training.data import MAX_AUDIO_SECONDS, too_long

logger = logging.getLogger("dictune")

INDEX_NAME = "index.json"
REJECTS_NAME = "rejects.jsonl"
SHARD_VERSION = 2


@dataclass(frozen=True)
class ShardIndex:
    directory: Path
    shards: tuple[str, ...]  # file names, in order
    rows: tuple[int, ...]  # rows per shard
    hours: float
    sources: tuple[str, ...]  # the manifests they were written from, in order

    @property
    def total_rows(self) -> int:
        return sum(self.rows)

    def paths(self) -> list[Path]:
        return [self.directory / name for name in self.shards]


def _schema() -> Any:
    import pyarrow as pa

    text = pa.string()
    return pa.schema([("id", text), ("manifest", text), ("line", pa.int64()), ("audio_filepath", text), ("duration", pa.float32()), ("text", text),
                      ("text_norm", text), ("parent_id", text), ("segment_index", pa.int32()), ("modality", text),
                      ("previous_text", text)])  # fmt: skip


def _row(record: Record, manifest: Path, line: int, previous: dict[str, Any] | None) -> dict[str, Any] | str:
    """The shard row of a record, or the reason it cannot be trained on."""
    if not record.text.strip():
        return "empty text"
    if not math.isfinite(record.duration) or record.duration <= 0:
        return f"duration {record.duration!r} is not a positive number of seconds"
    if record.duration > MAX_AUDIO_SECONDS + 0.01:
        return too_long(record.duration)
    extra = record.extra
    parent, index = extra.get("parent_id"), extra.get("segment_index")
    follows = (previous is not None and parent is not None and previous["parent_id"] == parent
               and index is not None and previous["segment_index"] == int(index) - 1)  # fmt: skip
    return {
        "id": record.id,
        "manifest": str(manifest),
        "line": line,
        "audio_filepath": str(resolve_audio_path(record, manifest)),
        "duration": record.duration,
        "text": record.text,
        "text_norm": record.text_norm,
        "parent_id": None if parent is None else str(parent),
        "segment_index": None if index is None else int(index),
        "modality": extra.get("modality"),
        "previous_text": previous["text"] if follows else None,
    }


def write_shards(manifests: str | Path | Sequence[str | Path], out_dir: str | Path,
                 rows_per_shard: int = 10_000) -> ShardIndex:  # fmt: skip
    """Write normalized manifests (in order) as Parquet shards; rows that cannot be trained on go to rejects."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifests = [Path(manifests)] if isinstance(manifests, (str, Path)) else [Path(m) for m in manifests]
    out_dir = Path(out_dir)
    if rows_per_shard < 1:
        raise DictuneError(f"{out_dir}: rows per shard must be >= 1, got {rows_per_shard}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_NAME).unlink(missing_ok=True)  # unfinished until the new index is written
    for old in out_dir.glob("shard-*.parquet"):
        old.unlink()
    schema = _schema()
    names, counts, seconds, rejects, buffer = [], [], 0.0, [], []

    def flush() -> None:
        name = f"shard-{len(names):05d}.parquet"
        table = pa.Table.from_pylist(buffer, schema=schema)
        with atomic_open(out_dir / name, "wb", encoding=None) as handle:
            pq.write_table(table, handle, row_group_size=1024)
        names.append(name)
        counts.append(len(buffer))
        buffer.clear()

    for manifest in manifests:
        previous, bad_lines = None, []
        for line, obj in iter_jsonl(manifest, bad_lines):
            try:
                record = Record.from_dict(obj)
            except (KeyError, TypeError, ValueError) as e:
                rejects.append(Reject(str(manifest), line, f"not a manifest record ({e!r})", "shards"))
                continue
            row = _row(record, manifest, line, previous)
            if isinstance(row, str):
                rejects.append(Reject(str(manifest), line, row, "shards", record.id, record.audio_filepath))
                continue
            buffer.append(row)
            previous = row
            seconds += record.duration
            if len(buffer) >= rows_per_shard:
                flush()
        rejects += [Reject(str(manifest), line, reason.removeprefix(f"{manifest}:{line}: "), "shards")
                    for line, reason in bad_lines]  # fmt: skip
    if buffer:
        flush()
    rejects.sort(key=lambda r: (manifests.index(Path(r.source)), r.line or 0))
    write_rejects(out_dir / REJECTS_NAME, rejects)
    shown = ", ".join(str(m) for m in manifests)
    if not names:
        raise DictuneError(f"{shown}: no row could be written as a shard (see {out_dir / REJECTS_NAME})")
    index = {"version": SHARD_VERSION, "sources": [str(m) for m in manifests], "shards": names, "rows": counts,
             "hours": round(seconds / 3600, 4), "rejected": len(rejects)}  # fmt: skip
    atomic_write_json(out_dir / INDEX_NAME, index)
    logger.info("shards: %d rows (%.1f h) in %d shards at %s, %d rejected", sum(counts), seconds / 3600,
                len(names), out_dir, len(rejects))  # fmt: skip
    return read_index(out_dir)


def read_index(shard_dir: str | Path) -> ShardIndex:
    shard_dir = Path(shard_dir)
    path = shard_dir / INDEX_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DictuneError(f"{path}: no shard index (unfinished or never written; run the normalize stage)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DictuneError(f"{path}: not a shard index ({e})") from e
    if data.get("version") != SHARD_VERSION:
        raise DictuneError(f"{path}: shard version {data.get('version')!r}, this dictune reads {SHARD_VERSION}")
    missing = [name for name in data["shards"] if not (shard_dir / name).is_file()]
    if missing:
        raise DictuneError(f"{shard_dir / missing[0]}: shard listed in {INDEX_NAME} is missing")
    return ShardIndex(shard_dir, tuple(data["shards"]), tuple(data["rows"]), float(data["hours"]),
                      tuple(data["sources"]))  # fmt: skip
