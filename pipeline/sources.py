"""Read the dataset formats ingest accepts into raw items, one per manifest line or audio file.

Formats: NeMo-style JSONL (`audio_filepath`, `text`, optional `id`, `speaker`, `offset`, other keys),
CSV/TSV with a header (`path,text`, or `audio_filepath`/`transcript` columns), a Hugging Face
audiofolder (`metadata.csv` or `metadata.jsonl` with `file_name` and `transcription` or `text`), and a
directory of audio files each with a same-named `.txt` transcript. Reading is tolerant: every line is
decoded on its own (strict UTF-8), so one bad line becomes a Reject naming its file and line, and the
rest of the file is still read. Only a file that cannot be used at all (missing, no usable header)
raises DictuneError.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DictuneError
from pipeline.manifest import Reject

STAGE = "ingest"
FORMATS = ("jsonl", "csv", "tsv", "audiofolder", "directory", "corrections")
AUDIO_KEYS = ("audio_filepath", "path", "file_name")  # first present names the audio file
TEXT_KEYS = ("text", "transcript", "transcription")  # first present is the transcript
AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")
TRANSCRIPT_SUFFIX = ".txt"


@dataclass(frozen=True)
class RawItem:
    source: str  # file the item came from: the manifest, or the transcript of a directory item
    line: int | None  # 1-based line in that file; None for directory items
    audio: str  # audio path as written (relative to the dataset root, or absolute)
    text: str  # transcript as written
    fields: dict[str, Any] = field(default_factory=dict)  # every other key (id, speaker, offset, ...)


def detect_format(path: Path) -> str:
    """jsonl | csv | tsv | audiofolder | directory, from the path alone."""
    if path.is_dir():
        return "audiofolder" if any((path / m).is_file() for m in AUDIOFOLDER_METADATA) else "directory"
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix in (".sqlite", ".db"):
        return "corrections"  # the corrections store of `dictune serve`
    raise DictuneError(
        f"{path}: cannot tell the source format from the name; set format: jsonl, csv, tsv, "
        "audiofolder or directory in the source's config"
    )


def read_source(path: Path, fmt: str, audio_extensions: tuple[str, ...]) -> Iterator[RawItem | Reject]:
    """Yield a RawItem per usable line (or audio file) and a Reject per unusable one."""
    if not path.exists():
        raise DictuneError(f"{path}: source not found; check ingest.sources[].path")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("audiofolder", "directory") and not path.is_dir():
        raise DictuneError(f"{path}: format {fmt} needs a directory")
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt in ("csv", "tsv"):
        return _read_table(path, "\t" if fmt == "tsv" else ",")
    if fmt == "audiofolder":
        return _read_audiofolder(path)
    if fmt == "directory":
        return _read_directory(path, audio_extensions)
    if fmt == "corrections":
        return _read_corrections(path)
    raise DictuneError(f"{path}: unknown format {fmt!r}; use one of auto, {', '.join(FORMATS)}")


# ---------------------------------------------------------------------------------------------- readers


def _lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None, reason) per non-blank line; bytes are decoded line by line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 byte-order mark
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                where = f"byte 0x{raw[e.start]:02x} at column {e.start + 1}"
                yield number, None, f"line is not valid UTF-8 ({where})"
                continue
            yield number, text, ""


def _read_jsonl(path: Path) -> Iterator[RawItem | Reject]:
    for number, line, problem in _lines(path):
        if line is None:
            yield Reject(str(path), number, problem, STAGE)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield Reject(str(path), number, f"invalid JSON ({e.msg} at column {e.colno})", STAGE)
            continue
        if not isinstance(obj, dict):
            yield Reject(str(path), number, "expected a JSON object", STAGE)
            continue
        yield _item_from_mapping(obj, str(path), number)


def _read_table(path: Path, delimiter: str) -> Iterator[RawItem | Reject]:
    lines = _lines(path)
    header_line = next(lines, None)
    if header_line is None or header_line[1] is None:
        raise DictuneError(f"{path}: the first line must be a UTF-8 header such as 'path{delimiter}text'")
    header = [name.strip() for name in next(csv.reader([header_line[1]], delimiter=delimiter))]
    _check_header(path, header)
    for number, line, problem in lines:
        if line is None:
            yield Reject(str(path), number, problem, STAGE)
            continue
        try:
            row = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as e:
            yield Reject(str(path), number, f"malformed row ({e})", STAGE)
            continue
        if len(row) != len(header):
            yield Reject(str(path), number, f"expected {len(header)} fields, got {len(row)}", STAGE)
            continue
        yield _item_from_mapping(dict(zip(header, row)), str(path), number)


def _check_header(path: Path, header: list[str]) -> None:
    if not any(k in header for k in AUDIO_KEYS) or not any(k in header for k in TEXT_KEYS):
        raise DictuneError(
            f"{path}:1: header needs an audio column ({' or '.join(AUDIO_KEYS)}) and a text column "
            f"({' or '.join(TEXT_KEYS)}); found {', '.join(header) or 'nothing'}"
        )


def _read_audiofolder(path: Path) -> Iterator[RawItem | Reject]:
    for name in AUDIOFOLDER_METADATA:
        metadata = path / name
        if metadata.is_file():
            yield from _read_jsonl(metadata) if name.endswith(".jsonl") else _read_table(metadata, ",")
            return


def _read_directory(path: Path, audio_extensions: tuple[str, ...]) -> Iterator[RawItem | Reject]:
    suffixes = {"." + ext.lower().lstrip(".") for ext in audio_extensions}
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    audio_stems = {p.with_suffix("") for p in files if p.suffix.lower() in suffixes}
    for file in files:
        if file.suffix.lower() == TRANSCRIPT_SUFFIX and file.with_suffix("") not in audio_stems:
            yield Reject(str(file), None, "transcript without an audio file of the same name", STAGE)
        if file.suffix.lower() not in suffixes:
            continue
        transcript = file.with_suffix(TRANSCRIPT_SUFFIX)
        if not transcript.is_file():
            yield Reject(str(file), None, f"no transcript {transcript.name} next to the audio", STAGE)
            continue
        raw = transcript.read_bytes().removeprefix(b"\xef\xbb\xbf")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            reason = f"transcript is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
            yield Reject(str(transcript), None, reason, STAGE, audio_filepath=str(file))
            continue
        rel_id = file.relative_to(path).with_suffix("").as_posix()
        yield RawItem(str(transcript), None, str(file.relative_to(path)), text.strip(), {"id": rel_id})


def _read_corrections(path: Path) -> Iterator[RawItem | Reject]:
    """The review page's saved corrections (pipeline/service/store.py): audio + the corrected report."""
    import sqlite3

    from pipeline.service.store import read_corrections

    try:
        rows = read_corrections(path)
    except sqlite3.Error as e:
        raise DictuneError(f"{path}: not a dictune corrections store ({e})") from e
    for row in rows:
        yield RawItem(str(path), row.id, row.audio_path, row.corrected,
                      {"id": f"correction-{row.id}", "speaker": row.profile, "profile": row.profile,
                       "model_id": row.model_id, "audio_sha256": row.audio_sha256})  # fmt: skip


def _item_from_mapping(obj: dict[str, Any], source: str, line: int) -> RawItem | Reject:
    audio_key = next((k for k in AUDIO_KEYS if k in obj), None)
    text_key = next((k for k in TEXT_KEYS if k in obj), None)
    if audio_key is None or text_key is None:
        missing = "audio_filepath" if audio_key is None else "text"
        return Reject(source, line, f"missing key {missing!r}", STAGE)
    audio, text = obj[audio_key], obj[text_key]
    if not isinstance(audio, str) or not audio.strip():
        return Reject(source, line, f"{audio_key} must be a non-empty string", STAGE)
    if not isinstance(text, str):
        return Reject(source, line, f"{text_key} must be a string, got {type(text).__name__}", STAGE)
    fields = {k: v for k, v in obj.items() if k not in (audio_key, text_key)}
    return RawItem(source, line, audio.strip(), text.strip(), fields)
