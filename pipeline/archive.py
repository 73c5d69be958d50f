"""A group's written report archive: the reports as text, from a folder of .txt files, a JSONL file or a
CSV / TSV column.

    reports, rejects = read_archive("reports/")                              # one report per .txt file
    reports, rejects = read_archive("reports.jsonl", fields=("findings", "impression"))
    reports, rejects = read_archive("export.csv", fields=("report_text",))

Every report is either returned or rejected with its reason (file and line): a file that is not UTF-8
text or holds NUL bytes (binary), an empty report, a report longer than `max_chars` (a runaway export
line), a JSONL line that is not a JSON object or lacks every named field. A CSV with none of the named columns,
a path that does not exist and an archive without a single usable report stop with a one-line error.
Nothing here logs report text.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DictuneError
from pipeline.manifest import Reject

MAX_REPORT_CHARS = 100_000  # a signed report is a few thousand characters; more is a broken export
TEXT_SUFFIXES = (".txt",)
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


@dataclass(frozen=True)
class ArchiveReport:
    id: str  # file name (txt), the `id` field or column, else file:line
    text: str
    path: str  # the file it came from
    line: int | None = None  # 1-based line in that file (JSONL, CSV); None for a .txt report

    @property
    def source(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path


def read_archive(path: str | Path, fields: Sequence[str] = ("text",), max_chars: int = MAX_REPORT_CHARS,
                 stage: str = "archive") -> tuple[list[ArchiveReport], list[Reject]]:  # fmt: skip
    """The reports of an archive and the items it could not use (see the module docstring). `fields`: the
    JSONL fields or CSV columns whose non-empty values, joined by a space, make a report's text (a file
    needs at least one of them)."""
    path = Path(path)
    if path.is_dir():
        items = _folder(path)
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            items = _jsonl(path, fields)
        elif suffix in TABLE_DELIMITERS:
            items = _table(path, fields, TABLE_DELIMITERS[suffix])
        elif suffix in TEXT_SUFFIXES:
            items = _text_files([path])
        else:
            raise DictuneError(f"{path}: unknown archive format {suffix or '(no suffix)'}; give a folder of "
                               ".txt reports, a .jsonl, a .csv or a .tsv file")  # fmt: skip
    else:
        raise DictuneError(f"{path}: archive not found; give a folder of .txt reports, a .jsonl, .csv or .tsv")
    reports, rejects = [], []
    for source, line, report_id, text, problem in items:
        if problem is None and not text.strip():
            problem = "empty report"
        if problem is None and len(text) > max_chars:
            problem = f"report of {len(text):,} characters is over the limit of {max_chars:,} (a broken export?)"
        if problem is not None:
            rejects.append(Reject(source=str(source), line=line, reason=problem, stage=stage, id=report_id))
        else:
            report = ArchiveReport(report_id or "", " ".join(text.split()), str(source), line)
            reports.append(report if report_id else dataclasses.replace(report, id=report.source))
    if not reports:
        first = f"; first reject: {rejects[0]}" if rejects else ""
        raise DictuneError(f"{path}: archive holds no usable report ({len(rejects)} rejected{first})")
    return reports, rejects


_Item = tuple  # (source path, line or None, report id or None, text, problem or None)


def _decode(data: bytes) -> tuple[str, str | None]:
    if b"\x00" in data:
        return "", "binary file (NUL bytes), not text"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return "", f"not UTF-8 text (byte {e.start}); save the archive as UTF-8"


def _folder(path: Path) -> Iterator[_Item]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DictuneError(f"{path}: archive folder holds no .txt report")
    return _text_files(files)


def _text_files(files: list[Path]) -> Iterator[_Item]:
    for file in files:
        try:
            text, problem = _decode(file.read_bytes())
        except OSError as e:
            text, problem = "", f"cannot read ({e.strerror})"
        yield file, None, file.stem, text, problem


def _joined(values: Sequence[object]) -> str:
    return " ".join(str(v).strip() for v in values if v is not None and str(v).strip())


def _jsonl(path: Path, fields: Sequence[str]) -> Iterator[_Item]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            text, problem = _decode(raw)
            if problem is not None:
                yield path, number, None, "", problem
                continue
            if not text.strip():
                continue  # blank lines are not reports
            try:
                row = json.loads(text)
            except ValueError as e:
                yield path, number, None, "", f"not a JSON object ({e.msg})"
                continue
            if not isinstance(row, dict):
                yield path, number, None, "", "not a JSON object"
                continue
            if not any(f in row for f in fields):
                yield path, number, _id(row), "", f"no field {' / '.join(fields)} (keys: {', '.join(sorted(row))[:200]})"
                continue
            yield path, number, _id(row), _joined([row.get(f) for f in fields]), None


def _id(row: dict) -> str | None:
    value = row.get("id")
    return str(value) if value is not None else None


def _table(path: Path, fields: Sequence[str], delimiter: str) -> Iterator[_Item]:
    text, problem = _decode(path.read_bytes())
    if problem is not None:
        raise DictuneError(f"{path}: {problem}")
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # one long cell is a reject, not a crash
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = reader.fieldnames or []
    if not any(f in columns for f in fields):
        raise DictuneError(f"{path}: no column {' / '.join(fields)} (columns: {', '.join(columns) or 'none'}); "
                           "name the report text column with --field")  # fmt: skip
    for row in reader:
        yield path, reader.line_num, row.get("id"), _joined([row.get(f) for f in fields]), None
