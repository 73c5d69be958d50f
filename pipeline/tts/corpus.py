"""Read the demo text corpus: report sentences, plain-English sentences and whole reports.

    corpus_dir/sentences.tsv   id<TAB>modality<TAB>text      one radiology report sentence per row
    corpus_dir/general.tsv     id<TAB>text                   plain, non-medical English
    corpus_dir/reports.jsonl   {"id", "modality", "title", "findings", "impression"}   whole reports

A whole report's transcript is its formatted text: the title, `Findings: ...` and `Impression: ...` as
three paragraphs (see `report_text`), dictated as the corpus README describes. Nothing here logs corpus
text.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DictuneError
from pipeline.manifest import iter_jsonl

SENTENCES_FILE = "sentences.tsv"
GENERAL_FILE = "general.tsv"
REPORTS_FILE = "reports.jsonl"
CORPUS_FILES = (SENTENCES_FILE, GENERAL_FILE, REPORTS_FILE)
PARAGRAPH = "\n\n"  # between the findings and the impression of a formatted report
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z(]|\d+\.\s)")  # a sentence boundary in formatted text


@dataclass(frozen=True)
class Passage:
    id: str  # unique within its file
    text: str  # formatted written text: the transcript
    kind: str  # "sentence" (radiology), "general" (plain English) or "report" (whole report)
    source: str  # the corpus file it came from
    line: int  # 1-based line in that file
    modality: str | None = None  # chest_xray, ct_chest, ... (None for general sentences)


@dataclass(frozen=True)
class Corpus:
    sentences: tuple[Passage, ...]
    general: tuple[Passage, ...]
    reports: tuple[Passage, ...]


def report_text(findings: str, impression: str, title: str = "") -> str:
    """The formatted transcript of a whole report (the title paragraph only when there is a title)."""
    body = f"Findings: {findings.strip()}{PARAGRAPH}Impression: {impression.strip()}"
    return f"{title.strip()}{PARAGRAPH}{body}" if title.strip() else body


def split_sentences(text: str) -> list[str]:
    """Sentences of formatted text (headings such as 'Findings:' stay with the sentence after them)."""
    parts = []
    for paragraph in text.split(PARAGRAPH):
        parts += [p.strip() for p in _SENTENCE_END.split(paragraph) if p.strip()]
    return parts


def sentence_key(text: str) -> str:
    """Comparison form used to keep held-out sentences out of training text."""
    text = re.sub(r"^(findings|impression):\s*", "", text.strip(), flags=re.IGNORECASE)
    text = re.sub(r"^\d+\.\s+", "", text)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def read_tsv(path: Path, columns: tuple[str, ...], kind: str) -> tuple[Passage, ...]:
    if not path.is_file():
        raise DictuneError(f"{path}: corpus file not found; set synthesize.corpus_dir")
    passages, seen = [], set()
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header is None or tuple(header) != columns:
            raise DictuneError(f"{path}:1: header must be {chr(9).join(columns)!r}")
        for line, row in enumerate(rows, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(columns):
                raise DictuneError(f"{path}:{line}: expected {len(columns)} tab-separated columns")
            fields = dict(zip(columns, (c.strip() for c in row)))
            if not fields["id"] or not fields["text"] or fields["id"] in seen:
                raise DictuneError(f"{path}:{line}: empty or duplicate id/text")
            seen.add(fields["id"])
            passages.append(
                Passage(fields["id"], fields["text"], kind, str(path), line, fields.get("modality"))
            )
    return tuple(passages)


def _read_reports(path: Path) -> tuple[Passage, ...]:
    if not path.is_file():
        raise DictuneError(f"{path}: corpus file not found; set synthesize.corpus_dir")
    passages, seen = [], set()
    for line, obj in iter_jsonl(path):
        try:
            rid, findings, impression = str(obj["id"]), str(obj["findings"]), str(obj["impression"])
        except KeyError as e:
            raise DictuneError(f"{path}:{line}: report lacks {e.args[0]!r}") from e
        if rid in seen or not findings.strip() or not impression.strip():
            raise DictuneError(f"{path}:{line}: duplicate id or empty findings/impression")
        seen.add(rid)
        text = report_text(findings, impression, str(obj.get("title") or ""))
        passages.append(Passage(rid, text, "report", str(path), line, obj.get("modality")))
    return tuple(passages)


def read_corpus(corpus_dir: str | Path) -> Corpus:
    corpus_dir = Path(corpus_dir)
    return Corpus(
        sentences=read_tsv(corpus_dir / SENTENCES_FILE, ("id", "modality", "text"), "sentence"),
        general=read_tsv(corpus_dir / GENERAL_FILE, ("id", "text"), "general"),
        reports=_read_reports(corpus_dir / REPORTS_FILE),
    )
