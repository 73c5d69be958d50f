"""The canonical record of one utterance, JSONL manifests (NeMo style) and the rejects file.

A manifest line is a JSON object with at least `audio_filepath`, `duration` and `text`; dictune adds
`id`, `speaker`, `text_norm` and keeps any other keys it finds in `extra`. Files ending in `.gz` are
read and written compressed. Writes are atomic: readers never see a half-written manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DictuneError
from pipeline.files import atomic_open


class ManifestError(DictuneError):
    """A manifest line that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Record:
    id: str  # unique within a manifest
    audio_filepath: str  # absolute, or relative to the manifest's directory
    duration: float  # seconds
    text: str  # training target (formatted)
    text_norm: str | None = None  # scoring form (domain-safe normalization)
    speaker: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # any other keys, kept as they came

    _KNOWN = ("id", "audio_filepath", "duration", "text", "text_norm", "speaker")

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._KNOWN if getattr(self, k) is not None}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        extra = {k: v for k, v in data.items() if k not in cls._KNOWN}
        return cls(
            id=str(data["id"]),
            audio_filepath=str(data["audio_filepath"]),
            duration=float(data["duration"]),
            text=str(data["text"]),
            text_norm=data.get("text_norm"),
            speaker=data.get("speaker"),
            extra=extra,
        )

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Reject:
    source: str  # file the item came from
    line: int | None  # 1-based line in that file (None for directory sources)
    reason: str  # why it was not kept, one line
    stage: str  # the stage that rejected it
    id: str | None = None
    audio_filepath: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.reason}"


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_jsonl(
    path: str | os.PathLike, bad_lines: list[tuple[int, str]] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line. A bad line (not UTF-8, not JSON, not an
    object) raises ManifestError, or, when `bad_lines` is given, is appended there as (line number,
    one-line message naming file and line) and skipped."""
    path = Path(path)
    try:
        handle = _open_binary(path)
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ManifestError(f"{path}:{number}: expected a JSON object")
            except (UnicodeDecodeError, json.JSONDecodeError, ManifestError) as e:
                error = e if isinstance(e, ManifestError) else ManifestError(f"{path}:{number}: {_why(e)}")
                if bad_lines is None:
                    raise error from e
                bad_lines.append((number, str(error)))
                continue
            yield number, obj


def _why(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text (byte {error.object[error.start]:#04x} at column {error.start + 1})"
    return f"invalid JSON ({error.msg})"


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """Read a canonical manifest (as written by dictune); any bad line raises ManifestError."""
    records = []
    for number, obj in iter_jsonl(path):
        try:
            records.append(Record.from_dict(obj))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{number}: not a manifest record ({e!r})") from e
    return records


def write_jsonl(
    path: str | os.PathLike, rows: Iterable[dict[str, Any]], pending: contextlib.ExitStack | None = None
) -> int:
    """Atomically write dicts as JSONL (gzip when the name ends in .gz); returns the row count. With
    `pending`, the rows are written (and flushed) now but the file replaces `path` only when `pending`
    closes, together with a stage's other outputs; an error before that leaves `path` as it was."""
    path = Path(path)
    count = 0
    with contextlib.ExitStack() as own:
        stack = pending if pending is not None else own
        if path.suffix == ".gz":
            raw = stack.enter_context(atomic_open(path, "wb"))
            handle = stack.enter_context(io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0), "utf-8"))
        else:
            raw = handle = stack.enter_context(atomic_open(path, "w"))
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        if pending is not None and path.suffix != ".gz":
            handle.flush()  # a full disk fails here, not while the outputs are being swapped in
    return count


def write_manifest(
    path: str | os.PathLike, records: Iterable[Record], pending: contextlib.ExitStack | None = None
) -> int:
    return write_jsonl(path, (r.to_dict() for r in records), pending)


def write_rejects(
    path: str | os.PathLike, rejects: Iterable[Reject], pending: contextlib.ExitStack | None = None
) -> int:
    return write_jsonl(path, (r.to_dict() for r in rejects), pending)


def read_rejects(path: str | os.PathLike) -> list[Reject]:
    return [Reject(**obj) for _, obj in iter_jsonl(path)]


def reference_norm(record: Record) -> str:
    """A record's reference in scoring form: its text_norm, else its text normalized for scoring."""
    from pipeline.scoring_form import normalize_for_scoring

    return record.text_norm if record.text_norm is not None else normalize_for_scoring(record.text)


def manifest_hours(manifest: str | os.PathLike) -> float:
    """Hours of audio a manifest lists (its duration fields; nothing else is parsed or kept); 0 if absent."""
    if not Path(manifest).is_file():
        return 0.0
    return sum(float(obj.get("duration") or 0) for _, obj in iter_jsonl(manifest, [])) / 3600


def resolve_audio_path(record: Record, manifest_path: str | os.PathLike) -> Path:
    """A record's audio path as an absolute path (relative paths are relative to the manifest)."""
    audio = Path(record.audio_filepath)
    return audio if audio.is_absolute() else (Path(manifest_path).parent / audio).resolve()


def manifest_audio_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The audio files named by those of `paths` that are readable JSONL manifests (others are skipped,
    as are bad lines: the stage reading them reports those). For the runner's stat fingerprint."""
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_file() or not any(s in (".jsonl", ".json", ".ndjson") for s in path.suffixes):
            continue
        try:
            for _, obj in iter_jsonl(path):
                audio = obj.get("audio_filepath")
                if isinstance(audio, str) and audio:
                    out.append(Path(audio) if Path(audio).is_absolute() else path.parent / audio)
        except (ManifestError, OSError, UnicodeDecodeError):
            continue
    return out
